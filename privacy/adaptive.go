package privacy

import (
	"fmt"
	"math"
)

// Defaults of adaptive clipping (Andrew et al., "Differentially Private Learning with Adaptive
// Clipping", NeurIPS 2021, and TensorFlow Federated's implementation).
const (
	// DefaultTargetQuantile is gamma: the clip norm tracks the median update norm.
	DefaultTargetQuantile = 0.5
	// DefaultClipLearningRate is eta of the geometric update.
	DefaultClipLearningRate = 0.2
	// DefaultInitialClipNorm is the starting norm when none is configured (TFF's default).
	DefaultInitialClipNorm = 0.1
	// countNoiseDivisor gives the default count noise: sigma_b = m/20.
	countNoiseDivisor = 20
)

// AdaptiveClipConfig configures adaptive clipping by quantile. Zero fields mean "use the
// default" (see WithDefaults). Each contributor reports UnclippedIndicator (+-0.5, sensitivity
// 0.5); their sum gets Gaussian noise of standard deviation CountNoiseStd, and the update's sum
// uses the noise multiplier SumNoiseMultiplier(z, CountNoiseStd) so that the pair of releases
// costs exactly what one release with multiplier z would.
type AdaptiveClipConfig struct {
	// InitialNorm is the clip norm of the first round.
	InitialNorm float64
	// TargetQuantile is gamma, the fraction of updates meant to be left unclipped.
	TargetQuantile float64
	// LearningRate is eta in C <- C * exp(-eta * (b - gamma)).
	LearningRate float64
	// CountNoiseStd is sigma_b, the standard deviation of the noise on the sum of indicators.
	CountNoiseStd float64
}

// WithDefaults fills zero fields: InitialNorm 0.1, TargetQuantile 0.5, LearningRate 0.2 and
// CountNoiseStd m/20 for m = expectedClients (the expected contributors per round, see
// ExpectedContributors); the paper's recommendation, which keeps the noise on the unclipped
// fraction b at a standard deviation of 1/20 whatever the cohort size.
func (c AdaptiveClipConfig) WithDefaults(expectedClients int) AdaptiveClipConfig {
	if c.InitialNorm == 0 {
		c.InitialNorm = DefaultInitialClipNorm
	}
	if c.TargetQuantile == 0 {
		c.TargetQuantile = DefaultTargetQuantile
	}
	if c.LearningRate == 0 {
		c.LearningRate = DefaultClipLearningRate
	}
	if c.CountNoiseStd == 0 {
		c.CountNoiseStd = float64(expectedClients) / countNoiseDivisor
	}
	return c
}

// Validate checks the (defaulted) configuration: positive finite norm, learning rate and count
// noise, and a target quantile in (0, 1).
func (c AdaptiveClipConfig) Validate() error {
	if err := validClipNorm(c.InitialNorm); err != nil {
		return fmt.Errorf("adaptive clipping initial norm: %w", err)
	}
	if math.IsNaN(c.TargetQuantile) || c.TargetQuantile <= 0 || c.TargetQuantile >= 1 {
		return fmt.Errorf("adaptive clipping target quantile %v, want 0 < gamma < 1: %w", c.TargetQuantile, ErrInvalidArgument)
	}
	if math.IsNaN(c.LearningRate) || math.IsInf(c.LearningRate, 0) || c.LearningRate <= 0 {
		return fmt.Errorf("adaptive clipping learning rate %v, want finite and > 0: %w", c.LearningRate, ErrInvalidArgument)
	}
	if math.IsNaN(c.CountNoiseStd) || math.IsInf(c.CountNoiseStd, 0) || c.CountNoiseStd <= 0 {
		return fmt.Errorf("adaptive clipping count noise %v, want finite and > 0: %w", c.CountNoiseStd, ErrInvalidArgument)
	}
	return nil
}

// SumNoiseMultiplier is the noise multiplier for the sum of clipped updates when the same round
// also releases the indicator count with noise sigmaB at sensitivity 0.5 (multiplier 2*sigmaB):
// z_sum = (z^-2 - (2 sigmaB)^-2)^(-1/2). Two Gaussian releases compose like one with
// 1/z^2 = 1/z_sum^2 + 1/(2 sigmaB)^2, so the round's total privacy cost stays that of z. It is
// an error when 2*sigmaB <= z (the count alone would already spend the budget).
func SumNoiseMultiplier(z, sigmaB float64) (float64, error) {
	if math.IsNaN(z) || math.IsInf(z, 0) || z <= 0 {
		return 0, fmt.Errorf("noise multiplier z=%v, want finite and > 0: %w", z, ErrInvalidArgument)
	}
	if math.IsNaN(sigmaB) || math.IsInf(sigmaB, 0) || sigmaB <= 0 {
		return 0, fmt.Errorf("count noise sigma_b=%v, want finite and > 0: %w", sigmaB, ErrInvalidArgument)
	}
	rest := 1/(z*z) - 1/(4*sigmaB*sigmaB)
	zSum := 1 / math.Sqrt(rest)
	if rest <= 0 || math.IsNaN(zSum) || math.IsInf(zSum, 0) {
		return 0, fmt.Errorf("count noise sigma_b=%v leaves no budget for the sum at z=%v (need 2*sigma_b > z): %w",
			sigmaB, z, ErrInvalidArgument)
	}
	return zSum, nil
}

// UnclippedIndicator is what a client reports for adaptive clipping: +0.5 when its update was
// not clipped, -0.5 when it was. Centring on zero halves the sensitivity of the sum (to 0.5)
// compared with a 0/1 bit.
func UnclippedIndicator(clipped bool) float64 {
	if clipped {
		return -0.5
	}
	return 0.5
}

// NextClipNorm is the geometric quantile update of adaptive clipping. From the noised sum of
// indicators and the expected contributor count m it estimates the unclipped fraction
// b = sum/m + 0.5, and returns c * exp(-eta * (b - gamma)): the norm shrinks when more than
// gamma of the updates were unclipped (the norm is above the target quantile) and grows when
// fewer were. Dividing by the expected m, not the arrived count, keeps the estimate's
// sensitivity fixed; when fewer than m arrive, b is pulled towards 0.5.
func NextClipNorm(c, noisedIndicatorSum float64, m int, gamma, eta float64) (float64, error) {
	if err := validClipNorm(c); err != nil {
		return 0, err
	}
	if math.IsNaN(noisedIndicatorSum) || math.IsInf(noisedIndicatorSum, 0) {
		return 0, fmt.Errorf("noised indicator sum %v: %w", noisedIndicatorSum, ErrInvalidArgument)
	}
	if m < 1 {
		return 0, fmt.Errorf("expected contributors %d, want >= 1: %w", m, ErrInvalidArgument)
	}
	if math.IsNaN(gamma) || gamma <= 0 || gamma >= 1 {
		return 0, fmt.Errorf("target quantile %v, want 0 < gamma < 1: %w", gamma, ErrInvalidArgument)
	}
	if math.IsNaN(eta) || math.IsInf(eta, 0) || eta <= 0 {
		return 0, fmt.Errorf("learning rate %v, want finite and > 0: %w", eta, ErrInvalidArgument)
	}
	b := noisedIndicatorSum/float64(m) + 0.5
	next := c * math.Exp(-eta*(b-gamma))
	if err := validClipNorm(next); err != nil {
		return 0, fmt.Errorf("next clip norm from %v with b=%v: %w", c, b, err)
	}
	return next, nil
}
