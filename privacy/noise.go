package privacy

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/floats"
)

// validClipNorm reports whether c can be an L2 clipping norm.
func validClipNorm(c float64) error {
	if math.IsNaN(c) || math.IsInf(c, 0) || c <= 0 {
		return fmt.Errorf("clip norm %v, want finite and > 0: %w", c, ErrInvalidArgument)
	}
	return nil
}

// ClipL2 scales v in place so that its L2 norm is at most c, and returns the factor applied
// (min(1, c/||v||)) and whether v was clipped (its norm exceeded c). c must be finite and
// positive, and v finite: a non-finite update has no meaningful clipped version, and clipping it
// would hide a training failure, so both are errors and v is left untouched.
func ClipL2(v []float64, c float64) (factor float64, clipped bool, err error) {
	if err := validClipNorm(c); err != nil {
		return 0, false, err
	}
	norm := floats.Norm(v, 2)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return 0, false, fmt.Errorf("clip a vector of norm %v: %w", norm, ErrInvalidArgument)
	}
	if norm <= c {
		return 1, false, nil
	}
	factor = c / norm
	floats.Scale(factor, v)
	return factor, true, nil
}

// validNoiseStd reports whether std can be a noise standard deviation.
func validNoiseStd(std float64) error {
	if math.IsNaN(std) || math.IsInf(std, 0) || std < 0 {
		return fmt.Errorf("noise standard deviation %v, want finite and >= 0: %w", std, ErrInvalidArgument)
	}
	return nil
}

// AddGaussianNoise adds independent N(0, std^2) noise to every element of v, drawing from rng
// in index order (so the same seed gives the same noise). std must be finite and >= 0; on error
// v is untouched and nothing is drawn.
func AddGaussianNoise(v []float64, std float64, rng *rand.Rand) error {
	if err := validNoiseStd(std); err != nil {
		return err
	}
	if rng == nil {
		return fmt.Errorf("add Gaussian noise: nil random source: %w", ErrInvalidArgument)
	}
	for i := range v {
		v[i] += std * rng.NormFloat64()
	}
	return nil
}

// AddScaledGaussianNoise adds independent N(0, (std*scales[i])^2) noise to v[i]: a release whose
// values have different per-record sensitivities, noised at one multiplier. Draws are taken
// from rng in index order; on error v is untouched and nothing is drawn.
func AddScaledGaussianNoise(v []float64, std float64, scales []float64, rng *rand.Rand) error {
	if len(scales) != len(v) {
		return fmt.Errorf("noise scales for %d values, the release has %d: %w", len(scales), len(v), ErrInvalidArgument)
	}
	if err := validNoiseStd(std); err != nil {
		return err
	}
	if rng == nil {
		return fmt.Errorf("add Gaussian noise: nil random source: %w", ErrInvalidArgument)
	}
	for i := range v {
		v[i] += (std * rng.NormFloat64()) * scales[i]
	}
	return nil
}

// validNoiseMultiplier reports whether z can be a noise multiplier.
func validNoiseMultiplier(z float64) error {
	if math.IsNaN(z) || math.IsInf(z, 0) || z < 0 {
		return fmt.Errorf("noise multiplier %v, want finite and >= 0: %w", z, ErrInvalidArgument)
	}
	return nil
}

// ClientNoiseStd is one client's share of DP-FedAvg noise in `he` mode: z*c/sqrt(m) for m
// expected contributors, so that m shares sum to noise of standard deviation z*c (independent
// Gaussians add in variance). See the package documentation for what m is under Poisson
// sampling.
func ClientNoiseStd(z, c float64, expectedContributors int) (float64, error) {
	if err := validNoiseMultiplier(z); err != nil {
		return 0, err
	}
	if err := validClipNorm(c); err != nil {
		return 0, err
	}
	if expectedContributors < 1 {
		return 0, fmt.Errorf("expected contributors %d, want >= 1: %w", expectedContributors, ErrInvalidArgument)
	}
	return z * c / math.Sqrt(float64(expectedContributors)), nil
}

// AchievedNoiseMultiplier is the noise multiplier actually present in a `he`-mode sum when
// arrived of the expected clients contributed their share: z*sqrt(arrived/expected) when fewer
// arrived than expected. Surplus contributors (arrived > expected) are not credited: the result
// is capped at z, the multiplier the round was planned and accounted with, because crediting
// noise that depends on how many clients happened to be sampled is not covered by the
// accountant's analysis. Account for the round with the value returned and log the shortfall.
func AchievedNoiseMultiplier(z float64, expected, arrived int) (float64, error) {
	if err := validNoiseMultiplier(z); err != nil {
		return 0, err
	}
	if expected < 1 || arrived < 0 {
		return 0, fmt.Errorf("expected %d and arrived %d contributors, want expected >= 1 and arrived >= 0: %w",
			expected, arrived, ErrInvalidArgument)
	}
	if arrived >= expected {
		return z, nil
	}
	return z * math.Sqrt(float64(arrived)/float64(expected)), nil
}

// ExpectedContributors is the m used for noise shares and for the denominator of the averaged
// update under Poisson sampling at rate q from population clients: q*population rounded to the
// nearest integer, and at least 1.
func ExpectedContributors(q float64, population int) (int, error) {
	if math.IsNaN(q) || q <= 0 || q > 1 {
		return 0, fmt.Errorf("sampling rate q=%v, want 0 < q <= 1: %w", q, ErrInvalidArgument)
	}
	if population < 1 {
		return 0, fmt.Errorf("population %d, want >= 1: %w", population, ErrInvalidArgument)
	}
	return max(1, int(math.Round(q*float64(population)))), nil
}

// PoissonSample returns, in increasing order, the indices in [0, n) selected by independent
// Bernoulli(q) trials: Poisson sampling, the sampling the accountant assumes, of clients per
// round or of records per DP-SGD step. The sample size is random and may be zero. It draws n
// uniforms from rng.
func PoissonSample(n int, q float64, rng *rand.Rand) ([]int, error) {
	if n < 0 {
		return nil, fmt.Errorf("poisson sample of %d items: %w", n, ErrInvalidArgument)
	}
	if math.IsNaN(q) || q < 0 || q > 1 {
		return nil, fmt.Errorf("sampling rate q=%v, want 0 <= q <= 1: %w", q, ErrInvalidArgument)
	}
	if rng == nil {
		return nil, fmt.Errorf("poisson sample: nil random source: %w", ErrInvalidArgument)
	}
	var picked []int
	for i := range n {
		if rng.Float64() < q {
			picked = append(picked, i)
		}
	}
	return picked, nil
}
