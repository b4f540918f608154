package gbdt_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/internal/banktest"
	"github.com/fedprop/fedprop/model/gbdt"
)

// bankLayout bins bank-full's training rows with the default parameters' edges.
func bankLayout(b *testing.B) (banktest.Split, *gbdt.Binner, *gbdt.Binned, float64) {
	split := banktest.Load(b)
	std, err := split.Train.Stats().Standardization()
	require.NoError(b, err)
	sketch, err := gbdt.SketchCounts(split.Train, std)
	require.NoError(b, err)
	edges, err := gbdt.Edges(sketch, len(split.Schema.Numeric), gbdt.DefaultParams().Bins)
	require.NoError(b, err)
	layout, err := gbdt.NewBinner(split.Schema, std, edges)
	require.NoError(b, err)
	x, err := layout.Bin(split.Train)
	require.NoError(b, err)
	labels, err := gbdt.LabelSums(split.Train)
	require.NoError(b, err)
	base, err := gbdt.BaseScore(labels)
	require.NoError(b, err)
	return split, layout, x, base
}

// BenchmarkBuildHistograms is a client's root histogram over bank-full's 36,168 training rows.
func BenchmarkBuildHistograms(b *testing.B) {
	split, _, x, base := bankLayout(b)
	local, err := gbdt.NewLocal(x, split.Train.Label, base)
	require.NoError(b, err)
	local.StartTree(0, 1, 0)
	b.ResetTimer()
	for b.Loop() {
		if _, err := local.Histograms([]int32{0}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGrowTree grows one default tree (depth 6) on bank-full's training rows with one
// client: gradients, every level's histograms, the Grower's decisions, the row moves and the
// margin update.
func BenchmarkGrowTree(b *testing.B) {
	split, layout, x, base := bankLayout(b)
	p := gbdt.DefaultParams()
	local, err := gbdt.NewLocal(x, split.Train.Label, base)
	require.NoError(b, err)
	b.ResetTimer()
	for b.Loop() {
		g, err := gbdt.NewGrower(layout, p, 0)
		if err != nil {
			b.Fatal(err)
		}
		local.StartTree(0, p.Subsample, 0)
		for !g.Done() {
			h, err := local.Histograms(g.Pending())
			if err != nil {
				b.Fatal(err)
			}
			if err := g.Apply(h); err != nil {
				b.Fatal(err)
			}
			if err := local.ApplySplits(g.Splits()); err != nil {
				b.Fatal(err)
			}
		}
		tree, err := g.Tree()
		if err != nil {
			b.Fatal(err)
		}
		if err := local.FinishTree(tree); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExplain is TreeSHAP for one bank-full test row under the default model.
func BenchmarkExplain(b *testing.B) {
	split := banktest.Load(b)
	std, err := split.Train.Stats().Standardization()
	require.NoError(b, err)
	m, err := gbdt.Fit(split.Train, std, gbdt.DefaultParams())
	require.NoError(b, err)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		m.Explain(split.Test, i%split.Test.Len())
		i++
	}
}
