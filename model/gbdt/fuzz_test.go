package gbdt

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// floatsOf reads raw bytes as little-endian float64s: fuzzers reach NaN, infinities,
// subnormals and negative zero this way.
func floatsOf(raw []byte) []float64 {
	v := make([]float64, len(raw)/8)
	for i := range v {
		v[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return v
}

// FuzzDecodeModel decodes arbitrary bytes as a model document (it comes from a file or the
// network): DecodeModel must return ErrModel or a model that scores and explains any row
// without panicking, whose SHAP values carry the margin it scores, and that round-trips.
func FuzzDecodeModel(f *testing.F) {
	d := ToyDataset(f, 1, 300)
	p := DefaultParams()
	p.Trees, p.MaxDepth = 2, 3
	m, err := Fit(d, ToyStandardization(f, d), p)
	require.NoError(f, err)
	good, err := json.Marshal(m)
	require.NoError(f, err)
	f.Add(good)
	f.Add([]byte(`{"format":"fedprop-gbdt/1","params":{"trees":1,"max_depth":1,"learning_rate":0.1,"bins":2,"subsample":1,"colsample":1},` +
		`"base_score":0,"features":[{"name":"a","kind":"numeric","std":1,"edges":[0]}],` +
		`"trees":[{"nodes":[{"left":1,"right":2,"feature":0,"bin":0,"threshold":0,"value":0,"gain":1,"cover":2,"count":2},` +
		`{"left":-1,"right":-1,"feature":-1,"bin":0,"threshold":0,"value":1,"gain":0,"cover":1,"count":1},` +
		`{"left":-1,"right":-1,"feature":-1,"bin":0,"threshold":0,"value":-1,"gain":0,"cover":1,"count":1}]}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeModel(data)
		if err != nil {
			require.ErrorIs(t, err, ErrModel)
			return
		}
		s := newShap(m, false)
		for f := range s.x {
			s.x[f] = 0.25 // a standardised value, or category 0
		}
		e := s.explain()
		require.Len(t, e.Values, len(m.Features))
		require.Equal(t, s.margin(), e.Margin)

		out, err := json.Marshal(m)
		require.NoError(t, err)
		back, err := DecodeModel(out)
		require.NoError(t, err)
		again, err := json.Marshal(back)
		require.NoError(t, err)
		require.Equal(t, out, again)
	})
}

// FuzzEdges derives cut points from arbitrary sketch sums (they are decrypted or noised
// aggregates): the result is an error or at most bins-1 strictly increasing grid edges per
// feature.
func FuzzEdges(f *testing.F) {
	counts := make([]byte, 8*GridCells)
	for c := 400; c < 600; c++ {
		binary.LittleEndian.PutUint64(counts[8*c:], math.Float64bits(float64(c%7)))
	}
	f.Add(counts, uint8(16))
	f.Add([]byte{1, 2, 3}, uint8(2))
	f.Fuzz(func(t *testing.T, raw []byte, bins uint8) {
		sum := floatsOf(raw)
		numeric := len(sum) / GridCells
		edges, err := Edges(sum, numeric, int(bins))
		if err != nil {
			return
		}
		require.Len(t, edges, numeric)
		for _, cuts := range edges {
			require.LessOrEqual(t, len(cuts), int(bins)-1)
			for j, c := range cuts {
				require.False(t, math.IsNaN(c) || math.IsInf(c, 0))
				if j > 0 {
					require.Greater(t, c, cuts[j-1])
				}
			}
		}
	})
}

// FuzzGrowerApply feeds arbitrary histogram sums to a Grower, level after level: every Apply
// returns ErrVector or moves on, and the tree it ends with is valid.
func FuzzGrowerApply(f *testing.F) {
	d := ToyDataset(f, 2, 200)
	std := ToyStandardization(f, d)
	layout, err := NewBinner(d.Schema, std, [][]float64{{-1, 0, 1}, {0}, nil})
	require.NoError(f, err)
	x, err := layout.Bin(d)
	require.NoError(f, err)
	local, err := NewLocal(x, d.Label, 0)
	require.NoError(f, err)
	local.StartTree(0, 1, 0)
	root, err := local.Histograms([]int32{0})
	require.NoError(f, err)
	seed := make([]byte, 0, 8*len(root))
	for _, v := range root {
		seed = binary.LittleEndian.AppendUint64(seed, math.Float64bits(v))
	}
	f.Add(seed, uint8(3), false)
	f.Add(seed[:40], uint8(1), true)
	f.Fuzz(func(t *testing.T, raw []byte, depth uint8, noLambda bool) {
		p := DefaultParams()
		p.MaxDepth = 1 + int(depth)%4
		if noLambda {
			p.Lambda, p.MinChildWeight = 0, 0
		}
		g, err := NewGrower(layout, p, 0)
		require.NoError(t, err)
		values := floatsOf(raw)
		for !g.Done() {
			n := layout.HistogramLen(len(g.Pending()))
			if len(values) == 0 {
				return
			}
			sum := make([]float64, n)
			for i := range sum {
				sum[i] = values[i%len(values)]
			}
			values = values[min(len(values), n):]
			if err := g.Apply(sum); err != nil {
				require.ErrorIs(t, err, ErrVector)
				return
			}
		}
		tree, err := g.Tree()
		require.NoError(t, err)
		require.NoError(t, checkTree(tree, layout.features))
	})
}
