package sim_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/sim"
	"github.com/fedprop/fedprop/synth"
)

func TestParseGrid(t *testing.T) {
	cases := []struct {
		in   string
		want sim.Grid
		err  string
	}{
		{in: "data.partition.alpha=0.1,1", want: sim.Grid{{Key: "data.partition.alpha", Values: []string{"0.1", "1"}}}},
		{in: " run.rounds = 5 , 10 ; run.strategy.name=fedavg,fedprox; ", want: sim.Grid{
			{Key: "run.rounds", Values: []string{"5", "10"}},
			{Key: "run.strategy.name", Values: []string{"fedavg", "fedprox"}},
		}},
		{in: "run.privacy.epsilon=0.5,1,none", want: sim.Grid{{Key: "run.privacy.epsilon", Values: []string{"0.5", "1", "none"}}}},
		{in: "seed=1", want: sim.Grid{{Key: "seed", Values: []string{"1"}}}},
		{in: "", err: "no keys"},
		{in: " ; ", err: "no keys"},
		{in: "run.rounds", err: "no '='"},
		{in: "run.rounds=", err: "empty value"},
		{in: "run.rounds=1,,2", err: "empty value"},
		{in: "run.rounds=1,1", err: "twice"},
		{in: "run..rounds=1", err: "not a dotted config key"},
		{in: "=1", err: "not a dotted config key"},
		{in: "run rounds=1", err: "not a dotted config key"},
		{in: "seed=1;seed=2", err: "appears twice"},
		{in: "run.train=1;run.train.l2=2", err: "overlap"},
		{in: "run.train.l2=2;run.train=1", err: "overlap"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			g, err := sim.ParseGrid(tc.in)
			if tc.err != "" {
				require.ErrorIs(t, err, sim.ErrBadGrid)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, g)
		})
	}
}

func FuzzParseGrid(f *testing.F) {
	for _, s := range []string{"data.partition.alpha=0.1,1", "a=1;b=x,y,none", "a=1;a.b=2", ";;", "a.=1", "a=1,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := sim.ParseGrid(s)
		if err != nil {
			require.ErrorIs(t, err, sim.ErrBadGrid)
			return
		}
		require.NotEmpty(t, g)
		n := 1
		for _, a := range g {
			require.NotEmpty(t, a.Values)
			for _, v := range a.Values {
				require.NotEmpty(t, v)
				require.NotContains(t, v, ",")
				require.NotContains(t, v, ";")
			}
			n = min(n*len(a.Values), sim.MaxSweepConfigurations+1)
		}
		require.Equal(t, n, g.Size())
		if n <= sim.MaxSweepConfigurations {
			require.Len(t, g.Points(), n)
		}
		// Applying the grid to a document must not panic, whatever the keys.
		_, _ = sim.ExpandSweep([]byte("seed: 1\nrun: {rounds: 1}\n"), "fuzz", g[:1])
	})
}

func TestGridPointsVaryTheLastKeyFastest(t *testing.T) {
	g, err := sim.ParseGrid("a=1,2;b=x,y,z")
	require.NoError(t, err)
	var got []string
	for _, p := range g.Points() {
		got = append(got, p.String())
	}
	assert.Equal(t, []string{"a=1,b=x", "a=1,b=y", "a=1,b=z", "a=2,b=x", "a=2,b=y", "a=2,b=z"}, got)
	assert.Equal(t, 6, g.Size())
	assert.Equal(t, []string{"a", "b"}, g.Keys())
}

const sweepBase = `
seed: 9
data:
  source: synthetic
  synthetic: {branches: 3, customers_per_branch: 300}
run:
  rounds: 2
  min_clients: 3
  train:
    learning_rate: 0.05
`

func TestExpandSweepSetsEveryPath(t *testing.T) {
	cases := []struct {
		grid  string
		check func(t *testing.T, c sim.Config)
	}{
		{"run.rounds=3", func(t *testing.T, c sim.Config) { assert.Equal(t, 3, c.Run.Rounds) }},
		{"run.train.learning_rate=0.2", func(t *testing.T, c sim.Config) { assert.InDelta(t, 0.2, c.Run.Train.LearningRate, 0) }},
		{"run.train.l2=1e-4", func(t *testing.T, c sim.Config) { assert.InDelta(t, 1e-4, c.Run.Train.L2, 0) }},
		{"run.strategy.name=fedprox", func(t *testing.T, c sim.Config) { assert.Equal(t, "fedprox", c.Run.Strategy.Name) }},
		{"run.id=1", func(t *testing.T, c sim.Config) { assert.Equal(t, "1", c.Run.ID, "a number into a string field") }},
		{"data.partition.alpha=0.1", func(t *testing.T, c sim.Config) { assert.InDelta(t, 0.1, c.Data.Partition.Alpha, 0) }},
		{"run.round_deadline=30s", func(t *testing.T, c sim.Config) { assert.Equal(t, "30s", c.Run.RoundDeadline.String()) }},
		{"centralized=false", func(t *testing.T, c sim.Config) { assert.False(t, *c.Centralized) }},
		// none is null: the zero value, so the config's default for an unset key.
		{"run.train.learning_rate=none", func(t *testing.T, c sim.Config) {
			want, err := sim.ParseConfig("x", []byte(strings.Replace(sweepBase, "learning_rate: 0.05", "", 1)))
			require.NoError(t, err)
			assert.InDelta(t, want.Run.Train.LearningRate, c.Run.Train.LearningRate, 0)
		}},
		{"run.train=none", func(t *testing.T, c sim.Config) { assert.Equal(t, 2, c.Run.Rounds) }},
	}
	for _, tc := range cases {
		t.Run(tc.grid, func(t *testing.T) {
			g, err := sim.ParseGrid(tc.grid)
			require.NoError(t, err)
			configs, err := sim.ExpandSweep([]byte(sweepBase), "base.yaml", g)
			require.NoError(t, err)
			require.Len(t, configs, 1)
			assert.Equal(t, 9, int(configs[0].Config.Seed), "the rest of the base is kept")
			tc.check(t, configs[0].Config)
		})
	}
}

func TestExpandSweepOnAnEmptyBase(t *testing.T) {
	g, err := sim.ParseGrid("run.rounds=4,5")
	require.NoError(t, err)
	for _, base := range []string{"", "~\n", "# only a comment\n"} {
		configs, err := sim.ExpandSweep([]byte(base), "empty.yaml", g)
		require.NoError(t, err, "%q", base)
		require.Len(t, configs, 2)
		assert.Equal(t, 4, configs[0].Config.Run.Rounds)
		assert.Equal(t, 5, configs[1].Config.Run.Rounds)
		assert.Equal(t, "run.rounds=5", configs[1].Settings.String())
		assert.Equal(t, 1, configs[1].Index)
	}
}

func TestExpandSweepNamesTheBadKey(t *testing.T) {
	cases := []struct{ grid, want string }{
		{"data.partition.alphaa=0.1,1", "alphaa"},
		{"run.privacy.epsilonn=1", "epsilonn"},
		{"run.rounds.max=3", "run.rounds is not a mapping"},
		{"run.rounds=-1", "run.rounds"},
		{"run.strategy.name=fedsgd", "fedsgd"},
	}
	for _, tc := range cases {
		t.Run(tc.grid, func(t *testing.T) {
			g, err := sim.ParseGrid(tc.grid)
			require.NoError(t, err)
			_, err = sim.ExpandSweep([]byte(sweepBase), "base.yaml", g)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "base.yaml")
			assert.Contains(t, err.Error(), "sweep configuration 0")
		})
	}
	_, err := sim.ExpandSweep([]byte("seed: [1\n"), "broken.yaml", sim.Grid{{Key: "seed", Values: []string{"1"}}})
	require.ErrorIs(t, err, sim.ErrBadGrid)
	assert.Contains(t, err.Error(), "broken.yaml")
}

func TestSweepRepeatsInGridOrder(t *testing.T) {
	g, err := sim.ParseGrid("run.rounds=2,3;run.train.learning_rate=0.05,0.1")
	require.NoError(t, err)
	var done []int
	opts := sim.SweepOptions{Done: func(r sim.SweepRow) { done = append(done, r.Index) }}
	a, err := sim.Sweep(context.Background(), []byte(sweepBase), "base.yaml", g, opts)
	require.NoError(t, err)
	require.Len(t, a, 4)
	assert.ElementsMatch(t, []int{0, 1, 2, 3}, done, "Done hears of every configuration once")
	parallel := min(runtime.GOMAXPROCS(0), 4)
	for i, r := range a {
		require.NoError(t, r.Err)
		require.NotNil(t, r.Result)
		assert.Equal(t, i, r.Index)
		assert.Equal(t, g.Points()[i], r.Settings)
		assert.Len(t, r.Result.Rounds, r.Config.Run.Rounds)
		assert.Equal(t, max(1, runtime.GOMAXPROCS(0)/parallel), r.Config.Workers, "the runs share the cores")
	}
	assert.Equal(t, 2, a[0].Config.Run.Rounds)
	assert.Equal(t, 3, a[3].Config.Run.Rounds)
	assert.NotEqual(t, a[0].Result.Summary.Weights, a[1].Result.Summary.Weights, "the learning rate matters")

	// Rerun with one configuration at a time: the same table, bit for bit.
	b, err := sim.Sweep(context.Background(), []byte(sweepBase), "base.yaml", g, sim.SweepOptions{Workers: 1})
	require.NoError(t, err)
	require.Len(t, b, 4)
	for i := range a {
		assert.Equal(t, a[i].Settings, b[i].Settings)
		assert.Equal(t, a[i].Result.Summary.Final, b[i].Result.Summary.Final)
		assert.Equal(t, a[i].Result.Summary.Weights, b[i].Result.Summary.Weights)
	}

	// And each row is what its configuration alone gives.
	alone, err := sim.Run(context.Background(), a[2].Config, sim.Options{})
	require.NoError(t, err)
	assert.Equal(t, alone.Summary.Weights, a[2].Result.Summary.Weights)
}

// writeCSVFixture writes one synthetic branch as a CSV with its schema and returns the paths.
func writeCSVFixture(t *testing.T, customers int) (csvPath, schemaPath string) {
	t.Helper()
	cfg := synth.Config{Branches: 1, CustomersPerBranch: customers, Seed: 3}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	dir := t.TempDir()
	doc, err := yaml.Marshal(synth.Schema(cfg))
	require.NoError(t, err)
	schemaPath = filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schemaPath, doc, 0o644))
	csvPath = filepath.Join(dir, "bank.csv")
	f, err := os.Create(csvPath)
	require.NoError(t, err)
	require.NoError(t, synth.WriteShard(f, branches[0].Train, branches[0].TrainOptedOut))
	require.NoError(t, f.Close())
	return csvPath, schemaPath
}

func TestSweepOverDirichletAlpha(t *testing.T) {
	csvPath, schemaPath := writeCSVFixture(t, 1500)
	base := "seed: 4\ndata:\n  source: csv\n  csv: {path: " + csvPath + ", schema: " + schemaPath + "}\n" +
		"  partition: {method: dirichlet, clients: 4}\nrun: {rounds: 2, min_clients: 4, min_records_plaintext: 0}\ncentralized: false\n"
	g, err := sim.ParseGrid("data.partition.alpha=0.1,10")
	require.NoError(t, err)
	rows, err := sim.Sweep(context.Background(), []byte(base), "alpha.yaml", g, sim.SweepOptions{})
	require.NoError(t, err)
	require.Len(t, rows, 2)
	for _, r := range rows {
		require.NoError(t, r.Err)
		assert.Greater(t, r.Result.Summary.Final.AUC, 0.5)
	}
	assert.InDelta(t, 0.1, rows[0].Config.Data.Partition.Alpha, 0)
	assert.InDelta(t, 10, rows[1].Config.Data.Partition.Alpha, 0)
	assert.NotEqual(t, rows[0].Result.Summary.Weights, rows[1].Result.Summary.Weights, "another partition, another model")
}

func TestSweepKeepsAFailedConfigurationInItsRow(t *testing.T) {
	dir := t.TempDir()
	csvPath, schemaPath := writeCSVFixture(t, 600)
	missing := filepath.Join(dir, "missing.csv")
	base := "data:\n  source: csv\n  csv: {schema: " + schemaPath + "}\nrun: {rounds: 1, min_clients: 2, min_records_plaintext: 0}\ncentralized: false\n"
	g := sim.Grid{{Key: "data.csv.path", Values: []string{missing, csvPath}}}
	rows, err := sim.Sweep(context.Background(), []byte(base), "base.yaml", g, sim.SweepOptions{})
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Error(t, rows[0].Err)
	assert.Contains(t, rows[0].Err.Error(), "missing.csv")
	require.NoError(t, rows[1].Err)
	assert.Len(t, rows[1].Result.Rounds, 1)
}

func TestSweepStopsWithItsContext(t *testing.T) {
	g, err := sim.ParseGrid("run.rounds=2,3")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rows, err := sim.Sweep(ctx, []byte(sweepBase), "base.yaml", g, sim.SweepOptions{})
	require.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, rows)
}

func TestSweepRefusesAnInvalidGridBeforeRunning(t *testing.T) {
	g, err := sim.ParseGrid("run.rounds=2,-3")
	require.NoError(t, err)
	ran := false
	_, err = sim.Sweep(context.Background(), []byte(sweepBase), "base.yaml", g, sim.SweepOptions{Done: func(sim.SweepRow) { ran = true }})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sweep configuration 1 (run.rounds=-3)")
	assert.False(t, ran, "nothing runs when one configuration is invalid")
}

// BenchmarkSweep runs four synthetic configurations one at a time (each run training its
// clients on every core) and side by side (each run on its share of the cores).
func BenchmarkSweep(b *testing.B) {
	base := []byte(`
seed: 3
data:
  source: synthetic
  synthetic: {branches: 8, customers_per_branch: 2000}
run: {rounds: 5, min_clients: 8}
centralized: false
`)
	g, err := sim.ParseGrid("run.train.learning_rate=0.02,0.05,0.1,0.2")
	require.NoError(b, err)
	for _, parallel := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run("parallel="+strconv.Itoa(parallel), func(b *testing.B) {
			for b.Loop() {
				rows, err := sim.Sweep(context.Background(), base, "bench.yaml", g, sim.SweepOptions{Workers: parallel})
				require.NoError(b, err)
				require.Len(b, rows, 4)
			}
		})
	}
}
