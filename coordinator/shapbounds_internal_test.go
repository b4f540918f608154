package coordinator

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/task"
)

// shapBoundsModel has two trees over three features: the first splits on x (leaves -0.2 and
// 0.3, a spread of 0.5), the second on c (leaves -0.1 and 0.1, a spread of 0.2); no tree splits
// on z. No row's |SHAP value| of x exceeds 0.5, of c 0.2, of z 0.
func shapBoundsModel() *gbdt.Model {
	stump := func(feature int, lo, hi float64) gbdt.Tree {
		return gbdt.Tree{Nodes: []gbdt.Node{
			{Left: 1, Right: 2, Feature: feature, Gain: 1, Cover: 10, Count: 10},
			{Left: -1, Right: -1, Feature: -1, Value: lo, Cover: 4, Count: 4},
			{Left: -1, Right: -1, Feature: -1, Value: hi, Cover: 6, Count: 6},
		}}
	}
	return &gbdt.Model{
		Features: []gbdt.Feature{
			{Name: "x", Kind: gbdt.Numeric, Std: 1, Edges: []float64{0}},
			{Name: "z", Kind: gbdt.Numeric, Std: 1, Edges: []float64{0}},
			{Name: "c", Kind: gbdt.Categorical, Levels: []string{"a", "b"}},
		},
		Trees: []gbdt.Tree{stump(0, -0.2, 0.3), stump(2, -0.1, 0.1)},
	}
}

// TestSHAPSumsAreCheckedAgainstTheTrees: the |SHAP| sums a tree run's evaluation returns count
// the evaluation's rows, and no feature's sum goes below 0 or above rows times the spread of
// the leaves of the trees that split on it. A plaintext result beyond that is refused (the
// round goes on without it); an he-mode aggregate beyond it is implausible.
func TestSHAPSumsAreCheckedAgainstTheTrees(t *testing.T) {
	m := shapBoundsModel()
	require.Equal(t, []float64{0.5, 0, 0.2}, m.MaxAbsSHAP())
	const bins = 10
	eval := metrics.NewEvalSums(bins)
	eval.AddScores([]float64{0.9, 0.2, 0.6, 0.1}, []float64{1, 0, 1, 0})
	with := func(shap ...float64) []float64 { return append(eval.Vector(), shap...) }
	tests := []struct {
		name string
		v    []float64
		want string // "" for plausible
	}{
		{"honest", with(4, 1.1, 0, 0.3), ""},
		{"every row at the bound", with(4, 2, 0, 0.8), ""},
		{"rounding below zero", with(4, 1, -1e-9, 0.3), ""},
		{"a feature no tree splits on", with(4, 1, 0.01, 0.3), `feature "z" outside [0, 4 rows x 0`},
		{"above rows x spread", with(4, 2.5, 0, 0.3), `feature "x" outside [0, 4 rows x 0.5`},
		{"1e300", with(4, 1e300, 0, 0.3), `feature "x"`},
		{"negative", with(4, 1, 0, -0.5), `feature "c" outside`},
		{"more rows than the evaluation's", with(400, 100, 0, 30), "over 400 rows, the evaluation counts 4 records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Core{cfg: RunConfig{HistogramBins: bins, Model: ModelConfig{Kind: ModelGBDT}}, run: RunState{}}
			tk := task.Task{Kind: task.KindEvaluate, HistogramBins: bins, Trees: m, SHAPSums: true}
			plain := c.checkContent("c", tk, tt.v)
			c.candidate = &ModelVersion{Trees: m}
			he := c.plausibleAggregate(phaseEvaluate, tt.v, 1, 0)
			if tt.want == "" {
				assert.NoError(t, plain)
				assert.NoError(t, he)
				return
			}
			require.Error(t, plain)
			assert.Contains(t, plain.Error(), tt.want)
			assert.Contains(t, plain.Error(), "outside the run's bounds")
			require.Error(t, he)
			assert.Contains(t, he.Error(), tt.want)
		})
	}

	// A task that does not ask for them (a logistic evaluation, or one under DP) is not read
	// as |SHAP| sums.
	c := &Core{cfg: RunConfig{HistogramBins: bins}, run: RunState{}}
	assert.NoError(t, c.checkContent("c", task.Task{Kind: task.KindEvaluate, HistogramBins: bins}, with(4, 1e300, 0, 0.3)))
}
