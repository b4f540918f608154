package gbdt_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
)

func TestGridEdgesAreIncreasingAndSymmetric(t *testing.T) {
	assert.Equal(t, 0.0, gbdt.GridEdge(gbdt.GridCells/2))
	assert.InDelta(t, -gbdt.GridLimit, gbdt.GridEdge(0), 1e-9)
	assert.InDelta(t, gbdt.GridLimit, gbdt.GridEdge(gbdt.GridCells), 1e-9)
	for k := 1; k <= gbdt.GridCells; k++ {
		require.Greater(t, gbdt.GridEdge(k), gbdt.GridEdge(k-1))
		assert.InDelta(t, -gbdt.GridEdge(gbdt.GridCells-k), gbdt.GridEdge(k), 1e-12)
	}
	// About a hundredth of a standard deviation near the mean.
	assert.InDelta(t, 0.0095, gbdt.GridEdge(gbdt.GridCells/2+1), 0.001)
}

// sketchOf returns a one-feature sketch with the given counts at the cells holding each value.
func sketchOf(counts map[float64]float64) []float64 {
	v := make([]float64, gbdt.GridCells)
	for z, c := range counts {
		k := 0
		for k+1 < gbdt.GridCells && gbdt.GridEdge(k+1) <= z {
			k++
		}
		v[k] += c
	}
	return v
}

// cellAbove returns the upper edge of the cell holding z.
func cellAbove(z float64) float64 {
	k := 0
	for gbdt.GridEdge(k+1) <= z {
		k++
	}
	return gbdt.GridEdge(k + 1)
}

func TestEdges(t *testing.T) {
	uniform := make([]float64, gbdt.GridCells)
	for k := 256; k < 768; k++ {
		uniform[k] = 10
	}
	tests := []struct {
		name   string
		sketch []float64
		bins   int
		want   []float64 // nil: check only the count
		count  int
	}{
		{"three values get a bin each", sketchOf(map[float64]float64{-1: 50, 0.5: 30, 2: 20}), 256,
			[]float64{cellAbove(-1), cellAbove(0.5)}, 2},
		{"a heavy value gets one bin and the rest share the others", sketchOf(map[float64]float64{-0.4: 80, 1: 10, 3: 10}), 4,
			[]float64{cellAbove(-0.4), cellAbove(1)}, 2},
		{"an even spread is cut at its quantiles", uniform, 4,
			[]float64{gbdt.GridEdge(384), gbdt.GridEdge(512), gbdt.GridEdge(640)}, 3},
		{"at most bins-1 cuts", uniform, 8, nil, 7},
		{"one value has nothing to cut", sketchOf(map[float64]float64{0.3: 100}), 256, []float64{}, 0},
		{"no rows", make([]float64, gbdt.GridCells), 256, []float64{}, 0},
		{"negative noise counts as zero", sketchOf(map[float64]float64{-2: -5, -1: 50, 1: 50}), 256,
			[]float64{cellAbove(-1)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edges, err := gbdt.Edges(tt.sketch, 1, tt.bins)
			require.NoError(t, err)
			require.Len(t, edges, 1)
			assert.Len(t, edges[0], tt.count)
			if tt.want != nil {
				assert.Equal(t, tt.want, edges[0])
			}
		})
	}
}

func TestEdgesRejects(t *testing.T) {
	good := make([]float64, 2*gbdt.GridCells)
	nan := make([]float64, 2*gbdt.GridCells)
	nan[17] = math.NaN()
	tests := []struct {
		name    string
		sketch  []float64
		numeric int
		bins    int
		want    error
	}{
		{"short", good[:10], 2, 16, gbdt.ErrVector},
		{"wrong feature count", good, 3, 16, gbdt.ErrVector},
		{"NaN", nan, 2, 16, gbdt.ErrVector},
		{"one bin", good, 2, 1, gbdt.ErrInvalidParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gbdt.Edges(tt.sketch, tt.numeric, tt.bins)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestSketchesAddUpAcrossClients(t *testing.T) {
	d := gbdt.ToyDataset(t, 1, 600)
	std := gbdt.ToyStandardization(t, d)
	whole, err := gbdt.SketchCounts(d, std)
	require.NoError(t, err)
	require.Len(t, whole, gbdt.SketchLen(3))
	sum := make([]float64, len(whole))
	for _, rows := range [][2]int{{0, 100}, {100, 101}, {101, 600}} {
		part, err := gbdt.SketchCounts(d.Subset(seq(rows[0], rows[1])), std)
		require.NoError(t, err)
		for i, v := range part {
			sum[i] += v
		}
	}
	assert.Equal(t, whole, sum)
	total := 0.0
	for _, v := range whole[:gbdt.GridCells] {
		total += v
	}
	assert.Equal(t, 600.0, total)
}

func TestSketchCountsRejectsAStandardizationOfAnotherSize(t *testing.T) {
	d := gbdt.ToyDataset(t, 1, 10)
	_, err := gbdt.SketchCounts(d, dataset.Standardization{Mean: []float64{0}, Std: []float64{1}})
	require.ErrorIs(t, err, gbdt.ErrData)
}

func TestBaseScore(t *testing.T) {
	tests := []struct {
		name string
		sum  []float64
		want float64
		err  error
	}{
		{"even", []float64{10, 5}, 0, nil},
		{"one in five", []float64{100, 20}, math.Log(0.25), nil},
		{"no positives is clamped", []float64{10, 0}, math.Log(1e-6 / (1 - 1e-6)), nil},
		{"noise above the count is clamped", []float64{10, 11}, math.Log((1 - 1e-6) / 1e-6), nil},
		{"no rows", []float64{0, 0}, 0, gbdt.ErrVector},
		{"wrong length", []float64{1, 2, 3}, 0, gbdt.ErrVector},
		{"infinite", []float64{math.Inf(1), 2}, 0, gbdt.ErrVector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := gbdt.BaseScore(tt.sum)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.InDelta(t, tt.want, got, 1e-9)
		})
	}
}

func TestLabelSumsRejectsLabelsOtherThanZeroAndOne(t *testing.T) {
	d := gbdt.ToyDataset(t, 1, 10)
	d.Label[3] = math.NaN()
	_, err := gbdt.LabelSums(d)
	require.ErrorIs(t, err, gbdt.ErrData)
}

// seq returns lo, lo+1, ..., hi-1.
func seq(lo, hi int) []int {
	out := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}
