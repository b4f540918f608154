package logreg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
)

// DPSGDParams configure DP-SGD (Abadi et al. 2016) for record-level differential privacy at a
// branch. The privacy accountant needs SamplingRate, NoiseMultiplier and Steps; ClipNorm bounds
// each record's influence on a step.
type DPSGDParams struct {
	SamplingRate    float64 // q: each record is in each step's batch independently with probability q (Poisson), 0 < q <= 1
	ClipNorm        float64 // C: per-example gradient L2 clip, > 0
	NoiseMultiplier float64 // z: Gaussian noise std z*C added to the summed clipped gradients each step, >= 0
	Steps           int     // number of steps, >= 1
	LearningRate    float64 // step size, > 0
	L2              float64 // penalty L2/2*||w[1:]||^2, added after the noise (it reads no record), >= 0
	// ReferenceRecords, when positive, is the public record count the noised sum is divided by:
	// each step moves by LearningRate times the noised sum over q*ReferenceRecords, the same
	// denominator at every client of a run. Zero divides by this client's own expected batch
	// q*n instead (the estimator of Abadi et al.).
	//
	// Why a shared denominator: the coordinator averages the clients' DP-SGD updates without
	// weights (a weight would have to come from the record counts, outside the guarantee). With
	// q*n each client takes the same step on its mean gradient whatever its size, so a branch of
	// 800 records counts as much as one of 10,000, and its noise, z*C/(q*n) per step, is 13 times
	// as large. With a shared denominator a client's step grows with its records, the unweighted
	// mean of the updates weighs the clients by their records as pooled training would, and
	// every client adds the same noise. This is the fixed-denominator estimator of McMahan et
	// al., "Learning Differentially Private Recurrent Language Models" (ICLR 2018), applied to
	// records within a client; the denominator depends on no record of this client, so the
	// update is post-processing of the noised sums. privacy.PlanDPSGD derives it with the
	// learning rate that goes with it.
	ReferenceRecords int
}

// Validate reports whether p is usable. DPSGDParams have no defaults: every privacy-relevant
// value must be chosen deliberately.
func (p DPSGDParams) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !(p.SamplingRate > 0 && p.SamplingRate <= 1):
		return fmt.Errorf("%w: sampling rate %v is not in (0, 1]", ErrInvalidParams, p.SamplingRate)
	case !(p.ClipNorm > 0) || !finite(p.ClipNorm):
		return fmt.Errorf("%w: clip norm %v is not a positive finite number", ErrInvalidParams, p.ClipNorm)
	case !(p.NoiseMultiplier >= 0) || !finite(p.NoiseMultiplier):
		return fmt.Errorf("%w: noise multiplier %v is not a non-negative finite number", ErrInvalidParams, p.NoiseMultiplier)
	case p.Steps < 1:
		return fmt.Errorf("%w: steps %d < 1", ErrInvalidParams, p.Steps)
	case !(p.LearningRate > 0) || !finite(p.LearningRate):
		return fmt.Errorf("%w: learning rate %v is not a positive finite number", ErrInvalidParams, p.LearningRate)
	case !(p.L2 >= 0) || !finite(p.L2):
		return fmt.Errorf("%w: l2 %v is not a non-negative finite number", ErrInvalidParams, p.L2)
	case p.ReferenceRecords < 0:
		return fmt.Errorf("%w: reference records %d < 0", ErrInvalidParams, p.ReferenceRecords)
	}
	return nil
}

// TrainDPSGD runs DP-SGD from global on (X, y) and returns the local weights; it does not modify
// global. Per step: Poisson-sample the batch (each row independently with probability q),
// compute each sampled row's log-loss gradient over all weights (intercept included), clip it to
// L2 norm C, sum, add N(0, (z*C)^2) to every coordinate, divide by q*ReferenceRecords or, when
// that is zero, by the expected batch size q*n (never the realised one, which would leak the
// batch size), add the L2 gradient, and step. All randomness (sampling and noise) is drawn from
// rng in a fixed order.
func TrainDPSGD(global []float64, X *mat.Dense, y []float64, p DPSGDParams, rng *rand.Rand) ([]float64, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("train dp-sgd: %w", err)
	}
	if rng == nil {
		return nil, fmt.Errorf("train dp-sgd: %w", ErrNilRand)
	}
	n, err := checkData(global, X, y)
	if err != nil {
		return nil, fmt.Errorf("train dp-sgd: %w", err)
	}

	rowNorms := augmentedRowNorms(X)
	w := slices.Clone(global)
	grad := make([]float64, len(w))
	noiseStd := p.NoiseMultiplier * p.ClipNorm
	denominator := p.SamplingRate * float64(n)
	if p.ReferenceRecords > 0 {
		denominator = p.SamplingRate * float64(p.ReferenceRecords)
	}
	for range p.Steps {
		clear(grad)
		for i := range n {
			if rng.Float64() >= p.SamplingRate {
				continue
			}
			addClippedGradient(grad, w, X.RawRowView(i), y[i], rowNorms[i], p.ClipNorm)
		}
		if noiseStd > 0 {
			for j := range grad {
				grad[j] += noiseStd * rng.NormFloat64()
			}
		}
		floats.Scale(1/denominator, grad)
		if p.L2 != 0 {
			floats.AddScaled(grad[1:], p.L2, w[1:])
		}
		floats.AddScaled(w, -p.LearningRate, grad)
	}
	if err := checkFinite(w); err != nil {
		return nil, fmt.Errorf("train dp-sgd: %w", err)
	}
	return w, nil
}

// augmentedRowNorms returns sqrt(1+||x_i||^2) for every row: a row's gradient is
// residual*(1, x), so its norm is |residual| times this, computed once for all steps.
func augmentedRowNorms(X *mat.Dense) []float64 {
	n, _ := X.Dims()
	norms := make([]float64, n)
	for i := range norms {
		row := X.RawRowView(i)
		norms[i] = math.Sqrt(1 + floats.Dot(row, row))
	}
	return norms
}

// addClippedGradient adds to sum the log-loss gradient of one record (row x with label y) at w,
// scaled down to L2 norm at most clip; rowNorm is sqrt(1+||x||^2). This bound is the whole of
// the privacy argument: every record adds at most clip to the sum the noise is calibrated to.
// So the check reads "not at most clip" rather than "above clip": a norm that is NaN or
// infinite (a row whose squared norm overflows) makes the record add nothing instead of an
// unbounded vector.
func addClippedGradient(sum, w, x []float64, y, rowNorm, clip float64) {
	residual := sigmoid(logit(w, x)) - y
	norm := math.Abs(residual) * rowNorm
	switch {
	case norm <= clip:
	case math.IsNaN(norm) || math.IsInf(norm, 0):
		return
	default:
		residual *= clip / norm
	}
	sum[0] += residual
	floats.AddScaled(sum[1:], residual, x)
}
