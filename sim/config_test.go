package sim_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/internal/confcheck"
	"github.com/fedprop/fedprop/sim"
)

// TestParseConfigNamesMistakesAsWritten: a misspelt key or a value of the wrong type in a
// simulation config is named by its key path as the user wrote it, with its line and, for a
// typo, the nearest valid key, never by a Go type name.
func TestParseConfigNamesMistakesAsWritten(t *testing.T) {
	demo, err := os.ReadFile("../configs/sim-synthetic.yaml")
	require.NoError(t, err)
	lineOf := func(doc, text string) int {
		before, _, found := strings.Cut(doc, text)
		require.True(t, found, text)
		return strings.Count(before, "\n") + 1
	}
	typo := strings.Replace(string(demo), "  rounds: 10\n", "  roudns: 10\n", 1)
	ten := strings.Replace(string(demo), "  rounds: 10\n", "  rounds: ten\n", 1)
	require.Equal(t, 14, lineOf(typo, "roudns"), "the demo config as the issue quotes it")

	tests := []struct {
		name, doc string
		want      string
	}{
		{"a typo in run", typo, "cfg.yaml: bad configuration: run.roudns: line 14: unknown key, did you mean run.rounds?"},
		{"a word for an integer", ten, `cfg.yaml: bad configuration: run.rounds: line 14: "ten" is not an integer`},
		{"a typo at the top", "sede: 1\n", "cfg.yaml: bad configuration: sede: line 1: unknown key, did you mean seed?"},
		{"a typo in data", "data:\n  source: synthetic\n  synthetic: {branchs: 3}\n",
			"cfg.yaml: bad configuration: data.synthetic.branchs: line 3: unknown key, did you mean data.synthetic.branches?"},
		{"a typo beside epsilon: none keeps the file's lines", "run:\n  privacy:\n    epsilon: none\n\n\n  roudns: 3\n",
			"cfg.yaml: bad configuration: run.roudns: line 6: unknown key, did you mean run.rounds?"},
		{"a list for an integer", "failures:\n  deadline_ticks: [1]\n", "cfg.yaml: bad configuration: failures.deadline_ticks: line 2: a list is not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sim.ParseConfig("cfg.yaml", []byte(tt.doc))
			require.Error(t, err)
			assert.EqualError(t, err, tt.want)
			assert.True(t, errors.Is(err, coordinator.ErrBadConfig), "exit status 2")
			assert.NotContains(t, err.Error(), "coordinator.RunConfig")
		})
	}

	_, err = sim.ParseConfig("cfg.yaml", []byte(typo))
	var uk *confcheck.UnknownKeyError
	require.ErrorAs(t, err, &uk)
	assert.Equal(t, confcheck.UnknownKeyError{Key: "run.roudns", Line: 14, Suggestion: "run.rounds"}, *uk)
}

// TestParseConfigEpsilonNone: "epsilon: none" still means a run without differential privacy
// now that the document is checked as a tree.
func TestParseConfigEpsilonNone(t *testing.T) {
	for _, doc := range []string{"run:\n  privacy: {mechanism: client, epsilon: none}\n", "run:\n  privacy: {mechanism: client, epsilon: ~}\n"} {
		cfg, err := sim.ParseConfig("cfg.yaml", []byte(doc))
		require.NoError(t, err, doc)
		assert.Equal(t, coordinator.DPNone, cfg.Run.Privacy.Mechanism)
	}
}
