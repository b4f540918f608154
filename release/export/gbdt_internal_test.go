package export

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/model/gbdt"
)

// goesLeft is fedprop's numeric test, as gbdt scores a row: standardise, then compare.
func goesLeft(f gbdt.Feature, t, x float64) bool { return (x-f.Mean)/f.Std <= t }

// requireExactCut checks that r is the raw cut point of (f, t): it goes left, the next float
// above it does not, and so for the floats around both.
func requireExactCut(t *testing.T, f gbdt.Feature, thr, r float64) {
	t.Helper()
	require.True(t, goesLeft(f, thr, r), "the cut point %v itself goes left", r)
	require.False(t, goesLeft(f, thr, math.Nextafter(r, math.Inf(1))), "the float above %v goes right", r)
	x := r
	for range 64 {
		x = math.Nextafter(x, math.Inf(-1))
		require.True(t, goesLeft(f, thr, x), "%v below the cut point %v goes left", x, r)
	}
	x = r
	for range 64 {
		x = math.Nextafter(x, math.Inf(1))
		require.False(t, goesLeft(f, thr, x), "%v above the cut point %v goes right", x, r)
	}
}

func TestRawThresholdIsExact(t *testing.T) {
	tests := []struct {
		name            string
		mean, std, thrs float64
	}{
		{"integers", 40.5, 10.25, 1.5},
		{"a bank balance", 1362.2720576, 3044.7658291, -0.4212512},
		{"a negative threshold", 1000, 0.001, -3.75},
		{"a mean far from the values", -1e6, 1, 1e6 + 0.1},
		{"a threshold at the mean", 7.3, 2.2, 0},
		{"a huge scale", 0.5, 1e300, 1e-300},
		{"a tiny scale", 1e-3, 1e-300, 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := gbdt.Feature{Name: "x", Kind: gbdt.Numeric, Mean: tt.mean, Std: tt.std}
			r, err := rawThreshold(f, tt.thrs)
			require.NoError(t, err)
			requireExactCut(t, f, tt.thrs, r)
		})
	}
}

func TestRawThresholdCorrectsTheNaiveCutPoint(t *testing.T) {
	// t*Std+Mean (Feature.Raw) is often a float or a few off the exact cut point r: the
	// records between the two would take another branch in an export using it than in
	// fedprop (x = max(naive, r) itself, for one).
	rng := rand.New(rand.NewPCG(5, 8))
	off := 0
	const draws = 2000
	for range draws {
		f := gbdt.Feature{Name: "x", Kind: gbdt.Numeric, Mean: rng.NormFloat64() * 1000, Std: math.Exp(rng.NormFloat64() * 3)}
		thr := rng.NormFloat64() * 2
		r, err := rawThreshold(f, thr)
		require.NoError(t, err)
		requireExactCut(t, f, thr, r)
		if naive := f.Raw(thr); naive != r {
			x := max(naive, r)
			require.NotEqual(t, goesLeft(f, thr, x), x <= naive, "a record the naive cut point misroutes")
			off++
		}
	}
	t.Logf("the naive cut point was off the exact one in %d of %d draws", off, draws)
	assert.Positive(t, off, "the test draws cases where exactness matters")
}

func TestRawThresholdRefusesASplitNoValuePasses(t *testing.T) {
	f := gbdt.Feature{Name: "x", Kind: gbdt.Numeric, Mean: 0, Std: math.MaxFloat64}
	_, err := rawThreshold(f, -2)
	require.ErrorIs(t, err, ErrInvalidModel)
}

func TestFloatKeysKeepTheOrderOfFloats(t *testing.T) {
	values := []float64{math.Inf(-1), -math.MaxFloat64, -1, -math.SmallestNonzeroFloat64, 0,
		math.SmallestNonzeroFloat64, 1, math.Nextafter(1, 2), math.MaxFloat64, math.Inf(1)}
	for i, v := range values {
		require.Equal(t, v, keyFloat(floatKey(v)), "round trip of %v", v)
		if i > 0 {
			require.Equal(t, floatKey(values[i-1]) < floatKey(v), values[i-1] < v, "%v < %v", values[i-1], v)
		}
	}
	assert.Equal(t, floatKey(0), floatKey(math.Copysign(0, -1)), "both zeros are one key")
	assert.Equal(t, floatKey(1)+1, floatKey(math.Nextafter(1, 2)), "neighbouring floats are neighbouring keys")
}
