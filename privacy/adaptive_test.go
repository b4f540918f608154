package privacy

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/stat"
)

func TestNextClipNormDirection(t *testing.T) {
	const c, m, gamma, eta = 2.0, 100, 0.5, 0.2
	tests := []struct {
		name      string
		unclipped int
		want      float64
	}{
		// b = 1: every update was under the norm, which is too high: shrink by exp(-0.2*0.5).
		{name: "all unclipped shrinks", unclipped: 100, want: c * math.Exp(-eta*(1-gamma))},
		{name: "most unclipped shrinks", unclipped: 80, want: c * math.Exp(-eta*(0.8-gamma))},
		{name: "at the target stays", unclipped: 50, want: c},
		{name: "most clipped grows", unclipped: 20, want: c * math.Exp(-eta*(0.2-gamma))},
		{name: "all clipped grows", unclipped: 0, want: c * math.Exp(eta*gamma)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum := 0.0
			for i := range m {
				sum += UnclippedIndicator(i >= tt.unclipped)
			}
			got, err := NextClipNorm(c, sum, m, gamma, eta)
			require.NoError(t, err)
			assert.InEpsilon(t, tt.want, got, 1e-14)
			switch {
			case tt.unclipped > m/2:
				assert.Less(t, got, c, "more than gamma unclipped: the norm must shrink")
			case tt.unclipped < m/2:
				assert.Greater(t, got, c, "fewer than gamma unclipped: the norm must grow")
			}
		})
	}
}

// TestAdaptiveClippingTracksQuantile runs the full loop: clients with log-normal update norms
// report noised indicators, and the norm must settle at the target quantile of the norms. A
// flipped sign sends the norm to zero or infinity instead.
func TestAdaptiveClippingTracksQuantile(t *testing.T) {
	const m, rounds = 200, 400
	const medianNorm, logSpread = 3.0, 0.5
	tests := []struct {
		gamma float64
		z     float64 // the quantile of the standard normal at gamma
	}{
		{gamma: 0.5, z: 0},
		{gamma: 0.9, z: 1.2815515655446004},
		{gamma: 0.2, z: -0.8416212335729143},
	}
	for _, tt := range tests {
		cfg := AdaptiveClipConfig{InitialNorm: 0.1, TargetQuantile: tt.gamma}.WithDefaults(m)
		require.NoError(t, cfg.Validate())
		rng := rand.New(rand.NewPCG(21, 22))
		norm := cfg.InitialNorm
		var late []float64
		for round := range rounds {
			sum := make([]float64, 1)
			for range m {
				updateNorm := medianNorm * math.Exp(logSpread*rng.NormFloat64())
				sum[0] += UnclippedIndicator(updateNorm > norm)
			}
			require.NoError(t, AddGaussianNoise(sum, cfg.CountNoiseStd, rng))
			var err error
			norm, err = NextClipNorm(norm, sum[0], m, cfg.TargetQuantile, cfg.LearningRate)
			require.NoError(t, err)
			if round >= rounds-100 {
				late = append(late, norm)
			}
		}
		want := medianNorm * math.Exp(logSpread*tt.z)
		// The estimate wanders around the quantile (noise on b has std 1/20); it stays close
		// and its average is closer still.
		for _, c := range late {
			assert.InEpsilon(t, want, c, 0.12, "gamma %v", tt.gamma)
		}
		assert.InEpsilon(t, want, stat.Mean(late, nil), 0.03, "gamma %v", tt.gamma)
	}
}

func TestSumNoiseMultiplier(t *testing.T) {
	// Total cost check: 1/z^2 = 1/z_sum^2 + 1/(2 sigma_b)^2.
	for _, tt := range []struct{ z, sigmaB float64 }{{1, 5}, {0.8, 10}, {2.5, 1.3}, {1, 0.51}} {
		zSum, err := SumNoiseMultiplier(tt.z, tt.sigmaB)
		require.NoError(t, err)
		assert.Greater(t, zSum, tt.z, "the sum needs more noise than z alone")
		assert.InEpsilon(t, 1/(tt.z*tt.z), 1/(zSum*zSum)+1/(4*tt.sigmaB*tt.sigmaB), 1e-12)
	}
	// A worked value: z=1, sigma_b=5 (m=100): (1 - 1/100)^(-1/2).
	zSum, err := SumNoiseMultiplier(1, 5)
	require.NoError(t, err)
	assert.InEpsilon(t, 1/math.Sqrt(0.99), zSum, 1e-15)

	// The accountant agrees: the two releases compose to the privacy of one with multiplier z.
	orders := []float64{2, 4, 8, 16, 32}
	zSum, err = SumNoiseMultiplier(1.1, 2)
	require.NoError(t, err)
	pair := NewAccountant(orders)
	require.NoError(t, pair.Compose(1, zSum, 1))
	require.NoError(t, pair.Compose(1, 2*2, 1)) // the count: std sigma_b at sensitivity 0.5
	single, err := SampledGaussianRDP(1, 1.1, 1, orders)
	require.NoError(t, err)
	for i := range orders {
		assert.InEpsilon(t, single[i], pair.RDP[i], 1e-12)
	}

	for name, args := range map[string][2]float64{
		"count too noisy for z": {1, 0.5}, "count would need all budget": {2, 0.9},
		"zero z": {0, 5}, "zero sigma_b": {1, 0}, "NaN": {math.NaN(), 1}, "Inf sigma_b": {1, math.Inf(1)},
	} {
		_, err := SumNoiseMultiplier(args[0], args[1])
		require.ErrorIs(t, err, ErrInvalidArgument, name)
	}
}

func TestUnclippedIndicator(t *testing.T) {
	assert.Equal(t, 0.5, UnclippedIndicator(false))
	assert.Equal(t, -0.5, UnclippedIndicator(true))
}

func TestAdaptiveClipConfig(t *testing.T) {
	got := AdaptiveClipConfig{}.WithDefaults(100)
	assert.Equal(t, AdaptiveClipConfig{InitialNorm: 0.1, TargetQuantile: 0.5, LearningRate: 0.2, CountNoiseStd: 5}, got)
	kept := AdaptiveClipConfig{InitialNorm: 1, TargetQuantile: 0.7, LearningRate: 0.1, CountNoiseStd: 3}
	assert.Equal(t, kept, kept.WithDefaults(100))
	require.NoError(t, got.Validate())

	for name, cfg := range map[string]AdaptiveClipConfig{
		"no clients":     AdaptiveClipConfig{}.WithDefaults(0),
		"quantile 1":     {InitialNorm: 1, TargetQuantile: 1, LearningRate: 0.2, CountNoiseStd: 1},
		"negative norm":  {InitialNorm: -1, TargetQuantile: 0.5, LearningRate: 0.2, CountNoiseStd: 1},
		"negative eta":   {InitialNorm: 1, TargetQuantile: 0.5, LearningRate: -0.2, CountNoiseStd: 1},
		"NaN count std":  {InitialNorm: 1, TargetQuantile: 0.5, LearningRate: 0.2, CountNoiseStd: math.NaN()},
		"NaN quantile":   {InitialNorm: 1, TargetQuantile: math.NaN(), LearningRate: 0.2, CountNoiseStd: 1},
		"infinite norm":  {InitialNorm: math.Inf(1), TargetQuantile: 0.5, LearningRate: 0.2, CountNoiseStd: 1},
		"infinite eta":   {InitialNorm: 1, TargetQuantile: 0.5, LearningRate: math.Inf(1), CountNoiseStd: 1},
		"negative count": {InitialNorm: 1, TargetQuantile: 0.5, LearningRate: 0.2, CountNoiseStd: -1},
	} {
		require.ErrorIs(t, cfg.Validate(), ErrInvalidArgument, name)
	}
}

func TestNextClipNormRejectsBadInput(t *testing.T) {
	tests := []struct {
		name       string
		c, sum     float64
		m          int
		gamma, eta float64
	}{
		{"zero norm", 0, 0, 10, 0.5, 0.2},
		{"NaN sum", 1, math.NaN(), 10, 0.5, 0.2},
		{"infinite sum", 1, math.Inf(1), 10, 0.5, 0.2},
		{"no clients", 1, 0, 0, 0.5, 0.2},
		{"gamma 0", 1, 0, 10, 0, 0.2},
		{"eta 0", 1, 0, 10, 0.5, 0},
		{"underflow to zero", 1, 1e300, 1, 0.5, 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NextClipNorm(tt.c, tt.sum, tt.m, tt.gamma, tt.eta)
			require.ErrorIs(t, err, ErrInvalidArgument)
		})
	}
}
