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

// identity standardises the toy schema's three numeric features to themselves.
var identity = dataset.Standardization{Mean: []float64{0, 0, 0}, Std: []float64{1, 1, 1}}

func TestBinnerBinsValuesAtTheirEdges(t *testing.T) {
	schema := gbdt.ToySchema(t)
	b, err := gbdt.NewBinner(schema, identity, [][]float64{{-1, 0, 2}, nil, {}})
	require.NoError(t, err)
	// a: 4 bins; b and c: 1 bin each, each numeric feature a missing bin more; color: 3
	// levels + other; flag: 2 levels + other.
	assert.Equal(t, (4+1)+(1+1)+(1+1)+4+3, b.NodeBins())
	assert.Equal(t, 3*2*b.NodeBins(), b.HistogramLen(2))
	assert.Equal(t, 3*(b.NodeBins()+9+2), b.Index(1, 3, 2))

	rows := []struct {
		a        float64
		color    int32
		wantA    uint16
		wantCat  uint16
		describe string
	}{
		{-5, 0, 0, 0, "below the first edge"},
		{-1, 1, 0, 1, "exactly at an edge goes below it"},
		{-0.999, 2, 1, 2, "just above an edge"},
		{0, 3, 1, 3, "the other bucket"},
		{2, -1, 2, 3, "a negative index is unknown"},
		{2.0001, 99, 3, 3, "an index past the vocabulary is unknown"},
		{math.NaN(), 0, 4, 0, "NaN is missing: the bin after the last"},
	}
	builder := dataset.NewBuilder(schema, "edges", len(rows))
	for _, r := range rows {
		builder.Append([]float64{r.a, 1, 1}, []int32{r.color, 0}, nil, 0, 0)
	}
	x, err := b.Bin(builder.Finish())
	require.NoError(t, err)
	for i, r := range rows {
		assert.Equal(t, r.wantA, x.Row(i)[0], r.describe)
		assert.Equal(t, r.wantCat, x.Row(i)[3], r.describe)
	}
}

func TestNewBinnerRejects(t *testing.T) {
	schema := gbdt.ToySchema(t)
	tests := []struct {
		name  string
		std   dataset.Standardization
		edges [][]float64
	}{
		{"edges for two of three features", identity, [][]float64{{1}, {2}}},
		{"decreasing edges", identity, [][]float64{{1, 0}, nil, nil}},
		{"repeated edge", identity, [][]float64{{1, 1}, nil, nil}},
		{"NaN edge", identity, [][]float64{{math.NaN()}, nil, nil}},
		{"zero std", dataset.Standardization{Mean: []float64{0, 0, 0}, Std: []float64{1, 0, 1}}, [][]float64{nil, nil, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gbdt.NewBinner(schema, tt.std, tt.edges)
			require.ErrorIs(t, err, gbdt.ErrData)
		})
	}
}

// toyBinned bins the toy data with edges from its own sketch.
func toyBinned(t *testing.T, d *dataset.Dataset, bins int) (*gbdt.Binner, *gbdt.Binned) {
	t.Helper()
	std := gbdt.ToyStandardization(t, d)
	sketch, err := gbdt.SketchCounts(d, std)
	require.NoError(t, err)
	edges, err := gbdt.Edges(sketch, 3, bins)
	require.NoError(t, err)
	b, err := gbdt.NewBinner(d.Schema, std, edges)
	require.NoError(t, err)
	x, err := b.Bin(d)
	require.NoError(t, err)
	return b, x
}

func TestBuildHistogramsMatchesDirectSums(t *testing.T) {
	d := gbdt.ToyDataset(t, 2, 300)
	b, x := toyBinned(t, d, 16)
	r := rand.New(rand.NewPCG(3, 4))
	g, h, nodeOf := make([]float64, x.Len()), make([]float64, x.Len()), make([]int32, x.Len())
	for i := range g {
		g[i], h[i], nodeOf[i] = r.NormFloat64(), r.Float64(), int32(r.IntN(6))-1 // -1: outside the sample
	}
	nodes := []int32{3, 0, 4} // node 1 and 2 rows, and the rows outside, add nothing
	got, err := gbdt.BuildHistograms(x, g, h, nodeOf, nodes)
	require.NoError(t, err)
	require.Len(t, got, b.HistogramLen(len(nodes)))

	want := make([]float64, len(got))
	for k, n := range nodes {
		for i := range x.Len() {
			if nodeOf[i] != n {
				continue
			}
			for f, bin := range x.Row(i) {
				j := b.Index(k, f, int(bin))
				want[j] += g[i]
				want[j+1] += h[i]
				want[j+2]++
			}
		}
	}
	assert.InDeltaSlice(t, want, got, 1e-12)
}

func TestBuildHistogramsRejects(t *testing.T) {
	d := gbdt.ToyDataset(t, 2, 10)
	_, x := toyBinned(t, d, 16)
	g, h, nodeOf := make([]float64, 10), make([]float64, 10), make([]int32, 10)
	tests := []struct {
		name   string
		g      []float64
		nodes  []int32
		wanted error
	}{
		{"a gradient short", g[:9], []int32{0}, gbdt.ErrData},
		{"a node twice", g, []int32{0, 0}, gbdt.ErrRequest},
		{"a negative node", g, []int32{-1}, gbdt.ErrRequest},
		{"a node past any tree", g, []int32{1 << 30}, gbdt.ErrRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gbdt.BuildHistograms(x, tt.g, h, nodeOf, tt.nodes)
			require.ErrorIs(t, err, tt.wanted)
		})
	}
}

func TestBinRejectsAnotherSchema(t *testing.T) {
	d := gbdt.ToyDataset(t, 2, 10)
	b, _ := toyBinned(t, d, 16)
	other, err := dataset.ParseSchema("other.yaml", []byte(`
name: other
label: {column: y, positive: "1", negative: ["0"]}
numeric: [a, b, c]
categorical:
  - column: color
    values: [red, green, black]
  - column: flag
    values: ["yes", "no"]
consent: {tracked: false}
`))
	require.NoError(t, err)
	_, err = b.Bin(&dataset.Dataset{Schema: other, Source: "other.csv"})
	require.ErrorIs(t, err, gbdt.ErrData)
}
