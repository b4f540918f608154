package gbdt_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
)

// missingData is toy data whose label is mostly a > 0.5, with a missing (NaN) in a fifth of
// the rows, which are positive at the given rate.
func missingData(t *testing.T, seed uint64, n int, missingPositive float64) *dataset.Dataset {
	r := rand.New(rand.NewPCG(seed, 1))
	b := dataset.NewBuilder(gbdt.ToySchema(t), "missing", n)
	for range n {
		a := r.NormFloat64()
		y := 0.0
		if (a > 0.5) != (r.Float64() < 0.1) {
			y = 1
		}
		if r.Float64() < 0.2 {
			a = math.NaN()
			y = 0
			if r.Float64() < missingPositive {
				y = 1
			}
		}
		b.Append([]float64{a, r.Float64(), 1}, []int32{int32(r.IntN(3)), int32(r.IntN(2))}, nil, y, 0)
	}
	return b.Finish()
}

func TestSplitsLearnWhereMissingValuesGo(t *testing.T) {
	tests := []struct {
		name            string
		missingPositive float64
		wantLeft        bool
	}{
		{"rows missing a are like the high ones", 0.9, false},
		{"rows missing a are like the low ones", 0.02, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := missingData(t, 51, 3000, tt.missingPositive)
			std := dataset.Standardization{Mean: []float64{0, 0.5, 1}, Std: []float64{1, 0.3, 1}}
			p := gbdt.DefaultParams()
			p.Trees, p.MaxDepth = 1, 1
			m, err := gbdt.Fit(d, std, p)
			require.NoError(t, err)
			root := m.Trees[0].Nodes[0]
			require.Equal(t, 0, root.Feature)
			assert.Equal(t, tt.wantLeft, root.MissingLeft)
			missingSide := root.Right
			if root.MissingLeft {
				missingSide = root.Left
			}
			for i := range d.Len() {
				if math.IsNaN(d.Numeric[i][0]) {
					require.Equal(t, m.BaseScore+m.Trees[0].Nodes[missingSide].Value, m.Margin(d, i))
				}
			}
		})
	}
}

func TestMissingValuesFitFederatedAndExplain(t *testing.T) {
	d := missingData(t, 52, 2000, 0.6)
	std := dataset.Standardization{Mean: []float64{0, 0.5, 1}, Std: []float64{1, 0.3, 1}}
	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth = 8, 3
	central, err := gbdt.Fit(d, std, p)
	require.NoError(t, err)
	fed, err := gbdt.FitFederated(parts(d, 500, 700, 800), std, p)
	require.NoError(t, err)
	requireSameModel(t, central, fed, 1e-9)

	sketch, err := gbdt.SketchCounts(d, std)
	require.NoError(t, err)
	counted := 0.0
	for _, c := range sketch[:gbdt.GridCells] {
		counted += c
	}
	assert.Less(t, counted, 0.9*float64(d.Len()), "missing values are not sketched")

	for i := range 60 {
		got := central.Explain(d, i)
		require.InDeltaSlice(t, bruteForceSHAP(central, d, i), got.Values, 1e-9, "row %d", i)
	}
}
