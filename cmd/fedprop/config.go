package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/internal/confcheck"
)

// loadConfig fills out (a struct with yaml tags, already holding its defaults) from the YAML
// file at path (optional when empty), FEDPROP_* environment variables and the flags bound in
// flagKeys (flag name -> config key), in increasing precedence. A misspelt key or a value of
// the wrong type is an error that names the key by its path as written ("run.roudns: line 3:
// unknown key, did you mean run.rounds?"); one that came from the environment or a flag names
// the variable or the flag instead of a line.
func loadConfig(path string, out any, flags *pflag.FlagSet, flagKeys map[string]string) error {
	v := viper.New()
	v.SetEnvPrefix("FEDPROP")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	// Register every key with its default so that environment variables reach keys the file
	// does not mention.
	defaults, err := yaml.Marshal(out)
	if err != nil {
		return err
	}
	var tree map[string]any
	if err := yaml.Unmarshal(defaults, &tree); err != nil {
		return err
	}
	lists := map[string]bool{} // keys that hold lists: an environment variable spells them a,b,c
	for key, val := range flatten("", tree) {
		v.SetDefault(key, val)
		if _, ok := val.([]any); ok {
			lists[key] = true
		}
	}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("%w: config %s: %w", coordinator.ErrBadConfig, path, err)
		}
		// Strict decode first, for a clear error on a misspelt key, placed in the file.
		if err := confcheck.DecodeYAML(raw, out); err != nil {
			return fmt.Errorf("%w: config %s: %w", coordinator.ErrBadConfig, path, err)
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(raw)); err != nil {
			return fmt.Errorf("%w: config %s: %w", coordinator.ErrBadConfig, path, err)
		}
	}
	for flag, key := range flagKeys {
		if f := flags.Lookup(flag); f != nil && f.Changed {
			v.Set(key, f.Value.String())
		}
	}
	effective := unflatten(v, lists)
	// The file is checked above, so a problem in the merged tree came from a variable or a
	// flag: name that, since the merged document's lines are nobody's.
	var mergedDoc yaml.Node
	if err := mergedDoc.Encode(effective); err != nil {
		return err
	}
	if problems := confcheck.CheckYAML(&mergedDoc, out); len(problems) > 0 {
		for i, p := range problems {
			problems[i] = fromOverride(p, flags, flagKeys)
		}
		return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, errors.Join(problems...))
	}
	merged, err := yaml.Marshal(effective)
	if err != nil {
		return err
	}
	if err := decodeStrict(merged, out); err != nil {
		return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	// Every float finite and every duration positive, under any key: `.nan` passes a range
	// check, a negative tick panics the coordinator's ticker and a negative backoff spins the
	// client's retry loop. (A duration that may be unset is filled with its default before
	// the file is read, so zero here was written by the user.)
	problems := append(confcheck.Floats("", out), confcheck.Durations("", out)...)
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	return nil
}

// fromOverride prefixes a problem confcheck.CheckYAML found in the merged configuration with
// where its key was set: the flag bound to it, if one was given, or its FEDPROP_ variable.
func fromOverride(problem error, flags *pflag.FlagSet, flagKeys map[string]string) error {
	key, ok := confcheck.KeyOf(problem)
	if !ok {
		return problem
	}
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i] // a list element: the list's key was set
	}
	for flag, k := range flagKeys {
		if k != key || flags == nil {
			continue
		}
		if f := flags.Lookup(flag); f != nil && f.Changed {
			return fmt.Errorf("--%s: %w", flag, problem)
		}
	}
	return fmt.Errorf("%s: %w", envName(key), problem)
}

// envName is the environment variable that sets a configuration key: FEDPROP_RUN_ROUNDS for
// run.rounds.
func envName(key string) string {
	return "FEDPROP_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// decodeStrict decodes a document in which every key is known to be valid (see loadConfig),
// refusing unknown keys all the same.
func decodeStrict(raw []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) { // an empty document
		return err
	}
	return nil
}

// flatten turns a YAML tree into dotted keys.
func flatten(prefix string, tree map[string]any) map[string]any {
	out := map[string]any{}
	for k, val := range tree {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := val.(map[string]any); ok && len(sub) > 0 {
			for kk, vv := range flatten(key, sub) {
				out[kk] = vv
			}
			continue
		}
		out[key] = val
	}
	return out
}

// unflatten rebuilds the tree of every key viper knows, with each key's effective value.
func unflatten(v *viper.Viper, lists map[string]bool) map[string]any {
	root := map[string]any{}
	for _, key := range v.AllKeys() {
		parts := strings.Split(key, ".")
		node := root
		for _, p := range parts[:len(parts)-1] {
			next, ok := node[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				node[p] = next
			}
			node = next
		}
		val := v.Get(key)
		if s, ok := val.(string); ok && lists[key] {
			node[parts[len(parts)-1]] = commaList(s)
			continue
		}
		node[parts[len(parts)-1]] = scalar(val)
	}
	return root
}

// commaList reads a list key's value from the environment: a,b,c or [a, b, c].
func commaList(s string) []string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// scalar reads a string from the environment or a flag as the YAML scalar it spells, so that
// FEDPROP_RUN_ROUNDS=5 sets an integer and "30s" stays a duration string.
func scalar(val any) any {
	s, ok := val.(string)
	if !ok {
		return val
	}
	var parsed any
	if err := yaml.Unmarshal([]byte(s), &parsed); err != nil {
		return s
	}
	switch parsed.(type) {
	case int, float64, bool:
		return parsed
	}
	return s
}
