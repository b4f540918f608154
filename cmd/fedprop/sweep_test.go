package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/synth"
)

// csvSimConfig writes a synthetic branch as one CSV with its schema, and a simulation config
// that reads it over four Dirichlet clients; it returns the config's path and the CSV's.
func csvSimConfig(t *testing.T) (cfgPath, dataPath string) {
	t.Helper()
	dir := t.TempDir()
	sc := synth.Config{Branches: 1, CustomersPerBranch: 1500, Seed: 5}.WithDefaults()
	branches, err := synth.Generate(sc)
	require.NoError(t, err)
	doc, err := yaml.Marshal(synth.Schema(sc))
	require.NoError(t, err)
	schema := filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schema, doc, 0o644))
	data := filepath.Join(dir, "bank.csv")
	f, err := os.Create(data)
	require.NoError(t, err)
	require.NoError(t, synth.WriteShard(f, branches[0].Train, branches[0].TrainOptedOut))
	require.NoError(t, f.Close())
	cfg := filepath.Join(dir, "sim.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`seed: 4
data:
  source: csv
  csv: {path: `+data+`, schema: `+schema+`}
  partition: {method: dirichlet, clients: 4, alpha: 0.5}
run:
  rounds: 3
  min_clients: 4
  min_records_plaintext: 0 # Dirichlet shards of 1,500 rows can be small: a research opt-out
  train: {epochs: 1, learning_rate: 0.05}
`), 0o644))
	return cfg, data
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	return records
}

func globBase(t *testing.T, pattern string) []string {
	t.Helper()
	paths, err := filepath.Glob(pattern)
	require.NoError(t, err)
	for i, p := range paths {
		paths[i] = filepath.Base(p)
	}
	return paths
}

func TestSimSweepOverAlphaWritesOneTableAndOnePlot(t *testing.T) {
	cfg, _ := csvSimConfig(t)
	out := filepath.Join(t.TempDir(), "alpha")
	code, stdout, stderr := runCLI(t, "sim", "sweep", "--config", cfg, "--grid", "data.partition.alpha=0.1,10", "--out", out)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "2 configurations")
	assert.Contains(t, stdout, "data.partition.alpha=10")

	table := readCSV(t, filepath.Join(out, "sweep.csv"))
	require.Len(t, table, 3, "a header and a row per configuration")
	header := table[0]
	assert.Equal(t, []string{"data.partition.alpha", "auc", "log_loss", "accuracy", "brier", "centralized_auc", "rounds", "wall_seconds"}, header[:8])
	assert.Equal(t, "error", header[len(header)-1])
	for _, col := range []string{"clients", "train_rows", "test_rows", "status", "secure_aggregation", "seed"} {
		assert.Contains(t, header, col, "summary fields appear as columns by themselves")
	}
	assert.NotContains(t, header, "weights")
	assert.Equal(t, "0.1", table[1][0])
	assert.Equal(t, "10", table[2][0])
	for _, row := range table[1:] {
		require.Len(t, row, len(header))
		assert.Equal(t, "3", row[6], "rounds")
		assert.NotEmpty(t, row[1], "auc")
		assert.NotEmpty(t, row[5], "centralized auc")
		assert.Empty(t, row[len(row)-1], "no error")
	}
	assert.NotEqual(t, table[1][1], table[2][1], "another partition, another AUC")

	assert.Equal(t, []string{"auc_by_data.partition.alpha.png"}, globBase(t, filepath.Join(out, "*.png")), "one plot")
	assert.Equal(t, []string{"auc_by_data.partition.alpha.svg"}, globBase(t, filepath.Join(out, "*.svg")))
	assert.Equal(t, []string{"sweep.csv"}, globBase(t, filepath.Join(out, "*.csv")), "one table")
	for _, dir := range []string{"0-data.partition.alpha=0.1", "1-data.partition.alpha=10"} {
		for _, f := range []string{"metrics.csv", "summary.json", "auc.png", "auc.svg", "log_loss.png", "log_loss.svg"} {
			info, err := os.Stat(filepath.Join(out, dir, f))
			require.NoError(t, err)
			assert.Positive(t, info.Size(), f)
		}
	}

	// The same sweep again gives the same table, but for the timings.
	again := filepath.Join(t.TempDir(), "again")
	code, _, stderr = runCLI(t, "sim", "sweep", "--config", cfg, "--grid", "data.partition.alpha=0.1,10", "--out", again)
	require.Equal(t, 0, code, stderr)
	table2 := readCSV(t, filepath.Join(again, "sweep.csv"))
	require.Equal(t, header, table2[0])
	for i := 1; i < len(table); i++ {
		for j, col := range header {
			if !strings.HasSuffix(col, "_seconds") {
				assert.Equal(t, table[i][j], table2[i][j], "row %d column %s", i, col)
			}
		}
	}
}

func TestSimSweepTwoKeysAndFailures(t *testing.T) {
	cfg, data := csvSimConfig(t)
	out := t.TempDir()
	// The grid's two keys in two --grid flags: one grid, as with 'a=..;b=..'.
	code, _, stderr := runCLI(t, "sim", "sweep", "--config", cfg, "--out", out, "--parallel", "1",
		"--grid", "run.rounds=1,2", "--grid", "data.csv.test_fraction=0.2,0.3", "--x", "data.csv.test_fraction", "--plot", "auc,log_loss")
	require.Equal(t, 0, code, stderr)
	table := readCSV(t, filepath.Join(out, "sweep.csv"))
	require.Len(t, table, 5)
	assert.Equal(t, []string{"run.rounds", "data.csv.test_fraction"}, table[0][:2])
	assert.Equal(t, []string{"1", "0.2"}, table[1][:2], "grid order: the last key varies fastest")
	assert.Equal(t, []string{"2", "0.3"}, table[4][:2])
	assert.ElementsMatch(t, []string{"auc_by_data.csv.test_fraction.png", "log_loss_by_data.csv.test_fraction.png"},
		globBase(t, filepath.Join(out, "*.png")))

	// A configuration that fails at run time: its row says why, the others run, exit 1.
	missing := filepath.Join(t.TempDir(), "missing.csv")
	out = t.TempDir()
	code, _, stderr = runCLI(t, "sim", "sweep", "--config", cfg, "--out", out, "--grid", "data.csv.path="+missing+","+data)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "1 of 2 configurations failed")
	table = readCSV(t, filepath.Join(out, "sweep.csv"))
	require.Len(t, table, 3)
	errCol := slices.Index(table[0], "error")
	assert.Contains(t, table[1][errCol], "missing.csv")
	assert.Empty(t, table[2][errCol])
	assert.NotEmpty(t, table[2][1])
}

func TestSimSweepUsageErrors(t *testing.T) {
	cfg, _ := csvSimConfig(t)
	out := t.TempDir()
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"no grid", []string{"--config", cfg, "--out", out}, "--grid is required"},
		{"no out", []string{"--config", cfg, "--grid", "seed=1"}, "--out is required"},
		{"bad grid", []string{"--config", cfg, "--out", out, "--grid", "seed"}, "--grid"},
		{"unknown key", []string{"--config", cfg, "--out", out, "--grid", "data.partition.alphaa=1,2"}, "alphaa"},
		{"invalid value", []string{"--config", cfg, "--out", out, "--grid", "run.rounds=2,-1"}, "run.rounds=-1"},
		{"not a mapping", []string{"--config", cfg, "--out", out, "--grid", "seed.x=1"}, "seed is not a mapping"},
		{"x not swept", []string{"--config", cfg, "--out", out, "--grid", "seed=1,2", "--x", "run.rounds"}, "--x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append([]string{"sim", "sweep"}, tc.args...)...)
			assert.Equal(t, 2, code, stderr)
			assert.Contains(t, stderr, tc.msg)
		})
	}
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing runs on bad usage")
}

func TestSimWritesRoundPlotsBesideMetrics(t *testing.T) {
	out := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "sim.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("seed: 2\ndata: {source: synthetic, synthetic: {branches: 3, customers_per_branch: 300}}\nrun: {rounds: 2, min_clients: 3}\n"), 0o644))
	code, stdout, stderr := runCLI(t, "sim", "--config", cfg, "--out", out)
	require.Equal(t, 0, code, stderr)
	for _, f := range []string{"metrics.csv", "summary.json", "auc.png", "auc.svg", "log_loss.png", "log_loss.svg"} {
		info, err := os.Stat(filepath.Join(out, f))
		require.NoError(t, err)
		assert.Positive(t, info.Size(), f)
	}
	assert.Contains(t, stdout, filepath.Join(out, "auc.png"))
	assert.NotContains(t, stdout, "\r", "no progress bar when stdout is not a terminal")
}
