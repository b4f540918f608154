package gbdt_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMaxAbsSHAPBoundsEveryRow: no row's |SHAP value| of a feature exceeds MaxAbsSHAP, which
// the coordinator multiplies by the rows to check a federation's |SHAP| sums; a feature no
// tree splits on has a bound of 0.
func TestMaxAbsSHAPBoundsEveryRow(t *testing.T) {
	tests := []struct {
		name         string
		trees, depth int
	}{
		{"one shallow tree", 1, 2},
		{"a deeper ensemble", 10, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, d := toyModel(t, tt.trees, tt.depth)
			bound := m.MaxAbsSHAP()
			require.Len(t, bound, len(m.Features))
			used := make([]bool, len(m.Features))
			for _, tr := range m.Trees {
				for _, n := range tr.Nodes {
					if !n.IsLeaf() {
						used[n.Feature] = true
					}
				}
			}
			for f, ok := range used {
				if !ok {
					assert.Zero(t, bound[f], "feature %d: no split, no SHAP value", f)
				}
			}
			all, err := m.ExplainAll(d)
			require.NoError(t, err)
			tightest := 0.0
			for i, e := range all {
				for f, v := range e.Values {
					require.LessOrEqual(t, math.Abs(v), bound[f]*(1+1e-12), "row %d feature %d", i, f)
					if bound[f] > 0 {
						tightest = max(tightest, math.Abs(v)/bound[f])
					}
				}
			}
			t.Logf("largest |SHAP| / bound: %.3f", tightest)
		})
	}
}
