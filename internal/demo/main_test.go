package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/sim"
)

const demoConfig = "seed: 2\ndata: {source: synthetic, synthetic: {branches: 3, customers_per_branch: 600}}\nrun: {rounds: 2, min_clients: 3}\n"

// demo runs the demo on demoConfig into a fresh directory and returns what it printed and
// the directory.
func demo(t *testing.T) (stdout, out string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sim.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(demoConfig), 0o644))
	out = filepath.Join(dir, "out")
	var buf bytes.Buffer
	require.NoError(t, run(cfg, out, &buf))
	return buf.String(), out
}

// readSummary decodes summary.json as the sim.Summary it was written from, refusing any field
// the type does not have.
func readSummary(t *testing.T, out string) sim.Summary {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(out, "summary.json"))
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var s sim.Summary
	require.NoError(t, dec.Decode(&s))
	return s
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// TestDemoWritesMetricsAndSummary reads what the demo wrote: metrics.csv has a row per round
// whose figures are finite and in range, summary.json decodes into sim.Summary and agrees
// with the last row, the model trained, and the printed table says the same.
func TestDemoWritesMetricsAndSummary(t *testing.T) {
	stdout, out := demo(t)

	f, err := os.Open(filepath.Join(out, "metrics.csv"))
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 3, "a header and one row per round")
	assert.Equal(t, []string{"round", "auc", "log_loss", "accuracy", "brier", "federated_auc", "federated_log_loss",
		"train_loss", "contributors", "examples", "seconds"}, rows[0])
	col := func(name string) int {
		for i, c := range rows[0] {
			if c == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	ranges := []struct {
		column   string
		min, max float64
	}{
		{"auc", 0.6, 1}, // the synthetic bank has signal: a chance-level model is broken
		{"log_loss", 0, 0.7},
		{"accuracy", 0.5, 1},
		{"brier", 0, 0.25},
		{"federated_auc", 0.6, 1},
		{"train_loss", 0, 1},
		{"contributors", 3, 3},
		{"examples", 1, math.Inf(1)},
		{"seconds", 0, math.Inf(1)},
	}
	for i, row := range rows[1:] {
		assert.Equal(t, strconv.Itoa(i+1), row[col("round")], "rounds in order")
		for _, r := range ranges {
			x, err := strconv.ParseFloat(row[col(r.column)], 64)
			require.NoError(t, err, "round %d %s", i+1, r.column)
			assert.True(t, finite(x), "round %d %s is %v", i+1, r.column, x)
			assert.True(t, x >= r.min && x <= r.max, "round %d %s %v outside [%v, %v]", i+1, r.column, x, r.min, r.max)
		}
	}
	last := rows[len(rows)-1]

	s := readSummary(t, out)
	assert.Equal(t, string(coordinator.RunCompleted), s.Status, s.Message)
	assert.Equal(t, 2, s.Rounds)
	assert.Equal(t, uint64(2), s.Seed)
	assert.Equal(t, "demo", s.FedpropVersion)
	assert.Equal(t, 3, s.Clients)
	assert.Positive(t, s.TrainRows)
	assert.Positive(t, s.TestRows)
	assert.Equal(t, strconv.FormatFloat(s.Final.AUC, 'g', -1, 64), last[col("auc")], "the summary's AUC is the last round's")
	assert.Equal(t, strconv.FormatFloat(s.Final.LogLoss, 'g', -1, 64), last[col("log_loss")])
	assert.Equal(t, float64(s.TestRows), s.Final.N, "the final figures are over the test rows")
	require.NotNil(t, s.Centralized, "the demo compares with a centralized fit")
	for name, x := range map[string]float64{"final.auc": s.Final.AUC, "centralized.auc": s.Centralized.AUC} {
		assert.True(t, finite(x) && x >= 0.6 && x <= 1, "%s %v", name, x)
	}
	assert.Less(t, math.Abs(s.Final.AUC-s.Centralized.AUC), 0.1, "federated training comes close to the pooled fit")
	require.Len(t, s.Weights, s.Features+1, "an intercept and a weight per feature")
	trained := false
	for i, w := range s.Weights {
		assert.True(t, finite(w), "weight %d is %v", i, w)
		trained = trained || w != 0
	}
	assert.True(t, trained, "the model moved from zero")
	assert.True(t, s.ClientRandomness.SeededBySimulator, "a simulation says whose seed its clients' randomness came from")

	lines := strings.Split(stdout, "\n")
	require.GreaterOrEqual(t, len(lines), 3)
	assert.Equal(t, []string{"round", "test_auc", "log_loss", "accuracy", "brier", "train_loss", "clients", "seconds"}, strings.Fields(lines[0]))
	for i := 1; i <= 2; i++ {
		fields := strings.Fields(lines[i])
		require.NotEmpty(t, fields)
		assert.Equal(t, strconv.Itoa(i), fields[0], "a table line per round")
		printed, err := strconv.ParseFloat(fields[1], 64)
		require.NoError(t, err, lines[i])
		written, err := strconv.ParseFloat(rows[i][col("auc")], 64)
		require.NoError(t, err)
		assert.InDelta(t, written, printed, 5e-5, "round %d: the table prints metrics.csv's AUC to 4 places", i)
	}
	assert.Contains(t, stdout, "federated   (round 2): AUC "+strconv.FormatFloat(s.Final.AUC, 'f', 4, 64))
	assert.Contains(t, stdout, "centralized (pooled)  : AUC "+strconv.FormatFloat(s.Centralized.AUC, 'f', 4, 64))
	assert.Contains(t, stdout, "wrote "+filepath.Join(out, "metrics.csv"))
}

// TestDemoRepeatsItsRun: the same config and seed give the same model and figures.
func TestDemoRepeatsItsRun(t *testing.T) {
	_, first := demo(t)
	_, second := demo(t)
	a, b := readSummary(t, first), readSummary(t, second)
	assert.Equal(t, a.Weights, b.Weights)
	assert.Equal(t, a.Final, b.Final)
	assert.Equal(t, a.Centralized, b.Centralized)
}

// TestDemoRefusesWhatItCannotRun: a missing or misspelt config fails before anything runs,
// with the error that says which, and writes nothing.
func TestDemoRefusesWhatItCannotRun(t *testing.T) {
	dir := t.TempDir()
	misspelt := filepath.Join(dir, "misspelt.yaml")
	require.NoError(t, os.WriteFile(misspelt, []byte("seed: 2\nrun: {roundz: 2}\n"), 0o644))
	cases := []struct {
		name string
		cfg  string
		want error
		msg  string
	}{
		{"missing config", filepath.Join(dir, "missing.yaml"), fs.ErrNotExist, "missing.yaml"},
		{"misspelt key", misspelt, coordinator.ErrBadConfig, "roundz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name)
			var stdout bytes.Buffer
			err := run(tc.cfg, out, &stdout)
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), tc.msg)
			assert.NoDirExists(t, out, "nothing written")
			assert.Empty(t, stdout.String())
		})
	}
}
