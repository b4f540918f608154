package sim

import (
	"encoding/csv"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/metrics"
)

// sweepRows are three configurations of a grid over run.rounds and data.partition.alpha: two
// that ran (the second with an AUC that is NaN, and no centralized fit) and one that failed
// after its first round.
func sweepRows() []SweepRow {
	settings := func(rounds, alpha string) Settings {
		return Settings{{"run.rounds", rounds}, {"data.partition.alpha", alpha}}
	}
	config := func(rounds int, alpha float64) Config {
		var c Config
		c.Seed = 7
		c.Run.Rounds = rounds
		c.Data.Partition.Alpha = alpha
		return c
	}
	return []SweepRow{
		{Index: 0, Settings: settings("2", "0.5"), Config: config(2, 0.5), Result: &Result{Summary: Summary{
			Rounds: 2, Status: "completed", Clients: 4, WallSeconds: 1.5,
			Final:       metrics.Summary{N: 100, AUC: 0.75, LogLoss: 0.5, Accuracy: 0.9, Brier: 0.1},
			Centralized: &metrics.Summary{N: 100, AUC: 0.8, LogLoss: 0.4, Accuracy: 0.91, Brier: 0.09},
			Weights:     []float64{1, 2, 3},
		}}},
		{Index: 1, Settings: settings("2", "10"), Config: config(2, 10), Result: &Result{Summary: Summary{
			Rounds: 2, Status: "completed", Clients: 4, WallSeconds: 2,
			Final:   metrics.Summary{N: 100, AUC: math.NaN(), LogLoss: 0.25, Accuracy: 0.95, Brier: 0.05},
			Weights: []float64{4, 5, 6},
		}}},
		{Index: 2, Settings: settings("3", "0.5"), Config: config(3, 0.5), Err: errors.New("round 2: too few clients"), Result: &Result{Summary: Summary{
			Rounds: 1, Status: "failed", Final: metrics.Summary{N: 100, AUC: 0.6, LogLoss: 0.7}, Weights: []float64{0, 0, 0},
		}}},
	}
}

func TestSweepTableColumns(t *testing.T) {
	table, err := NewSweepTable([]string{"run.rounds", "data.partition.alpha"}, sweepRows())
	require.NoError(t, err)
	cols := table.Columns()
	fixed := []string{"run.rounds", "data.partition.alpha", "auc", "log_loss", "accuracy", "brier", "centralized_auc", "rounds", "wall_seconds"}
	require.Greater(t, len(cols), len(fixed)+1)
	assert.Equal(t, fixed, cols[:len(fixed)], "the swept keys, then the fixed result columns")
	assert.Equal(t, "error", cols[len(cols)-1], "error comes last")
	extra := cols[len(fixed) : len(cols)-1]
	assert.True(t, slices.IsSorted(extra), "the other figures in name order: %v", extra)
	for _, c := range []string{"status", "clients", "seed", "client_randomness.seeded_by_simulator"} {
		assert.Contains(t, extra, c, "a summary field is a column by itself")
	}
	for _, c := range extra {
		for _, fixedField := range []string{"config", "final", "centralized", "rounds", "wall_seconds"} {
			assert.False(t, c == fixedField || strings.HasPrefix(c, fixedField+"."), "%s repeats a fixed column or the config", c)
		}
	}
	assert.NotContains(t, cols, "weights", "arrays are left out")

	cols[0] = "changed"
	assert.Equal(t, "run.rounds", table.Columns()[0], "Columns is a copy")
}

func TestSweepTableRecords(t *testing.T) {
	table, err := NewSweepTable([]string{"run.rounds", "data.partition.alpha"}, sweepRows())
	require.NoError(t, err)
	records := table.Records()
	require.Len(t, records, 4, "a header and a row per configuration, in grid order")
	cols := records[0]
	cell := func(row int, col string) string {
		i := slices.Index(cols, col)
		require.GreaterOrEqual(t, i, 0, col)
		require.Len(t, records[row], len(cols))
		return records[row][i]
	}
	cases := []struct {
		name string
		row  int // 1 is the first configuration
		col  string
		want string
	}{
		{"a swept key as the grid wrote it", 2, "data.partition.alpha", "10"},
		{"the final AUC", 1, "auc", "0.75"},
		{"an AUC that is NaN is null, an empty cell", 2, "auc", ""},
		{"the centralized AUC", 1, "centralized_auc", "0.8"},
		{"no centralized fit, no cell", 2, "centralized_auc", ""},
		{"rounds", 1, "rounds", "2"},
		{"wall seconds", 2, "wall_seconds", "2"},
		{"a string field", 1, "status", "completed"},
		{"a bool field", 1, "client_randomness.seeded_by_simulator", "false"},
		{"no error", 1, "error", ""},
		{"the failed configuration keeps its settings", 3, "run.rounds", "3"},
		{"the failed configuration says why", 3, "error", "round 2: too few clients"},
		{"the failed configuration has no figures, though it ran a round", 3, "log_loss", ""},
		{"nor any other field", 3, "status", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, cell(tc.row, tc.col))
		})
	}
}

func TestSweepTablePoints(t *testing.T) {
	table, err := NewSweepTable([]string{"run.rounds", "data.partition.alpha"}, sweepRows())
	require.NoError(t, err)
	pts := table.Points()
	require.Len(t, pts, 2, "the failed configuration is not plotted")
	assert.Equal(t, map[string]string{"run.rounds": "2", "data.partition.alpha": "0.5"}, pts[0].Values)
	assert.Equal(t, map[string]string{"run.rounds": "2", "data.partition.alpha": "10"}, pts[1].Values)
	assert.Equal(t, 0.75, pts[0].Metrics["auc"])
	assert.Equal(t, 0.25, pts[1].Metrics["log_loss"])
	assert.NotContains(t, pts[1].Metrics, "auc", "a null figure is no point")
	assert.NotContains(t, pts[0].Metrics, "status", "text is no metric")
	assert.Equal(t, 10.0, pts[1].Metrics["config.data.partition.alpha"], "the config's numeric leaves, for a delta of an epsilon axis")
	assert.Equal(t, 7.0, pts[0].Metrics["config.seed"])
}

func TestSweepTableWriteCSV(t *testing.T) {
	table, err := NewSweepTable([]string{"run.rounds", "data.partition.alpha"}, sweepRows())
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "sweep.csv")
	require.NoError(t, table.WriteCSV(path))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	got, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	assert.Equal(t, table.Records(), got)

	err = table.WriteCSV(filepath.Join(t.TempDir(), "missing", "sweep.csv"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestSweepTableOfNoRows(t *testing.T) {
	table, err := NewSweepTable([]string{"seed"}, nil)
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"seed", "auc", "log_loss", "accuracy", "brier", "centralized_auc", "rounds", "wall_seconds", "error"}}, table.Records())
	assert.Empty(t, table.Points())
}

func TestSweepRowDirName(t *testing.T) {
	row := func(index int, kv ...string) SweepRow {
		r := SweepRow{Index: index}
		for i := 0; i+1 < len(kv); i += 2 {
			r.Settings = append(r.Settings, Setting{kv[i], kv[i+1]})
		}
		return r
	}
	long := strings.Repeat("x", 200)
	cases := []struct {
		name string
		row  SweepRow
		n    int
		want string
	}{
		{"one key", row(0, "data.partition.alpha", "0.1"), 2, "0-data.partition.alpha=0.1"},
		{"padded to sort in grid order", row(3, "seed", "1"), 11, "03-seed=1"},
		{"padded to the last index, not the count", row(7, "seed", "1"), 10, "7-seed=1"},
		{"keys joined by _", row(1, "run.rounds", "2", "seed", "none"), 4, "1-run.rounds=2_seed=none"},
		{"a path made safe", row(0, "data.csv.path", "/data/my bank.csv"), 1, "0-data.csv.path=_data_my_bank.csv"},
		{"a run of unsafe characters is one _", row(0, "run.strategy.name", "a/ :b"), 1, "0-run.strategy.name=a_b"},
		{"cut to 120 bytes", row(5, "k", long), 6, "5-" + ("k=" + long)[:120]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.row.DirName(tc.n))
		})
	}
}

func TestFlattenJSONFindsNewFields(t *testing.T) {
	type privacy struct {
		Epsilon float64  `json:"epsilon"`
		Delta   float64  `json:"delta"`
		Spent   *float64 `json:"spent"`
	}
	v := struct {
		Name    string    `json:"name"`
		OK      bool      `json:"ok"`
		Privacy privacy   `json:"privacy"`
		Weights []float64 `json:"weights"`
	}{"x", true, privacy{Epsilon: 1.5, Delta: 1e-5}, []float64{1, 2}}
	got, err := flattenJSON(v)
	require.NoError(t, err)
	assert.Equal(t, map[string]jsonValue{
		"name":            {text: "x"},
		"ok":              {text: "true"},
		"privacy.epsilon": {text: "1.5", isNumber: true},
		"privacy.delta":   {text: "0.00001", isNumber: true},
		"privacy.spent":   {},
	}, got)
	x, ok := got["privacy.delta"].number()
	assert.True(t, ok)
	assert.InDelta(t, 1e-5, x, 0)
	_, ok = got["name"].number()
	assert.False(t, ok)

	_, err = flattenJSON(math.Inf(1))
	assert.Error(t, err, "a value JSON cannot carry")
}
