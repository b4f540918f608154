package gbdt_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
)

// bruteForceSHAP computes row i's Shapley values by definition: over every subset S of the
// other features, the weighted change in the path-dependent conditional expectation f_S when
// feature f joins S, where f_S follows the row at splits on features in S and averages both
// branches by cover elsewhere (the value function TreeSHAP computes exactly).
func bruteForceSHAP(m *gbdt.Model, d *dataset.Dataset, i int) []float64 {
	nf := len(m.Features)
	numeric := 0
	for _, f := range m.Features {
		if f.Kind == gbdt.Numeric {
			numeric++
		}
	}
	left := func(n gbdt.Node) bool {
		f := m.Features[n.Feature]
		if f.Kind == gbdt.Numeric {
			x := d.Numeric[i][n.Feature]
			if math.IsNaN(x) {
				return n.MissingLeft
			}
			return (x-f.Mean)/f.Std <= n.Threshold
		}
		idx := int(d.Category[i][n.Feature-numeric])
		if idx < 0 || idx >= len(f.Levels) {
			idx = len(f.Levels)
		}
		return idx == n.Bin
	}
	var cond func(t gbdt.Tree, j int32, known uint) float64
	cond = func(t gbdt.Tree, j int32, known uint) float64 {
		n := t.Nodes[j]
		if n.IsLeaf() {
			return n.Value
		}
		if known&(1<<n.Feature) != 0 {
			if left(n) {
				return cond(t, n.Left, known)
			}
			return cond(t, n.Right, known)
		}
		l, r := t.Nodes[n.Left], t.Nodes[n.Right]
		return l.Cover/n.Cover*cond(t, n.Left, known) + r.Cover/n.Cover*cond(t, n.Right, known)
	}
	value := func(known uint) float64 {
		v := m.BaseScore
		for _, t := range m.Trees {
			v += cond(t, 0, known)
		}
		return v
	}
	fact := func(n int) float64 { return math.Gamma(float64(n) + 1) }
	phi := make([]float64, nf)
	for f := range nf {
		for s := uint(0); s < 1<<nf; s++ {
			if s&(1<<f) != 0 {
				continue
			}
			size := 0
			for b := s; b > 0; b &= b - 1 {
				size++
			}
			w := fact(size) * fact(nf-size-1) / fact(nf)
			phi[f] += w * (value(s|1<<f) - value(s))
		}
	}
	return phi
}

// handTree is a model whose first tree splits on x0 again below splits on other features,
// and whose covers are not all consistent (node 2's children add up to more than node 2), and
// whose second tree splits on the unknown category; its rows reach every side of every split.
func handTree(t *testing.T) (*gbdt.Model, *dataset.Dataset) {
	schema, err := dataset.ParseSchema("hand.yaml", []byte(`
name: hand
label: {column: y, positive: "1", negative: ["0"]}
numeric: [x0, x1]
categorical:
  - column: c
    values: [p, q]
consent: {tracked: false}
`))
	require.NoError(t, err)
	m := &gbdt.Model{
		Format:    gbdt.ModelFormat,
		Params:    gbdt.DefaultParams(),
		BaseScore: -1.25,
		Features: []gbdt.Feature{
			{Name: "x0", Kind: gbdt.Numeric, Mean: 0, Std: 1, Edges: []float64{-0.5, 0, 1}},
			{Name: "x1", Kind: gbdt.Numeric, Mean: 0, Std: 1, Edges: []float64{0.5}},
			{Name: "c", Kind: gbdt.Categorical, Levels: []string{"p", "q"}},
		},
		Trees: []gbdt.Tree{{Nodes: []gbdt.Node{
			{Left: 1, Right: 2, Feature: 0, Bin: 1, Threshold: 0, Cover: 10, Gain: 3},
			{Left: 3, Right: 4, Feature: 2, Bin: 0, Cover: 6, Gain: 2},
			{Left: 5, Right: 6, Feature: 1, Bin: 0, Threshold: 0.5, Cover: 4, Gain: 1},
			{Left: 7, Right: 8, Feature: 0, Bin: 0, Threshold: -0.5, Cover: 4, Gain: 0.5},
			{Left: -1, Right: -1, Feature: -1, Cover: 2, Value: -0.5},
			{Left: 9, Right: 10, Feature: 0, Bin: 2, Threshold: 1, Cover: 1.2, Gain: 0.1},
			{Left: -1, Right: -1, Feature: -1, Cover: 3.5, Value: 1.0},
			{Left: -1, Right: -1, Feature: -1, Cover: 1.5, Value: 0.3},
			{Left: -1, Right: -1, Feature: -1, Cover: 2.5, Value: -0.1},
			{Left: -1, Right: -1, Feature: -1, Cover: 0.5, Value: 0.2},
			{Left: -1, Right: -1, Feature: -1, Cover: 0.7, Value: 0.4},
		}}, {Nodes: []gbdt.Node{
			{Left: 1, Right: 2, Feature: 1, Bin: 0, Threshold: 0.5, Cover: 9, Gain: 1},
			{Left: -1, Right: -1, Feature: -1, Cover: 5, Value: 0.25},
			{Left: 3, Right: 4, Feature: 2, Bin: 2, Cover: 4, Gain: 1},
			{Left: -1, Right: -1, Feature: -1, Cover: 1, Value: -2},
			{Left: -1, Right: -1, Feature: -1, Cover: 3, Value: 0.5},
		}}},
	}
	require.NoError(t, m.Validate())
	b := dataset.NewBuilder(schema, "hand", 0)
	for _, x0 := range []float64{-1, -0.5, -0.2, 0, 0.5, 1, 3} {
		for _, x1 := range []float64{0, 0.5, 2} {
			for _, c := range []int32{0, 1, 2} {
				b.Append([]float64{x0, x1}, []int32{c}, nil, 0, 0)
			}
		}
	}
	return m, b.Finish()
}

func TestTreeSHAPMatchesBruteForce(t *testing.T) {
	hand, handRows := handTree(t)
	fitted, toyRows := toyModel(t, 6, 4)
	tests := []struct {
		name string
		m    *gbdt.Model
		d    *dataset.Dataset
		rows int
	}{
		{"a hand-made tree with a repeated feature and an unknown category", hand, handRows, handRows.Len()},
		{"a fitted model", fitted, toyRows, 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.rows {
				got := tt.m.Explain(tt.d, i)
				want := bruteForceSHAP(tt.m, tt.d, i)
				require.InDeltaSlice(t, want, got.Values, 1e-9, "row %d", i)
				require.InDelta(t, tt.m.Margin(tt.d, i), got.Margin, 0)
				sum := got.Expected
				for _, v := range got.Values {
					sum += v
				}
				require.InDelta(t, got.Margin, sum, 1e-9, "row %d", i)
			}
		})
	}
}

func TestExplainAllIsExplainToTheBit(t *testing.T) {
	m, d := toyModel(t, 20, 5)
	all, err := m.ExplainAll(d)
	require.NoError(t, err)
	for i := range d.Len() {
		require.Equal(t, m.Explain(d, i), all[i], "row %d", i)
	}
}

func TestExpectedValueIsTheMarginOfNothingKnown(t *testing.T) {
	m, d := handTree(t)
	// Every split weighs its branches by child cover over parent cover.
	t0 := 6.0/10*(4.0/6*(1.5/4*0.3+2.5/4*-0.1)+2.0/6*-0.5) + 4.0/10*(1.2/4*(0.5/1.2*0.2+0.7/1.2*0.4)+3.5/4*1.0)
	t1 := 5.0/9*0.25 + 4.0/9*(1.0/4*-2+3.0/4*0.5)
	assert.InDelta(t, -1.25+t0+t1, m.ExpectedValue(), 1e-12)
	assert.InDelta(t, m.ExpectedValue(), m.Explain(d, 0).Expected, 0)
}

func TestGlobalImportance(t *testing.T) {
	m, d := toyModel(t, 10, 4)
	gains := m.GainImportance()
	total, want := 0.0, 0.0
	for _, g := range gains {
		assert.GreaterOrEqual(t, g, 0.0)
		total += g
	}
	for _, tr := range m.Trees {
		for _, n := range tr.Nodes {
			want += n.Gain
		}
	}
	assert.InDelta(t, want, total, 1e-9)

	whole, err := m.AbsSHAPSums(d)
	require.NoError(t, err)
	sum := make([]float64, gbdt.AbsSHAPLen(len(m.Features)))
	for _, part := range parts(d, 700, 800) {
		v, err := m.AbsSHAPSums(part)
		require.NoError(t, err)
		for i := range v {
			sum[i] += v[i]
		}
	}
	assert.InDeltaSlice(t, whole, sum, 1e-9)
	mean, err := gbdt.MeanAbsSHAP(sum, len(m.Features))
	require.NoError(t, err)
	all, err := m.ExplainAll(d)
	require.NoError(t, err)
	for f := range m.Features {
		direct := 0.0
		for _, e := range all {
			direct += math.Abs(e.Values[f]) / float64(d.Len())
		}
		assert.InDelta(t, direct, mean[f], 1e-12)
	}
	// The toy label depends on a most: it leads both rankings.
	assert.Equal(t, 0, argmax(gains))
	assert.Equal(t, 0, argmax(mean))
}

func TestMeanAbsSHAPRejects(t *testing.T) {
	tests := []struct {
		name string
		sum  []float64
	}{
		{"wrong length", []float64{1, 2}},
		{"no rows", []float64{0, 1, 2}},
		{"NaN", []float64{3, math.NaN(), 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gbdt.MeanAbsSHAP(tt.sum, 2)
			require.ErrorIs(t, err, gbdt.ErrVector)
		})
	}
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
