package privacy

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/stat"
)

func TestClipL2(t *testing.T) {
	tests := []struct {
		name        string
		v           []float64
		c           float64
		wantV       []float64
		wantFactor  float64
		wantClipped bool
	}{
		{name: "above", v: []float64{3, 4}, c: 1, wantV: []float64{0.6, 0.8}, wantFactor: 0.2, wantClipped: true},
		{name: "above by a factor 10", v: []float64{0, -30, 40}, c: 5, wantV: []float64{0, -3, 4}, wantFactor: 0.1, wantClipped: true},
		{name: "below", v: []float64{0.3, 0.4}, c: 1, wantV: []float64{0.3, 0.4}, wantFactor: 1},
		{name: "exactly at the norm", v: []float64{3, 4}, c: 5, wantV: []float64{3, 4}, wantFactor: 1},
		{name: "zero vector", v: []float64{0, 0}, c: 1, wantV: []float64{0, 0}, wantFactor: 1},
		{name: "empty", v: nil, c: 1, wantV: nil, wantFactor: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			factor, clipped, err := ClipL2(tt.v, tt.c)
			require.NoError(t, err)
			assert.InDelta(t, tt.wantFactor, factor, 1e-15)
			assert.Equal(t, tt.wantClipped, clipped)
			require.Len(t, tt.v, len(tt.wantV))
			for i := range tt.wantV {
				assert.InDelta(t, tt.wantV[i], tt.v[i], 1e-15)
			}
			assert.LessOrEqual(t, floats.Norm(tt.v, 2), tt.c*(1+1e-15))
		})
	}
}

func TestClipL2RejectsBadInput(t *testing.T) {
	for name, c := range map[string]float64{"zero": 0, "negative": -1, "NaN": math.NaN(), "Inf": math.Inf(1)} {
		v := []float64{3, 4}
		_, _, err := ClipL2(v, c)
		require.ErrorIs(t, err, ErrInvalidArgument, name)
		assert.Equal(t, []float64{3, 4}, v, "untouched on error")
	}
	for name, v := range map[string][]float64{"NaN": {1, math.NaN()}, "Inf": {math.Inf(-1), 0}} {
		_, _, err := ClipL2(v, 1)
		require.ErrorIs(t, err, ErrInvalidArgument, name)
	}
}

// TestAddGaussianNoiseScale draws many samples with a fixed seed and checks their mean and
// standard deviation: a wrong factor (variance for std, a missing or extra sqrt) fails.
func TestAddGaussianNoiseScale(t *testing.T) {
	const n = 200000
	for _, std := range []float64{0.05, 1, 7.5} {
		v := make([]float64, n)
		for i := range v {
			v[i] = 3 // the noise is added, not assigned
		}
		require.NoError(t, AddGaussianNoise(v, std, rand.New(rand.NewPCG(1, 2))))
		mean, sd := stat.MeanStdDev(v, nil)
		// Standard errors: std/sqrt(n) for the mean, about std/sqrt(2n) for the deviation.
		assert.InDelta(t, 3, mean, 5*std/math.Sqrt(n), "std %v", std)
		assert.InEpsilon(t, std, sd, 5/math.Sqrt(2*n), "std %v", std)
	}
}

func TestAddGaussianNoiseDeterministic(t *testing.T) {
	a, b := make([]float64, 16), make([]float64, 16)
	require.NoError(t, AddGaussianNoise(a, 1, rand.New(rand.NewPCG(7, 7))))
	require.NoError(t, AddGaussianNoise(b, 1, rand.New(rand.NewPCG(7, 7))))
	assert.Equal(t, a, b, "same seed, same noise, bit for bit")
	c := make([]float64, 16)
	require.NoError(t, AddGaussianNoise(c, 1, rand.New(rand.NewPCG(7, 8))))
	assert.NotEqual(t, a, c)
	zero := []float64{1, 2}
	require.NoError(t, AddGaussianNoise(zero, 0, rand.New(rand.NewPCG(1, 1))))
	assert.Equal(t, []float64{1, 2}, zero)

	for name, std := range map[string]float64{"negative": -1, "NaN": math.NaN(), "Inf": math.Inf(1)} {
		v := []float64{1}
		require.ErrorIs(t, AddGaussianNoise(v, std, rand.New(rand.NewPCG(1, 1))), ErrInvalidArgument, name)
		assert.Equal(t, []float64{1}, v)
	}
	require.ErrorIs(t, AddGaussianNoise([]float64{1}, 1, nil), ErrInvalidArgument)
}

// TestClientNoiseSharesSumToZC: m clients each adding their share give the sum noise of
// standard deviation z*C, as the coordinator would add in plaintext mode.
func TestClientNoiseSharesSumToZC(t *testing.T) {
	const z, c, m, trials = 1.3, 0.7, 25, 40000
	share, err := ClientNoiseStd(z, c, m)
	require.NoError(t, err)
	assert.InDelta(t, z*c/5, share, 1e-15)
	rng := rand.New(rand.NewPCG(3, 4))
	sums := make([]float64, trials)
	for client := 0; client < m; client++ {
		require.NoError(t, AddGaussianNoise(sums, share, rng))
	}
	assert.InEpsilon(t, z*c, stat.StdDev(sums, nil), 5/math.Sqrt(2*trials))

	_, err = ClientNoiseStd(z, c, 0)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = ClientNoiseStd(-1, c, m)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = ClientNoiseStd(z, 0, m)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

func TestAchievedNoiseMultiplier(t *testing.T) {
	tests := []struct {
		name              string
		z                 float64
		expected, arrived int
		want              float64
	}{
		{name: "all arrived", z: 1.2, expected: 100, arrived: 100, want: 1.2},
		{name: "a quarter arrived", z: 1.2, expected: 100, arrived: 25, want: 0.6},
		{name: "none arrived", z: 1.2, expected: 100, arrived: 0, want: 0},
		{name: "surplus not credited", z: 1.2, expected: 100, arrived: 400, want: 1.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AchievedNoiseMultiplier(tt.z, tt.expected, tt.arrived)
			require.NoError(t, err)
			assert.InDelta(t, tt.want, got, 1e-15)
		})
	}
	_, err := AchievedNoiseMultiplier(1, 0, 0)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = AchievedNoiseMultiplier(1, 10, -1)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = AchievedNoiseMultiplier(math.NaN(), 10, 5)
	require.ErrorIs(t, err, ErrInvalidArgument)

	// The multiplier matches the noise actually present: k shares of z*C/sqrt(m).
	const z, c, m, k, trials = 2.0, 1.0, 16, 4, 40000
	share, err := ClientNoiseStd(z, c, m)
	require.NoError(t, err)
	sums := make([]float64, trials)
	rng := rand.New(rand.NewPCG(5, 6))
	for range k {
		require.NoError(t, AddGaussianNoise(sums, share, rng))
	}
	achieved, err := AchievedNoiseMultiplier(z, m, k)
	require.NoError(t, err)
	assert.InEpsilon(t, achieved*c, stat.StdDev(sums, nil), 5/math.Sqrt(2*trials))
}

func TestExpectedContributors(t *testing.T) {
	got, err := ExpectedContributors(0.01, 12345)
	require.NoError(t, err)
	assert.Equal(t, 123, got)
	got, err = ExpectedContributors(1e-6, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, got, "at least one")
	_, err = ExpectedContributors(0, 10)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = ExpectedContributors(0.5, 0)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

// TestPoissonSample checks the sampling rate and the independence of the trials: the sample
// size has mean nq and variance nq(1-q), which a fixed-size sample (variance 0) fails.
func TestPoissonSample(t *testing.T) {
	const n, q, rounds = 2000, 0.05, 2000
	rng := rand.New(rand.NewPCG(11, 12))
	sizes := make([]float64, rounds)
	hits := make([]float64, n)
	for r := range sizes {
		picked, err := PoissonSample(n, q, rng)
		require.NoError(t, err)
		for i := 1; i < len(picked); i++ {
			require.Less(t, picked[i-1], picked[i], "increasing indices")
		}
		for _, i := range picked {
			hits[i]++
		}
		sizes[r] = float64(len(picked))
	}
	mean, variance := stat.MeanVariance(sizes, nil)
	assert.InEpsilon(t, n*q, mean, 0.01)
	assert.InEpsilon(t, n*q*(1-q), variance, 0.1)
	// Every index is sampled at rate q: the first and last are not favoured.
	assert.InEpsilon(t, q*rounds, (hits[0]+hits[1]+hits[2]+hits[3])/4, 0.2)
	assert.InEpsilon(t, q*rounds, (hits[n-1]+hits[n-2]+hits[n-3]+hits[n-4])/4, 0.2)

	all, err := PoissonSample(5, 1, rng)
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1, 2, 3, 4}, all)
	none, err := PoissonSample(5, 0, rng)
	require.NoError(t, err)
	assert.Empty(t, none)
	_, err = PoissonSample(5, 1.5, rng)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = PoissonSample(-1, 0.5, rng)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = PoissonSample(5, 0.5, nil)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

func TestAddScaledGaussianNoiseScalesEachValue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	v := make([]float64, 2*n)
	scales := make([]float64, 2*n)
	for i := range scales {
		scales[i] = 1 + float64(i%2)*9 // 1, 10, 1, 10, ...
	}
	require.NoError(t, AddScaledGaussianNoise(v, 0.5, scales, rng))
	var sq [2]float64
	for i, x := range v {
		sq[i%2] += x * x
	}
	assert.InEpsilon(t, 0.5, math.Sqrt(sq[0]/n), 0.03)
	assert.InEpsilon(t, 5.0, math.Sqrt(sq[1]/n), 0.03)
	require.ErrorIs(t, AddScaledGaussianNoise(v, 1, scales[:3], rng), ErrInvalidArgument)
	require.ErrorIs(t, AddScaledGaussianNoise(v, math.NaN(), scales, rng), ErrInvalidArgument)
}
