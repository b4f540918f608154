package coordinator

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/task"
)

// TestTreeSumsAreCheckedAsCountsOfRows: the bounds a tree step's values must keep, on one
// client's plaintext result (combine: exact) and on a decrypted he-mode aggregate
// (plausible: counts within the decoding grid's slack of an integer, and no more rows than
// the contributors announced), which finalize then rounds to the exact counts.
func TestTreeSumsAreCheckedAsCountsOfRows(t *testing.T) {
	// One numeric feature of two edges (bins 0..2 and the missing bin 3), one categorical of
	// two levels (bins 0..1 and the outside bin 2): 7 bins, 21 values a node.
	model := &gbdt.Model{Features: []gbdt.Feature{
		{Name: "x", Kind: gbdt.Numeric, Std: 1, Edges: []float64{-1, 1}},
		{Name: "c", Kind: gbdt.Categorical, Levels: []string{"a", "b"}},
	}}
	hist := &treeTrain{spec: &task.GBDTSpec{Step: task.GBDTHistograms, Model: model, Nodes: []int32{0}}}
	// 10 rows: 4, 3, 3, 0 in x's bins; 6, 4, 0 in c's. Gradients within the rows, hessians
	// within a quarter of them.
	honest := []float64{
		1, 0.5, 4, -2, 0.6, 3, 0.5, 0.7, 3, 0, 0, 0,
		1.5, 1.2, 6, -2, 0.6, 4, 0, 0, 0,
	}
	with := func(i int, v float64) []float64 {
		out := append([]float64(nil), honest...)
		out[i] = v
		return out
	}
	tests := []struct {
		name     string
		sum      []float64
		he       bool
		contribs int
		records  int
		ok       bool
	}{
		{"an honest result", honest, false, 1, 0, true},
		{"a fractional count from a client", with(2, 4.0001), false, 1, 0, false},
		{"a negative count", with(2, -1), false, 1, 0, false},
		{"a gradient above its rows", with(0, 4.5), false, 1, 0, false},
		{"a hessian above a quarter of its rows", with(1, 1.1), false, 1, 0, false},
		{"a negative hessian", with(1, -0.2), false, 1, 0, false},
		{"a decrypted count on the grid's slack", with(2, 4+3e-9), true, 3, 0, true},
		{"a decrypted count that is no count", with(2, 4.25), true, 3, 0, false},
		{"more rows than the client announced", honest, false, 1, 9, false},
		{"as many rows as the client announced", honest, false, 1, 10, true},
		{"more rows than the contributors announced", honest, true, 3, 9, false},
		{"as many rows as announced", honest, true, 3, 10, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.he {
				err = hist.plausible(tc.sum, tc.contribs, tc.records)
			} else {
				err = hist.combine(tc.sum, tc.records)
			}
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}

	sketch := &treeTrain{spec: &task.GBDTSpec{Step: task.GBDTSketch}}
	labels := []float64{10, 3}
	cells := make([]float64, 4)
	cells[0], cells[3] = 6, 4
	assert.NoError(t, sketch.plausible(append(labels, cells...), 2, 10))
	assert.Error(t, sketch.plausible(append([]float64{10, 11}, cells...), 2, 0), "more positives than rows")
	assert.Error(t, sketch.plausible(append(labels, cells...), 2, 8), "more rows than announced")
	assert.Error(t, sketch.combine(append(labels, 11, 0, 0, 0), 0), "a cell above the rows")
	assert.Error(t, sketch.combine(append(labels, cells...), 9), "more rows than the client announced")

	exact := exactCounts(with(2, 4+3e-9), task.GBDTHistograms)
	assert.Equal(t, 4.0, exact[2], "finalize sees the exact count")
	assert.Equal(t, honest[0], exact[0], "and the gradient sums as decrypted")
}
