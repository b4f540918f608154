package logreg

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
)

// clipSlack is the rounding a clipped contribution's norm may show above C: scaling by C/norm
// and recomputing the norm in floating point is exact to a few ulps.
const clipSlack = 1e-12

// TestAddClippedGradientIsBounded is the bound DP-SGD's accounting rests on: whatever the
// record, the weights and the clip, one record adds a finite vector of L2 norm at most C to the
// sum the noise is calibrated to. A change to clipping that lets any of these through fails here.
func TestAddClippedGradientIsBounded(t *testing.T) {
	tests := []struct {
		name string
		w, x []float64
		y    float64
		clip float64
	}{
		{name: "small gradient left whole", w: []float64{0, 0.1, -0.1}, x: []float64{0.2, 0.1}, y: 1, clip: 10},
		{name: "large gradient cut", w: []float64{0, 0, 0}, x: []float64{30, -40}, y: 1, clip: 1},
		// residual -0.5 times sqrt(3): 8% above the clip, where a looser test would pass.
		{name: "just above the clip", w: []float64{0, 0, 0}, x: []float64{1, 1}, y: 1, clip: 0.8},
		{name: "tiny clip", w: []float64{-3, 1, 1}, x: []float64{1, 1}, y: 1, clip: 1e-9},
		{name: "saturated wrong prediction", w: []float64{500, 0, 0}, x: []float64{1, -1}, y: 0, clip: 0.5},
		{name: "saturated right prediction", w: []float64{500, 0, 0}, x: []float64{1, -1}, y: 1, clip: 0.5},
		{name: "features far outside public bounds", w: []float64{0.1, 0.2, -0.3}, x: []float64{1e6, -3e7}, y: 0, clip: 1},
		{name: "squared norm overflows", w: []float64{0, 1e-300, 0}, x: []float64{1e200, 1e200}, y: 1, clip: 1},
		{name: "logit overflows", w: []float64{0, 1e300, 1e300}, x: []float64{1e10, 1e10}, y: 0, clip: 1},
		{name: "non-finite feature", w: []float64{0, 1, 1}, x: []float64{math.Inf(1), 0}, y: 1, clip: 1},
		{name: "nan feature", w: []float64{0, 1, 1}, x: []float64{math.NaN(), 0}, y: 0, clip: 1},
		{name: "zero row", w: []float64{2, 1, 1}, x: []float64{0, 0}, y: 0, clip: 0.3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum := make([]float64, len(tt.w))
			addClippedGradient(sum, tt.w, tt.x, tt.y, augmentedRowNorms(mat.NewDense(1, len(tt.x), tt.x))[0], tt.clip)
			for j, v := range sum {
				require.False(t, math.IsNaN(v) || math.IsInf(v, 0), "coordinate %d is %v", j, v)
			}
			assert.LessOrEqual(t, floats.Norm(sum, 2), tt.clip*(1+clipSlack))
		})
	}
}

// TestAddClippedGradientMatchesTheGradient: below the clip a record adds its log-loss gradient
// unchanged, and above it the same direction at norm exactly C, so clipping bounds a record
// without bending its gradient.
func TestAddClippedGradientMatchesTheGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 31))
	for range 200 {
		w := []float64{rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()}
		x := []float64{3 * rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()}
		y := float64(rng.IntN(2))
		clip := math.Exp(2 * rng.NormFloat64())
		residual := sigmoid(logit(w, x)) - y
		raw := append([]float64{residual}, x...)
		floats.Scale(residual, raw[1:])
		norm := floats.Norm(raw, 2)

		got := make([]float64, len(w))
		addClippedGradient(got, w, x, y, augmentedRowNorms(mat.NewDense(1, len(x), x))[0], clip)
		want := raw
		if norm > clip {
			want = make([]float64, len(raw))
			floats.ScaleTo(want, clip/norm, raw)
		}
		assert.InDeltaSlice(t, want, got, 1e-12*max(1, norm))
	}
}

// TestClippedSumSensitivity checks the bound on what the accountant sees, the batch's summed
// clipped gradients: adding any one record to a data set (add/remove adjacency) moves the sum by
// at most C, over random data sets, weights, clips and adversarial extra records.
func TestClippedSumSensitivity(t *testing.T) {
	rng := rand.New(rand.NewPCG(32, 32))
	const d = 5
	sumOf := func(w []float64, rows [][]float64, labels []float64, clip float64) []float64 {
		sum := make([]float64, d+1)
		for i, x := range rows {
			addClippedGradient(sum, w, x, labels[i], augmentedRowNorms(mat.NewDense(1, d, x))[0], clip)
		}
		return sum
	}
	for trial := range 100 {
		n := 1 + rng.IntN(50)
		rows, labels := make([][]float64, n), make([]float64, n)
		for i := range rows {
			rows[i] = make([]float64, d)
			for j := range rows[i] {
				rows[i][j] = rng.NormFloat64()
			}
			labels[i] = float64(rng.IntN(2))
		}
		w := make([]float64, d+1)
		for j := range w {
			w[j] = 3 * rng.NormFloat64()
		}
		extra := make([]float64, d)
		for j := range extra {
			extra[j] = math.Pow(10, float64(rng.IntN(12))) * rng.NormFloat64()
		}
		extraLabel := float64(trial % 2)
		clip := math.Exp(rng.NormFloat64())
		if trial%3 == 0 {
			// Just below the extra record's own gradient norm, where a clip that lets a little
			// more through would show.
			residual := math.Abs(sigmoid(logit(w, extra)) - extraLabel)
			clip = max(1e-3, residual*augmentedRowNorms(mat.NewDense(1, d, extra))[0]*(0.5+rng.Float64()/2))
		}
		before := sumOf(w, rows, labels, clip)
		after := sumOf(w, append(rows, extra), append(labels, extraLabel), clip)
		floats.Sub(after, before)
		assert.LessOrEqual(t, floats.Norm(after, 2), clip*(1+clipSlack), "trial %d", trial)
	}
}
