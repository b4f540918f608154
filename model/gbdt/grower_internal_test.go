package gbdt

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSubtractedHistogramsEqualBuiltOnes checks the subtraction trick: at every level, the
// histogram the Grower derives for each larger child (parent minus sibling) is the one the
// client would have built for it.
func TestSubtractedHistogramsEqualBuiltOnes(t *testing.T) {
	d := ToyDataset(t, 11, 2000)
	std := ToyStandardization(t, d)
	sketch, err := SketchCounts(d, std)
	require.NoError(t, err)
	edges, err := Edges(sketch, 3, 64)
	require.NoError(t, err)
	b, err := NewBinner(d.Schema, std, edges)
	require.NoError(t, err)
	x, err := b.Bin(d)
	require.NoError(t, err)
	local, err := NewLocal(x, d.Label, 0)
	require.NoError(t, err)
	p := DefaultParams()
	p.Subsample, p.Seed = 0.7, 3 // rows outside the sample must stay out of both
	g, err := NewGrower(b, p, 0)
	require.NoError(t, err)
	local.StartTree(0, p.Subsample, p.Seed)

	derived := 0
	for !g.Done() {
		h, err := local.Histograms(g.Pending())
		require.NoError(t, err)
		derive := g.derive
		require.NoError(t, g.receive(h))
		for _, n := range g.frontier {
			built, err := local.Histograms([]int32{n})
			require.NoError(t, err)
			require.InDeltaSlice(t, built, g.hist[n], 1e-9, "node %d", n)
		}
		derived += len(derive)
		g.decide()
		require.NoError(t, local.ApplySplits(g.Splits()))
	}
	require.Positive(t, derived)
}
