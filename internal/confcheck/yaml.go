package confcheck

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// UnknownKeyError is a mapping key that no field of the configuration reads: most often a
// typo.
type UnknownKeyError struct {
	// Key is the key's path as the user wrote it: "run.roudns".
	Key string
	// Line is the key's 1-based line, or 0 when the document was built in code (from
	// environment variables and flags) and has no lines.
	Line int
	// Suggestion is the path of the valid key at the same level nearest to Key by edit
	// distance ("run.rounds"), or "" when none is near enough to be a likely typo.
	Suggestion string
}

// Error says the key, its line, and the suggestion if there is one.
func (e *UnknownKeyError) Error() string {
	msg := e.Key + ": " + lineOf(e.Line) + "unknown key"
	if e.Suggestion != "" {
		msg += ", did you mean " + e.Suggestion + "?"
	}
	return msg
}

// ValueError is a value that does not decode into its key's type: a word where a number
// belongs, a list where a mapping belongs, or a value its type's own parser refuses.
type ValueError struct {
	// Key is the path of the value's key as the user wrote it: "run.rounds".
	Key string
	// Line is the value's 1-based line, 0 when the document has no lines (see
	// UnknownKeyError.Line).
	Line int
	// Value is the value as written, quoted ("\"ten\""), or "a mapping" or "a list".
	Value string
	// Want says what the key takes: "an integer", "a duration such as 30s".
	Want string
	// Err is why the type's own parser (an encoding.TextUnmarshaler) refused the value; nil
	// when the value simply has the wrong kind, and Want says it all.
	Err error
}

// Error says the key, its line, the value and what the key takes (or why its parser refused
// it).
func (e *ValueError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s%s: %v", e.Key, lineOf(e.Line), e.Value, e.Err)
	}
	return fmt.Sprintf("%s: %s%s is not %s", e.Key, lineOf(e.Line), e.Value, e.Want)
}

// Unwrap returns the parser's reason, if any.
func (e *ValueError) Unwrap() error { return e.Err }

// DuplicateKeyError is a key given twice in one mapping; YAML would keep only one of them.
type DuplicateKeyError struct {
	// Key is the key's path as written; Line the line of its second occurrence and First
	// that of its first.
	Key         string
	Line, First int
}

// Error says the key and the lines of both occurrences.
func (e *DuplicateKeyError) Error() string {
	if e.Line == 0 {
		return e.Key + ": given twice"
	}
	return fmt.Sprintf("%s: line %d: given twice (first at line %d)", e.Key, e.Line, e.First)
}

// KeyOf returns the key path a problem CheckYAML reported names.
func KeyOf(err error) (string, bool) {
	var (
		uk *UnknownKeyError
		ve *ValueError
		dk *DuplicateKeyError
	)
	switch {
	case errors.As(err, &uk):
		return uk.Key, true
	case errors.As(err, &ve):
		return ve.Key, true
	case errors.As(err, &dk):
		return dk.Key, true
	}
	return "", false
}

func lineOf(line int) string {
	if line <= 0 {
		return ""
	}
	return "line " + strconv.Itoa(line) + ": "
}

// MaxYAMLProblems bounds how many problems CheckYAML reports: enough to fix a file in one go,
// few enough that a file of the wrong kind does not bury the first of them.
const MaxYAMLProblems = 20

// DecodeYAML decodes the YAML document data into out (a pointer to a struct with yaml tags)
// strictly: an unknown key, a key given twice or a value of the wrong type is an error that
// names the key by its path as written, with its line (see CheckYAML). An empty document
// leaves out as it is.
func DecodeYAML(data []byte, out any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err // a syntax error, which yaml places by line itself
	}
	if err := errors.Join(CheckYAML(&doc, out)...); err != nil {
		return err
	}
	// CheckYAML has found every problem yaml would report but those inside a type that
	// decodes itself (a yaml.Unmarshaler): they come from the decoder, in its own words.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// CheckYAML walks the YAML tree doc alongside the Go type of out, as go.yaml.in/yaml/v3 would
// decode the one into the other, and returns, in document order, one error per problem
// (at most MaxYAMLProblems): an *UnknownKeyError for a key no field reads (with the nearest
// valid key at its level as a suggestion), a *DuplicateKeyError, and a *ValueError for a value
// of the wrong kind. Every problem names its key by its path as the user wrote it
// ("run.roudns", "secure_aggregation.committee[2]") and its line.
//
// The walk goes by the yaml.Node tree and the struct tags rather than by the decoder's
// errors, which carry only text that names Go types ("field roudns not found in type
// coordinator.RunConfig"). Whether a scalar fits its type is asked of yaml itself, by
// decoding that one node, so that the two never disagree on what a valid integer or
// duration is. A type that decodes itself (a yaml.Unmarshaler, a yaml.Node) is not looked
// into.
func CheckYAML(doc *yaml.Node, out any) []error {
	if doc == nil || out == nil {
		return nil
	}
	c := &yamlChecker{seen: map[aliasVisit]bool{}}
	c.check(doc, reflect.TypeOf(out), "", 0)
	return c.problems
}

var (
	nodeType          = reflect.TypeFor[yaml.Node]()
	unmarshalerType   = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
	// obsoleteUnmarshalerType is yaml.v2's Unmarshaler, which yaml.v3 still honours.
	obsoleteUnmarshalerType = reflect.TypeFor[interface {
		UnmarshalYAML(unmarshal func(any) error) error
	}]()
)

// aliasVisit is an alias target checked against a type: checked once, so that aliases of
// aliases (a "billion laughs" document) cost no more than the nodes they name.
type aliasVisit struct {
	node *yaml.Node
	t    reflect.Type
}

type yamlChecker struct {
	problems []error
	seen     map[aliasVisit]bool
}

func (c *yamlChecker) report(err error) {
	if len(c.problems) < MaxYAMLProblems {
		c.problems = append(c.problems, err)
	}
}

func (c *yamlChecker) full() bool { return len(c.problems) >= MaxYAMLProblems }

// check checks node (written at path) against type t.
func (c *yamlChecker) check(n *yaml.Node, t reflect.Type, path string, depth int) {
	if n == nil || n.Kind == 0 || depth > maxDepth || c.full() { // Kind 0: an empty document
		return
	}
	at := n // where the value is written, for its line
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
		if c.seen[aliasVisit{n, t}] {
			return
		}
		c.seen[aliasVisit{n, t}] = true
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			c.check(n.Content[0], t, path, depth+1)
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null leaves any key at its zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if decodesItself(t) {
		return
	}
	if n.Kind == yaml.ScalarNode && reflect.PointerTo(t).Implements(textUnmarshalType) {
		c.scalar(at, n, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Interface:
		return // takes any value
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.wrongKind(at, n, t, path)
			return
		}
		c.mapping(n, structKeysOf(t), path, depth, map[string]int{})
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.wrongKind(at, n, t, path)
			return
		}
		c.mapping(n, mapKeysOf(t), path, depth, map[string]int{})
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && n.Kind == yaml.ScalarNode {
			c.scalar(at, n, t, path) // []byte: a string or !!binary
			return
		}
		if n.Kind != yaml.SequenceNode {
			c.wrongKind(at, n, t, path)
			return
		}
		for i, e := range n.Content {
			c.check(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			c.wrongKind(at, n, t, path)
			return
		}
		c.scalar(at, n, t, path)
	}
}

// scalar asks yaml whether the scalar n decodes into t.
func (c *yamlChecker) scalar(at, n *yaml.Node, t reflect.Type, path string) {
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return
	}
	ve := &ValueError{Key: path, Line: at.Line, Value: quoteValue(n.Value), Want: want(t)}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		ve.Err = err // the type's own parser refused it, and says why
	}
	c.report(ve)
}

func (c *yamlChecker) wrongKind(at, n *yaml.Node, t reflect.Type, path string) {
	value := quoteValue(n.Value)
	switch n.Kind {
	case yaml.MappingNode:
		value = "a mapping"
	case yaml.SequenceNode:
		value = "a list"
	}
	c.report(&ValueError{Key: path, Line: at.Line, Value: value, Want: want(t)})
}

// keySet is what a mapping at one level may hold: the named keys with their types, and, for
// a map (or a struct with an inline map, or an inline type that decodes itself), any other
// key with the type of its value (nil: not looked into).
type keySet struct {
	names []string // in declaration order, for a deterministic suggestion
	types map[string]reflect.Type
	open  bool
	other reflect.Type
}

// mapping checks the keys and values of mapping n at path; first holds the line of every key
// already seen at this level, so that a key given twice is found across merges (<<) too.
func (c *yamlChecker) mapping(n *yaml.Node, ks keySet, path string, depth int, first map[string]int) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		key := join(path, k.Value)
		if line, ok := first[k.Value]; ok {
			c.report(&DuplicateKeyError{Key: key, Line: k.Line, First: line})
			continue
		}
		first[k.Value] = k.Line
		t, known := ks.types[k.Value]
		switch {
		case known:
			c.check(v, t, key, depth+1)
		case ks.open:
			if ks.other != nil {
				c.check(v, ks.other, key, depth+1)
			}
		default:
			uk := &UnknownKeyError{Key: key, Line: k.Line}
			if s := nearest(k.Value, ks.names); s != "" {
				uk.Suggestion = join(path, s)
			}
			c.report(uk)
		}
	}
	// Keys merged in from an anchor (<<: *defaults) are written elsewhere but read here; a
	// key the mapping sets itself overrides them, as yaml decodes it.
	for _, m := range merges {
		c.merge(m, ks, path, depth, first)
	}
}

func (c *yamlChecker) merge(m *yaml.Node, ks keySet, path string, depth int, first map[string]int) {
	for m.Kind == yaml.AliasNode && m.Alias != nil {
		m = m.Alias
	}
	switch m.Kind {
	case yaml.MappingNode:
		own := map[string]int{}
		for i := 0; i+1 < len(m.Content); i += 2 {
			if _, overridden := first[m.Content[i].Value]; overridden {
				continue
			}
			own[m.Content[i].Value] = m.Content[i].Line
		}
		// Duplicates within the merged mapping are reported where it is written; here only
		// its keys are checked against this level.
		sub := &yaml.Node{Kind: yaml.MappingNode}
		for i := 0; i+1 < len(m.Content); i += 2 {
			if _, ok := own[m.Content[i].Value]; ok {
				sub.Content = append(sub.Content, m.Content[i], m.Content[i+1])
			}
		}
		c.mapping(sub, ks, path, depth+1, map[string]int{})
		for k, line := range own {
			first[k] = line
		}
	case yaml.SequenceNode:
		for _, e := range m.Content {
			c.merge(e, ks, path, depth+1, first)
		}
	}
}

// structKeysOf lists the keys yaml.v3 reads into struct type t: a field's yaml tag name, or
// its lower-cased Go name; "-" fields and unexported ones are not keys, and ",inline" fields
// lend their keys (or, for a map, take any other key) to t's level.
func structKeysOf(t reflect.Type) keySet {
	ks := keySet{types: map[string]reflect.Type{}}
	var add func(t reflect.Type, depth int)
	add = func(t reflect.Type, depth int) {
		if depth > maxDepth {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if f.PkgPath != "" && !f.Anonymous {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "" && !strings.Contains(string(f.Tag), ":") {
				tag = string(f.Tag) // yaml.v3 reads a bare tag as the yaml tag
			}
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if hasOption(opts, "inline") {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				switch {
				case ft.Kind() == reflect.Map:
					ks.open, ks.other = true, ft.Elem()
				case decodesItself(ft):
					ks.open = true // it reads the whole mapping its own way
				case ft.Kind() == reflect.Struct:
					add(ft, depth+1)
				}
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if _, dup := ks.types[name]; !dup {
				ks.names = append(ks.names, name)
			}
			ks.types[name] = f.Type
		}
	}
	add(t, 0)
	return ks
}

// mapKeysOf is a map's level: any key, each value of the map's element type.
func mapKeysOf(t reflect.Type) keySet {
	return keySet{open: true, other: t.Elem()}
}

func hasOption(opts, option string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == option {
			return true
		}
	}
	return false
}

// decodesItself reports whether yaml hands values of type t a node to decode as they please.
func decodesItself(t reflect.Type) bool {
	if t == nodeType {
		return true
	}
	pt := reflect.PointerTo(t)
	return pt.Implements(unmarshalerType) || pt.Implements(obsoleteUnmarshalerType) ||
		t.Implements(unmarshalerType) || t.Implements(obsoleteUnmarshalerType)
}

// want says, for a message, what a key of type t takes.
func want(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 30s or 5m"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a single value"
	case reflect.Struct:
		return "a mapping of keys"
	case reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return "a " + t.String()
}

// maxQuoted bounds a value quoted in a message: enough to recognise it.
const maxQuoted = 40

func quoteValue(s string) string {
	if r := []rune(s); len(r) > maxQuoted {
		s = string(r[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

// nearest returns the candidate nearest to key by edit distance (optimal string alignment:
// a swap of two neighbouring letters counts as one edit), or "" when even the nearest is too
// far to be a likely typo: more than a quarter of the key's length (at least 2), or as long as
// the key itself. Case is ignored; ties go to the earlier candidate.
func nearest(key string, candidates []string) string {
	limit := max(2, len(key)/4)
	best, bestDist := "", -1
	for _, cand := range candidates {
		d := editDistance(strings.ToLower(key), strings.ToLower(cand))
		if d > limit || d >= len(key) {
			continue
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = cand, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b, by bytes: the
// fewest insertions, deletions, substitutions and swaps of adjacent bytes.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
