package confcheck_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/internal/confcheck"
)

// level is a text value with its own parser, like privacy.Conversion.
type level string

func (l *level) UnmarshalText(b []byte) error {
	if s := string(b); s != "low" && s != "high" {
		return errors.New("must be low or high")
	}
	*l = level(b)
	return nil
}

// selfDecoding reads its node its own way; the checker does not look into it.
type selfDecoding struct{ raw string }

func (s *selfDecoding) UnmarshalYAML(n *yaml.Node) error { s.raw = n.Value; return nil }

type trainSection struct {
	Epochs       int     `yaml:"epochs"`
	LearningRate float64 `yaml:"learning_rate"`
}

type runSection struct {
	ID        string         `yaml:"id"`
	Rounds    int            `yaml:"rounds"`
	MinClient int            `yaml:"min_clients"`
	Train     trainSection   `yaml:"train"`
	Committee []string       `yaml:"committee"`
	Deadline  time.Duration  `yaml:"round_deadline"`
	Level     level          `yaml:"level"`
	Weights   map[string]int `yaml:"weights"`
	Trainers  []trainSection `yaml:"trainers"`
	Custom    selfDecoding   `yaml:"custom"`
	Fraction  *float64       `yaml:"fraction"`
	Seed      uint64         `yaml:"seed"`
}

type edgeSection struct {
	Insecure bool `yaml:"insecure"`
}

type fileConfig struct {
	Listen      string      `yaml:"listen"`
	Run         runSection  `yaml:"run"`
	Edge        edgeSection `yaml:",inline"`
	Untagged    int
	Ignored     int   `yaml:"-"`
	Centralized *bool `yaml:"centralized"`
}

type withExtras struct {
	Name   string         `yaml:"name"`
	Extras map[string]int `yaml:",inline"`
}

func check(t *testing.T, doc string, out any) []error {
	t.Helper()
	var n yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(doc), &n))
	return confcheck.CheckYAML(&n, out)
}

func messages(errs []error) []string {
	var out []string
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

// TestCheckYAMLNamesTheKeyAsWritten: every problem names the key by its path as the user
// wrote it, with its line, never a Go type; a typo gets the nearest valid key at its level.
func TestCheckYAMLNamesTheKeyAsWritten(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"valid", "listen: :7070\nrun:\n  rounds: 10\n  train: {epochs: 2, learning_rate: 0.1}\n  round_deadline: 30s\n  level: high\n" +
			"  weights: {a: 1}\n  committee: [a, b]\n  custom: {anything: [goes]}\n  fraction: 0.5\ninsecure: true\nuntagged: 3\ncentralized: false\n", nil},
		{"empty document", "", nil},
		{"null sections", "run:\nlisten: ~\n", nil},
		{"typo in a section", "listen: x\nrun:\n  roudns: 10\n", []string{"run.roudns: line 3: unknown key, did you mean run.rounds?"}},
		{"typo at the top", "lisen: x\n", []string{"lisen: line 1: unknown key, did you mean listen?"}},
		{"typo of an inlined key", "insecrue: true\n", []string{"insecrue: line 1: unknown key, did you mean insecure?"}},
		{"typo two levels down", "run:\n  train:\n    learnin_rate: 0.1\n", []string{"run.train.learnin_rate: line 3: unknown key, did you mean run.train.learning_rate?"}},
		{"typo in a list of sections", "run:\n  trainers:\n    - epochs: 1\n    - epoch: 2\n", []string{"run.trainers[1].epoch: line 4: unknown key, did you mean run.trainers[1].epochs?"}},
		{"nothing near enough", "run:\n  colour: blue\n", []string{"run.colour: line 2: unknown key"}},
		{"case differs", "run:\n  Rounds: 3\n", []string{"run.Rounds: line 2: unknown key, did you mean run.rounds?"}},
		{"a word for an integer", "run:\n  rounds: ten\n", []string{`run.rounds: line 2: "ten" is not an integer`}},
		{"a negative unsigned", "run: {seed: -1}\n", []string{`run.seed: line 1: "-1" is not a non-negative integer`}},
		{"a word for a number", "run:\n  train:\n    learning_rate: fast\n", []string{`run.train.learning_rate: line 3: "fast" is not a number`}},
		{"a word for a pointer to a number", "run: {fraction: half}\n", []string{`run.fraction: line 1: "half" is not a number`}},
		{"a word for a boolean", "centralized: maybe\n", []string{`centralized: line 1: "maybe" is not true or false`}},
		{"a number for a duration", "run:\n  round_deadline: 30\n", []string{`run.round_deadline: line 2: "30" is not a duration such as 30s or 5m`}},
		{"a value its parser refuses", "run: {level: medium}\n", []string{`run.level: line 1: "medium": must be low or high`}},
		{"a scalar for a section", "run: 5\n", []string{`run: line 1: "5" is not a mapping of keys`}},
		{"a list for a scalar", "listen: [a, b]\n", []string{"listen: line 1: a list is not a single value"}},
		{"a scalar for a list", "run: {committee: a}\n", []string{`run.committee: line 1: "a" is not a list`}},
		{"a word in a map of integers", "run:\n  weights:\n    a: 1\n    b: two\n", []string{`run.weights.b: line 4: "two" is not an integer`}},
		{"a key given twice", "run:\n  rounds: 1\n  rounds: 2\n", []string{"run.rounds: line 3: given twice (first at line 2)"}},
		{"the - field is no key", "ignored: 1\n", []string{"ignored: line 1: unknown key"}},
		{"every problem, in document order", "lisen: x\nrun:\n  rounds: ten\n  roudns: 3\n", []string{
			"lisen: line 1: unknown key, did you mean listen?",
			`run.rounds: line 3: "ten" is not an integer`,
			"run.roudns: line 4: unknown key, did you mean run.rounds?",
		}},
		{"merged keys are checked where they are read", "base: &base\n  rounds: 3\n  roudns: 4\nrun:\n  <<: *base\n  rounds: 5\n", []string{
			"base: line 1: unknown key",
			"run.roudns: line 3: unknown key, did you mean run.rounds?",
		}},
		{"an alias is checked as what it names", "listen: &l x\nrun:\n  id: *l\n  rounds: *l\n", []string{`run.rounds: line 4: "x" is not an integer`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, messages(check(t, tt.doc, &fileConfig{})))
		})
	}
}

// TestCheckYAMLProblemsAreTyped: callers tell the problems apart and read their key with
// errors.As, not from the message.
func TestCheckYAMLProblemsAreTyped(t *testing.T) {
	errs := check(t, "run:\n  roudns: 1\n  rounds: ten\n  level: medium\n  id: a\n  id: b\n", &fileConfig{})
	require.Len(t, errs, 4)

	var uk *confcheck.UnknownKeyError
	require.ErrorAs(t, errs[0], &uk)
	assert.Equal(t, confcheck.UnknownKeyError{Key: "run.roudns", Line: 2, Suggestion: "run.rounds"}, *uk)

	var ve *confcheck.ValueError
	require.ErrorAs(t, errs[1], &ve)
	assert.Equal(t, confcheck.ValueError{Key: "run.rounds", Line: 3, Value: `"ten"`, Want: "an integer"}, *ve)

	require.ErrorAs(t, errs[2], &ve)
	assert.Equal(t, "run.level", ve.Key)
	assert.EqualError(t, errors.Unwrap(errs[2]), "must be low or high", "the parser's own reason is wrapped")

	var dk *confcheck.DuplicateKeyError
	require.ErrorAs(t, errs[3], &dk)
	assert.Equal(t, confcheck.DuplicateKeyError{Key: "run.id", Line: 6, First: 5}, *dk)

	for i, want := range []string{"run.roudns", "run.rounds", "run.level", "run.id"} {
		key, ok := confcheck.KeyOf(errs[i])
		assert.True(t, ok)
		assert.Equal(t, want, key)
	}
	_, ok := confcheck.KeyOf(errors.New("run.rounds: something"))
	assert.False(t, ok, "read from the type, not the text")
}

// TestCheckYAMLOnADocumentBuiltInCode: a document encoded from values (the merge of
// environment variables and flags) has no lines, and the messages say none.
func TestCheckYAMLOnADocumentBuiltInCode(t *testing.T) {
	var n yaml.Node
	require.NoError(t, n.Encode(map[string]any{"run": map[string]any{"rounds": "ten", "roudns": 1}}))
	assert.Equal(t, []string{
		"run.roudns: unknown key, did you mean run.rounds?",
		`run.rounds: "ten" is not an integer`,
	}, messages(confcheck.CheckYAML(&n, &fileConfig{})))
}

func TestCheckYAMLInlineMapTakesAnyKey(t *testing.T) {
	assert.Empty(t, check(t, "name: a\nwhatever: 3\n", &withExtras{}))
	assert.Equal(t, []string{`other: line 2: "x" is not an integer`}, messages(check(t, "name: a\nother: x\n", &withExtras{})))
}

// bomb nests lists as deep as the alias chain of TestCheckYAMLBoundsItsWork.
type bomb struct {
	Deep [][][][][][][][]int `yaml:"deep"`
}

// TestCheckYAMLBoundsItsWork: aliases of aliases (a "billion laughs" document: 10^8 integers
// here) are checked once per type, so the check takes no longer than the document is long;
// and a file of the wrong kind reports a bounded number of problems.
func TestCheckYAMLBoundsItsWork(t *testing.T) {
	var b strings.Builder
	b.WriteString("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n")
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h"} {
		b.WriteString(name + ": &" + name + " [")
		for i := range 10 {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = name
	}
	b.WriteString("deep: *" + prev + "\n")
	start := time.Now()
	errs := check(t, b.String(), &bomb{})
	assert.Len(t, errs, 8, "the anchors a to h are unknown keys, and nothing else is wrong")
	assert.Less(t, time.Since(start), 5*time.Second)

	var many strings.Builder
	for i := range 100 {
		many.WriteString("k" + strings.Repeat("z", i) + ": 1\n")
	}
	assert.Len(t, check(t, many.String(), &fileConfig{}), confcheck.MaxYAMLProblems)
}

func TestDecodeYAML(t *testing.T) {
	var cfg fileConfig
	require.NoError(t, confcheck.DecodeYAML([]byte("run:\n  rounds: 7\n  round_deadline: 1m\n"), &cfg))
	assert.Equal(t, 7, cfg.Run.Rounds)
	assert.Equal(t, time.Minute, cfg.Run.Deadline)

	cfg = fileConfig{Listen: "default"}
	require.NoError(t, confcheck.DecodeYAML(nil, &cfg), "an empty file")
	assert.Equal(t, "default", cfg.Listen, "keeps what out held")

	err := confcheck.DecodeYAML([]byte("run:\n  roudns: 10\n  rounds: ten\n"), &cfg)
	assert.EqualError(t, err, "run.roudns: line 2: unknown key, did you mean run.rounds?\n"+`run.rounds: line 3: "ten" is not an integer`)
	assert.NotContains(t, err.Error(), "fileConfig", "no Go type names")

	err = confcheck.DecodeYAML([]byte("run: [\n"), &cfg)
	assert.ErrorContains(t, err, "line", "a syntax error keeps yaml's position")
}
