package dataset_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/stat"

	"github.com/fedprop/fedprop/dataset"
)

// randomDataset draws n rows for the test schema.
func randomDataset(t *testing.T, n int, seed uint64) *dataset.Dataset {
	t.Helper()
	s := testSchema(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	b := dataset.NewBuilder(s, "random", n)
	for range n {
		age := 18 + 60*rng.Float64()
		b.Append([]float64{age, 1000 + 500*rng.NormFloat64()},
			[]int32{int32(rng.IntN(2)), int32(rng.IntN(3))},
			[]string{s.Sensitive[0].BandLabels()[s.Sensitive[0].Band(age)], "f"},
			float64(rng.IntN(2)), 0)
	}
	return b.Finish()
}

func TestStatsAddUp(t *testing.T) {
	d := randomDataset(t, 300, 7)
	var total dataset.FeatureStats // the zero value takes the first dimension
	for _, part := range [][]int{seq(0, 100), seq(100, 250), seq(250, 300)} {
		require.NoError(t, total.Add(d.Subset(part).Stats()))
	}
	whole := d.Stats()
	assert.Equal(t, whole.Count, total.Count)
	assert.InDeltaSlice(t, whole.Sum, total.Sum, 1e-6)
	assert.InDeltaSlice(t, whole.SumSq, total.SumSq, 1e-3)

	err := total.Add(dataset.FeatureStats{Count: 1, Sum: []float64{1}, SumSq: []float64{1}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dimension")
}

func TestStandardizationMatchesPopulationStd(t *testing.T) {
	d := randomDataset(t, 500, 3)
	st, err := d.Stats().Standardization()
	require.NoError(t, err)
	for i := range d.Schema.Numeric {
		col := make([]float64, d.Len())
		for r, row := range d.Numeric {
			col[r] = row[i]
		}
		mean, std := stat.PopMeanStdDev(col, nil)
		assert.InDelta(t, mean, st.Mean[i], 1e-9*math.Abs(mean))
		assert.InDelta(t, std, st.Std[i], 1e-7*std)
	}
}

func TestStandardizationEdgeCases(t *testing.T) {
	tests := []struct {
		name     string
		stats    dataset.FeatureStats
		wantMean []float64
		wantStd  []float64
		wantErr  string
	}{
		{"constant feature gets std 1", dataset.FeatureStats{Count: 4, Sum: []float64{4e6, 0}, SumSq: []float64{4e12, 0}}, []float64{1e6, 0}, []float64{1, 1}, ""},
		{"noisy decrypted sums clamp", dataset.FeatureStats{Count: 2, Sum: []float64{2}, SumSq: []float64{2 - 1e-12}}, []float64{1}, []float64{1}, ""},
		{"two values", dataset.FeatureStats{Count: 2, Sum: []float64{4}, SumSq: []float64{10}}, []float64{2}, []float64{1}, ""},
		{"spread", dataset.FeatureStats{Count: 2, Sum: []float64{0}, SumSq: []float64{8}}, []float64{0}, []float64{2}, ""},
		{"count 0", dataset.FeatureStats{Sum: []float64{0}, SumSq: []float64{0}}, nil, nil, "count 0"},
		{"non-finite", dataset.FeatureStats{Count: 1, Sum: []float64{math.Inf(1)}, SumSq: []float64{1}}, nil, nil, "non-finite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := tt.stats.Standardization()
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.InDeltaSlice(t, tt.wantMean, st.Mean, 1e-12)
			assert.InDeltaSlice(t, tt.wantStd, st.Std, 1e-12)
		})
	}
}

func TestStatsVectorRoundTrip(t *testing.T) {
	s := dataset.FeatureStats{Count: 3, Sum: []float64{1, 2}, SumSq: []float64{3, 4}}
	v := s.Vector()
	assert.Equal(t, []float64{3, 1, 2, 3, 4}, v)
	back, err := dataset.FeatureStatsFromVector(v, 2)
	require.NoError(t, err)
	assert.Equal(t, s, back)
	v[1] = 99 // the stats do not alias the vector
	assert.Equal(t, 1.0, back.Sum[0])

	_, err = dataset.FeatureStatsFromVector(v, 3)
	require.Error(t, err)
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}
