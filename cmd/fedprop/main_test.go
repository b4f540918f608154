package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/release/modelfile"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestPrivacyEpsilonPrintsTheAccountantsValue(t *testing.T) {
	code, out, errOut := runCLI(t, "privacy", "epsilon", "--q", "1", "--sigma", "4.530877117", "--steps", "1", "--delta", "1e-6", "--accountant", "rdp")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "epsilon 1.00000")
}

func TestPrivacySigmaMeetsTheTarget(t *testing.T) {
	code, out, errOut := runCLI(t, "privacy", "sigma", "--q", "0.01", "--steps", "100", "--delta", "1e-5", "--epsilon", "2")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "sigma ")
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("seed: 1\nrun:\n  roundz: 3\n"), 0o644))
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown command", []string{"nope"}, 2, "unknown command"},
		{"missing flag", []string{"sim", "--out", dir}, 2, "--config is required"},
		{"misspelt config key", []string{"sim", "--config", bad, "--out", dir}, 2, "roundz"},
		{"bad conversion", []string{"privacy", "epsilon", "--q", "0.1", "--sigma", "1", "--steps", "3", "--conversion", "loose"}, 2, "--conversion"},
		{"missing config file", []string{"sim", "--config", filepath.Join(dir, "none.yaml"), "--out", dir}, 2, "none.yaml"},
		{"unreachable coordinator", []string{"model", "score", "--model", filepath.Join(dir, "none.json"), "--data", bad}, 1, "none.json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			assert.Equal(t, tc.code, code, errOut)
			assert.Contains(t, errOut, tc.msg)
		})
	}
}

// TestCommandLineErrorsAreTypedAndKeepTheirExitCodes runs the command lines cobra itself
// refuses. Each must come back from the command tree as the typed error exitCode maps
// (usageError, argCountError) with cobra's own message, and exit with 2, as bad usage does.
func TestCommandLineErrorsAreTypedAndKeepTheirExitCodes(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		usage bool // a usageError; otherwise an argCountError (both exit 2)
		msg   string
	}{
		{"unknown flag", []string{"sim", "--bogus"}, true, "unknown flag: --bogus"},
		{"unknown shorthand flag", []string{"sim", "-x"}, true, "unknown shorthand flag: 'x' in -x"},
		{"flag without its value", []string{"ca", "init", "--dir"}, true, "flag needs an argument: --dir"},
		{"persistent flag without its value", []string{"sim", "--log-level"}, true, "flag needs an argument: --log-level"},
		{"flag value of the wrong type", []string{"privacy", "epsilon", "--q", "x", "--sigma", "1", "--steps", "1"}, true, `invalid argument "x" for "--q" flag`},
		{"required flags not set", []string{"privacy", "epsilon", "--sigma", "1"}, true, `required flag(s) "q", "steps" not set`},
		{"an argument to a command that takes none", []string{"sim", "extra"}, true, `unknown command "extra" for "fedprop sim"`},
		{"an argument to cobra's completion command", []string{"completion", "bash", "extra"}, true, `unknown command "extra" for "fedprop completion bash"`},
		{"too few arguments", []string{"ca", "revoke", "--deny-list", "deny.txt"}, false, "requires at least 1 arg(s), only received 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			root := newRootCmd(&out, &errOut)
			root.SetArgs(tc.args)
			err := root.Execute()
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), tc.msg), "cobra's message, unchanged: %v", err)
			var ue usageError
			var ace argCountError
			assert.Equal(t, tc.usage, errors.As(err, &ue), "usageError: %v", err)
			assert.Equal(t, !tc.usage, errors.As(err, &ace), "argCountError: %v", err)
			code, _, stderr := runCLI(t, tc.args...)
			assert.Equal(t, 2, code, stderr)
			assert.Equal(t, "fedprop: "+err.Error()+"\n", stderr)
		})
	}
}

// TestUnknownSubcommandOfTheRootExitsTwo: the one usage error cobra raises before any command
// runs, so before any hook can type it; run types it.
func TestUnknownSubcommandOfTheRootExitsTwo(t *testing.T) {
	cases := []struct {
		args []string
		word string
	}{
		{[]string{"nope"}, "nope"},
		{[]string{"--log-level", "debug", "nope"}, "nope"},
		{[]string{"sweep", "--out", "x"}, "sweep"},
	}
	for _, tc := range cases {
		t.Run(tc.word, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			assert.Equal(t, 2, code, stderr)
			assert.True(t, strings.HasPrefix(stderr, `fedprop: unknown command "`+tc.word+`" for "fedprop"`), stderr)
			assert.Empty(t, stdout)
		})
	}
	code, stdout, stderr := runCLI(t, "model", "nope")
	assert.Equal(t, 0, code, "a command with subcommands and no run of its own prints its help, as cobra does")
	assert.Empty(t, stderr)
	assert.Contains(t, stdout, "Usage:")
}

// TestNoCommandPrintsUsageAndExitsTwo: fedprop with no command (flags alone do not make one)
// is bad usage: the usage on standard error and exit status 2. Asking for the help or the
// version is not.
func TestNoCommandPrintsUsageAndExitsTwo(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"no arguments", nil, 2, "", "fedprop: no command given"},
		{"flags only", []string{"--log-level", "debug"}, 2, "", "fedprop: no command given"},
		{"help", []string{"--help"}, 0, "Available Commands:", ""},
		{"version", []string{"--version"}, 0, "fedprop version", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			assert.Equal(t, tc.code, code, stderr)
			if tc.stdout == "" {
				assert.Empty(t, stdout)
			} else {
				assert.Contains(t, stdout, tc.stdout)
			}
			if tc.stderr == "" {
				assert.Empty(t, stderr)
				return
			}
			assert.Contains(t, stderr, "Usage:\n  fedprop [command]\n", "the usage, with no command line of the root's own")
			assert.Contains(t, stderr, "Available Commands:")
			assert.True(t, strings.HasSuffix(stderr, tc.stderr+": name one of the commands above\n"), stderr)
		})
	}
}

// TestExitCodeGoesByTypeNotByText: exitCode reads the error's type and sentinel only, however
// deeply wrapped, and never its words: an error that merely reads like one of cobra's is a
// runtime failure.
func TestExitCodeGoesByTypeNotByText(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"usage error", usagef("--out is required"), 2},
		{"wrapped usage error", fmt.Errorf("sweep: %w", usageError{errors.New("x")}), 2},
		{"bad configuration", fmt.Errorf("read a.yaml: %w: run.rounds", coordinator.ErrBadConfig), 2},
		{"wrong number of arguments", fmt.Errorf("model: %w", argCountError{errors.New("accepts 1 arg(s), received 0")}), 2},
		{"runtime failure", errors.New("dial 127.0.0.1:7070: connection refused"), 1},
		{"text of an unknown flag", errors.New("unknown flag: --out"), 1},
		{"text of an unknown command", errors.New(`unknown command "x" for "fedprop"`), 1},
		{"text of a required flag", errors.New(`required flag(s) "q" not set`), 1},
		{"text of an invalid argument", errors.New("invalid argument: q=2"), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, exitCode(tc.err))
		})
	}
}

func TestSimWritesTheTableMetricsAndSummary(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sim.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
seed: 3
data:
  source: synthetic
  synthetic: {branches: 3, customers_per_branch: 300}
run:
  rounds: 3
  min_clients: 3
`), 0o644))
	out := filepath.Join(dir, "out")
	code, stdout, errOut := runCLI(t, "sim", "--config", cfg, "--out", out, "--log-level", "warn")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, stdout, "round")
	assert.Contains(t, stdout, "centralized")

	f, err := os.Open(filepath.Join(out, "metrics.csv"))
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 4, "a header and one row per round")
	assert.Equal(t, []string{"round", "auc", "log_loss", "accuracy"}, rows[0][:4])

	raw, err := os.ReadFile(filepath.Join(out, "summary.json"))
	require.NoError(t, err)
	var summary struct {
		Rounds      int                `json:"rounds"`
		Final       map[string]float64 `json:"final"`
		Centralized map[string]float64 `json:"centralized"`
		WallSeconds float64            `json:"wall_seconds"`
		Seed        uint64             `json:"seed"`
	}
	require.NoError(t, json.Unmarshal(raw, &summary))
	assert.Equal(t, 3, summary.Rounds)
	for _, key := range []string{"auc", "log_loss", "accuracy"} {
		assert.Contains(t, summary.Final, key)
		assert.Contains(t, summary.Centralized, key)
	}
	assert.Greater(t, summary.WallSeconds, 0.0)
	assert.Equal(t, uint64(3), summary.Seed)
	assert.False(t, strings.Contains(stdout, "NaN"))

	// The final model, as the coordinator would release it: the document scores, its exports
	// and its card are written beside the summary, and the audit log verifies.
	var weights struct {
		Weights []float64 `json:"weights"`
	}
	require.NoError(t, json.Unmarshal(raw, &weights))
	doc, err := modelfile.Load(filepath.Join(out, "model.json"))
	require.NoError(t, err)
	assert.Equal(t, weights.Weights, doc.Weights(), "the summary's final weights")
	assert.Equal(t, uint64(3), doc.Version)
	for name, want := range map[string]string{"model.pmml": "<PMML", "model-card.md": "# Model card", "model-card.json": `"model"`} {
		b, err := os.ReadFile(filepath.Join(out, name))
		require.NoError(t, err, name)
		assert.Contains(t, string(b), want, name)
	}
	onnx, err := os.ReadFile(filepath.Join(out, "model.onnx"))
	require.NoError(t, err)
	assert.NotEmpty(t, onnx)
	code, stdout, errOut = runCLI(t, "audit", "verify", "--log", filepath.Join(out, "audit.jsonl"))
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, stdout, "verifies")
}

func TestSimRerunsASummaryExactly(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sim.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("seed: 4\ndata: {source: synthetic, synthetic: {branches: 3, customers_per_branch: 200}}\nrun: {rounds: 2, min_clients: 3, round_deadline: 45s}\n"), 0o644))
	first, second := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	code, _, errOut := runCLI(t, "sim", "--config", cfg, "--out", first)
	require.Equal(t, 0, code, errOut)
	code, _, errOut = runCLI(t, "sim", "--config", filepath.Join(first, "summary.json"), "--out", second)
	require.Equal(t, 0, code, errOut)
	read := func(dir string) map[string]any {
		raw, err := os.ReadFile(filepath.Join(dir, "summary.json"))
		require.NoError(t, err)
		var s map[string]any
		require.NoError(t, json.Unmarshal(raw, &s))
		return s
	}
	a, b := read(first), read(second)
	for _, key := range []string{"weights", "final", "centralized", "seed", "config", "fedprop_version"} {
		assert.Equal(t, a[key], b[key], key)
	}
}
