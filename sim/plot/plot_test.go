package plot_test

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/sim/plot"
)

// outDir is a fresh directory, or $FEDPROP_PLOT_DIR/name to keep the figures for a look.
func outDir(t *testing.T, name string) string {
	t.Helper()
	if d := os.Getenv("FEDPROP_PLOT_DIR"); d != "" {
		return filepath.Join(d, name)
	}
	return t.TempDir()
}

// requireFigures checks that every path is a non-empty PNG that decodes to a figure of a
// readable size, or a non-empty SVG holding the given texts.
func requireFigures(t *testing.T, paths []string, texts ...string) {
	t.Helper()
	require.NotEmpty(t, paths)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NotEmpty(t, b, p)
		switch filepath.Ext(p) {
		case ".png":
			img, err := png.Decode(bytes.NewReader(b))
			require.NoError(t, err, p)
			assert.GreaterOrEqual(t, img.Bounds().Dx(), 800, p)
			assert.GreaterOrEqual(t, img.Bounds().Dy(), 500, p)
		case ".svg":
			assert.True(t, bytes.HasPrefix(bytes.TrimSpace(b), []byte("<?xml")) || bytes.Contains(b[:min(len(b), 200)], []byte("<svg")), p)
			for _, s := range texts {
				assert.Contains(t, string(b), s, p)
			}
		default:
			t.Fatalf("unexpected file %s", p)
		}
	}
}

func TestRoundsWritesAUCAndLogLoss(t *testing.T) {
	var rounds []plot.Round
	for r := 1; r <= 20; r++ {
		x := float64(r)
		fed := 0.77 - 0.1/x + 0.0004
		if r%3 != 0 && r != 20 {
			fed = math.NaN() // evaluated federatedly every third round and at the end
		}
		rounds = append(rounds, plot.Round{Round: r, AUC: 0.77 - 0.1/x, LogLoss: 0.3 + 0.1/x, FederatedAUC: fed, FederatedLogLoss: math.NaN()})
	}
	dir := outDir(t, "rounds")
	paths, err := plot.Rounds(rounds, &plot.Reference{Label: "centralized (pooled rows)", AUC: 0.772, LogLoss: 0.298}, dir)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"auc.png", "auc.svg", "log_loss.png", "log_loss.svg"}, baseNames(paths))
	requireFigures(t, paths[:2], "AUC (ROC, test rows)", "round", "centralized (pooled rows)", "federated evaluation")
	requireFigures(t, paths[2:], "log loss (nats, test rows)", "round")
}

func TestRoundsOfOneRound(t *testing.T) {
	paths, err := plot.Rounds([]plot.Round{{Round: 1, AUC: 0.7, LogLoss: 0.4, FederatedAUC: math.NaN(), FederatedLogLoss: math.NaN()}}, nil, t.TempDir())
	require.NoError(t, err)
	requireFigures(t, paths, "round")
}

func TestRoundsRefusesNothing(t *testing.T) {
	_, err := plot.Rounds(nil, nil, t.TempDir())
	require.ErrorIs(t, err, plot.ErrNoData)
	_, err = plot.Rounds([]plot.Round{{Round: 1, AUC: math.NaN(), LogLoss: math.NaN()}}, nil, t.TempDir())
	require.ErrorIs(t, err, plot.ErrNoData)
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

func TestSweep(t *testing.T) {
	pt := func(values map[string]string, auc float64) plot.SweepPoint {
		return plot.SweepPoint{Values: values, Metrics: map[string]float64{"auc": auc, "log_loss": 1 - auc, "config.run.privacy.delta": 1e-5}}
	}
	cases := []struct {
		name, key, metric string
		points            []plot.SweepPoint
		file              string
		texts             []string
	}{
		{
			name: "two alphas", key: "data.partition.alpha", metric: "auc",
			points: []plot.SweepPoint{
				pt(map[string]string{"data.partition.alpha": "0.1"}, 0.74),
				pt(map[string]string{"data.partition.alpha": "1"}, 0.77),
			},
			file:  "auc_by_data.partition.alpha",
			texts: []string{"Dirichlet alpha", "AUC (ROC, test rows)"},
		},
		{
			name: "epsilon curve with none", key: "run.privacy.epsilon", metric: "auc",
			points: []plot.SweepPoint{
				pt(map[string]string{"run.privacy.epsilon": "0.5"}, 0.70),
				pt(map[string]string{"run.privacy.epsilon": "1"}, 0.74),
				pt(map[string]string{"run.privacy.epsilon": "2"}, 0.755),
				pt(map[string]string{"run.privacy.epsilon": "4"}, 0.76),
				pt(map[string]string{"run.privacy.epsilon": "8"}, 0.765),
				pt(map[string]string{"run.privacy.epsilon": "none"}, 0.772),
			},
			file:  "auc_by_run.privacy.epsilon",
			texts: []string{"epsilon at delta=1e-05", "run.privacy.epsilon=none"},
		},
		{
			name: "a line per strategy", key: "data.partition.alpha", metric: "log_loss",
			points: []plot.SweepPoint{
				pt(map[string]string{"data.partition.alpha": "0.1", "run.strategy.name": "fedavg"}, 0.74),
				pt(map[string]string{"data.partition.alpha": "0.1", "run.strategy.name": "fedadam"}, 0.75),
				pt(map[string]string{"data.partition.alpha": "10", "run.strategy.name": "fedavg"}, 0.77),
				pt(map[string]string{"data.partition.alpha": "10", "run.strategy.name": "fedadam"}, 0.765),
			},
			file:  "log_loss_by_data.partition.alpha",
			texts: []string{"run.strategy.name=fedavg", "run.strategy.name=fedadam", "log loss (nats, test rows)"},
		},
		{
			name: "categories", key: "run.strategy.name", metric: "auc",
			points: []plot.SweepPoint{
				pt(map[string]string{"run.strategy.name": "fedavg"}, 0.77),
				pt(map[string]string{"run.strategy.name": "fedprox"}, 0.768),
				pt(map[string]string{"run.strategy.name": "fedadam"}, 0.771),
			},
			file:  "auc_by_run.strategy.name",
			texts: []string{"fedprox", "run.strategy.name"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := outDir(t, "sweep-"+tc.file)
			paths, err := plot.Sweep(tc.points, tc.key, tc.metric, dir)
			require.NoError(t, err)
			assert.Equal(t, []string{tc.file + ".png", tc.file + ".svg"}, baseNames(paths))
			requireFigures(t, paths, tc.texts...)
		})
	}
}

func TestSweepErrors(t *testing.T) {
	pts := []plot.SweepPoint{{Values: map[string]string{"a": "1"}, Metrics: map[string]float64{"auc": math.NaN()}}}
	_, err := plot.Sweep(nil, "a", "auc", t.TempDir())
	require.ErrorIs(t, err, plot.ErrNoData)
	_, err = plot.Sweep(pts, "a", "auc", t.TempDir())
	require.ErrorIs(t, err, plot.ErrNoData)
	_, err = plot.Sweep(pts, "b", "auc", t.TempDir())
	require.ErrorContains(t, err, `"b" is not a swept key`)
}

func TestDistribution(t *testing.T) {
	var global, personal []float64
	for i := range 12 {
		x := float64(i) / 12
		global = append(global, 0.68+0.08*x)
		personal = append(personal, 0.70+0.1*x*x)
	}
	global = append(global, math.NaN())
	dir := outDir(t, "personalization")
	paths, err := plot.Distribution(global, personal, dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"personalization.png", "personalization.svg"}, baseNames(paths))
	requireFigures(t, paths, "AUC per client (ROC", "12 clients", "global model", "personalized")

	_, err = plot.Distribution([]float64{math.NaN()}, nil, t.TempDir())
	require.ErrorIs(t, err, plot.ErrNoData)
}

func TestLabelsCarryUnits(t *testing.T) {
	cases := []struct{ got, want string }{
		{plot.MetricLabel("auc"), "AUC (ROC, test rows)"},
		{plot.MetricLabel("log_loss"), "log loss (nats, test rows)"},
		{plot.MetricLabel("wall_seconds"), "wall time (s)"},
		{plot.MetricLabel("encryption_seconds"), "encryption (s)"},
		{plot.KeyLabel("run.privacy.epsilon", 1e-5), "epsilon at delta=1e-05 (run.privacy.epsilon)"},
		{plot.KeyLabel("run.privacy.epsilon", 0), "epsilon (run.privacy.epsilon)"},
		{plot.KeyLabel("run.rounds", 0), "rounds (run.rounds)"},
		{plot.KeyLabel("something.else", 0), "something.else"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.got)
	}
	assert.Contains(t, plot.KeyLabel("data.partition.alpha", 0), "Dirichlet alpha")
}
