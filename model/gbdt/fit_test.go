package gbdt_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model/gbdt"
)

// requireSameModel asserts that two fits made the same trees: the same splits exactly, and
// values computed from sums within tol of each other, relative to their size.
func requireSameModel(t *testing.T, want, got *gbdt.Model, tol float64) {
	t.Helper()
	require.Equal(t, want.Features, got.Features, "the sketch sums counts exactly")
	require.Equal(t, want.BaseScore, got.BaseScore)
	require.Len(t, got.Trees, len(want.Trees))
	near := func(a, b float64) bool { return math.Abs(a-b) <= tol*max(1, math.Abs(a)) }
	for i, wt := range want.Trees {
		gt := got.Trees[i]
		require.Len(t, gt.Nodes, len(wt.Nodes), "tree %d", i)
		for j, w := range wt.Nodes {
			g := gt.Nodes[j]
			require.Equal(t, [5]any{w.Left, w.Right, w.Feature, w.Bin, w.Threshold}, [5]any{g.Left, g.Right, g.Feature, g.Bin, g.Threshold}, "tree %d node %d", i, j)
			require.True(t, near(w.Value, g.Value), "tree %d node %d value %v vs %v", i, j, w.Value, g.Value)
			require.True(t, near(w.Gain, g.Gain) && near(w.Cover, g.Cover) && near(w.Count, g.Count), "tree %d node %d", i, j)
		}
	}
}

// parts splits d into clients of the given sizes, in row order.
func parts(d *dataset.Dataset, sizes ...int) []*dataset.Dataset {
	var out []*dataset.Dataset
	lo := 0
	for _, n := range sizes {
		out = append(out, d.Subset(seq(lo, lo+n)))
		lo += n
	}
	return out
}

func TestFederatedFitEqualsCentralized(t *testing.T) {
	d := gbdt.ToyDataset(t, 21, 3000)
	std := gbdt.ToyStandardization(t, d)
	p := gbdt.DefaultParams()
	p.Trees, p.Colsample, p.Seed = 30, 0.8, 5
	central, err := gbdt.Fit(d, std, p)
	require.NoError(t, err)
	tests := []struct {
		name  string
		sizes []int
	}{
		{"two even clients", []int{1500, 1500}},
		{"uneven clients", []int{100, 2000, 37, 863}},
		{"an empty client", []int{1000, 0, 2000}},
		{"a client per hundred rows", []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fed, err := gbdt.FitFederated(parts(d, tt.sizes...), std, p)
			require.NoError(t, err)
			requireSameModel(t, central, fed, 1e-9)
		})
	}
}

// TestDrivingTheProtocolByHandIsFitFederated runs the exchanges with the exported pieces, as
// a coordinator and its clients will over the network, and gets FitFederated's model to the
// bit, and each client's margins equal to the model's.
func TestDrivingTheProtocolByHandIsFitFederated(t *testing.T) {
	d := gbdt.ToyDataset(t, 22, 900)
	std := gbdt.ToyStandardization(t, d)
	clients := parts(d, 300, 200, 400)
	p := gbdt.DefaultParams()
	p.Trees, p.Subsample, p.Seed = 10, 0.8, 17

	// Round 1: label sums and sketches, summed.
	labelSum := make([]float64, gbdt.LabelSumsLen)
	sketch := make([]float64, gbdt.SketchLen(3))
	for _, c := range clients {
		l, err := gbdt.LabelSums(c)
		require.NoError(t, err)
		s, err := gbdt.SketchCounts(c, std)
		require.NoError(t, err)
		for i := range l {
			labelSum[i] += l[i]
		}
		for i := range s {
			sketch[i] += s[i]
		}
	}
	base, err := gbdt.BaseScore(labelSum)
	require.NoError(t, err)
	edges, err := gbdt.Edges(sketch, 3, p.Bins)
	require.NoError(t, err)
	layout, err := gbdt.NewBinner(d.Schema, std, edges)
	require.NoError(t, err)

	// The clients bin their rows with the broadcast edges; then tree by tree, level by level.
	var locals []*gbdt.Local
	for _, c := range clients {
		x, err := layout.Bin(c)
		require.NoError(t, err)
		l, err := gbdt.NewLocal(x, c.Label, base)
		require.NoError(t, err)
		locals = append(locals, l)
	}
	m := &gbdt.Model{Format: gbdt.ModelFormat, Params: p, BaseScore: base, Features: layout.Features()}
	for tree := range p.Trees {
		m.Trees = append(m.Trees, grow(t, layout, p, tree, locals...))
	}
	require.NoError(t, m.Validate())

	want, err := gbdt.FitFederated(clients, std, p)
	require.NoError(t, err)
	require.Equal(t, want, m)
	for k, c := range clients {
		margins := locals[k].Margins()
		for i := range c.Len() {
			require.Equal(t, m.Margin(c, i), margins[i], "client %d row %d", k, i)
		}
	}
}

func TestFitIsAFunctionOfItsSeed(t *testing.T) {
	d := gbdt.ToyDataset(t, 23, 800)
	std := gbdt.ToyStandardization(t, d)
	p := gbdt.DefaultParams()
	p.Trees, p.Subsample, p.Colsample = 10, 0.7, 0.6
	fit := func(seed uint64) *gbdt.Model {
		p.Seed = seed
		m, err := gbdt.Fit(d, std, p)
		require.NoError(t, err)
		return m
	}
	assert.Equal(t, fit(1), fit(1))
	assert.NotEqual(t, fit(1).Trees, fit(2).Trees)
}

func TestFitLearnsTheToySignal(t *testing.T) {
	train, test := gbdt.ToyDataset(t, 24, 4000), gbdt.ToyDataset(t, 25, 2000)
	m, err := gbdt.Fit(train, gbdt.ToyStandardization(t, train), gbdt.DefaultParams())
	require.NoError(t, err)
	scores, err := m.Predict(test)
	require.NoError(t, err)
	got := metrics.Evaluate(scores, test.Label)
	prior := metrics.LogLoss(constant(sigmoid(m.BaseScore), test.Len()), test.Label)
	t.Logf("toy test AUC %.4f, log loss %.4f (prior %.4f)", got.AUC, got.LogLoss, prior)
	assert.Greater(t, got.AUC, 0.78)
	assert.Less(t, got.LogLoss, prior-0.1)
}

func TestFitRejects(t *testing.T) {
	d := gbdt.ToyDataset(t, 26, 50)
	std := gbdt.ToyStandardization(t, d)
	nan := d.Subset(seq(0, 50))
	nan.Label[7] = math.NaN()
	tests := []struct {
		name  string
		parts []*dataset.Dataset
		std   dataset.Standardization
		p     gbdt.Params
		want  error
	}{
		{"no clients", nil, std, gbdt.DefaultParams(), gbdt.ErrData},
		{"invalid params", []*dataset.Dataset{d}, std, gbdt.Params{}, gbdt.ErrInvalidParams},
		{"a label that is not 0 or 1", []*dataset.Dataset{d, nan}, std, gbdt.DefaultParams(), gbdt.ErrData},
		{"a short standardisation", []*dataset.Dataset{d}, dataset.Standardization{Mean: []float64{0}, Std: []float64{1}}, gbdt.DefaultParams(), gbdt.ErrData},
		{"no rows at all", []*dataset.Dataset{d.Subset(nil)}, std, gbdt.DefaultParams(), gbdt.ErrVector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gbdt.FitFederated(tt.parts, tt.std, tt.p)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func constant(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
