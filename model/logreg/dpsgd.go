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
	}
	return nil
}

// TrainDPSGD runs DP-SGD from global on (X, y) and returns the local weights; it does not modify
// global. Per step: Poisson-sample the batch (each row independently with probability q),
// compute each sampled row's log-loss gradient over all weights (intercept included), clip it to
// L2 norm C, sum, add N(0, (z*C)^2) to every coordinate, divide by the expected batch size q*n
// (not the realised one, which would leak the batch size), add the L2 gradient, and step.
// All randomness (sampling and noise) is drawn from rng in a fixed order.
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

	// A row's gradient is residual*(1, x), so its norm is |residual|*sqrt(1+||x||^2): the row
	// part is computed once.
	rowNorms := make([]float64, n)
	for i := range rowNorms {
		row := X.RawRowView(i)
		rowNorms[i] = math.Sqrt(1 + floats.Dot(row, row))
	}
	w := slices.Clone(global)
	grad := make([]float64, len(w))
	noiseStd := p.NoiseMultiplier * p.ClipNorm
	expectedBatch := p.SamplingRate * float64(n)
	for range p.Steps {
		clear(grad)
		for i := range n {
			if rng.Float64() >= p.SamplingRate {
				continue
			}
			row := X.RawRowView(i)
			residual := sigmoid(logit(w, row)) - y[i]
			if norm := math.Abs(residual) * rowNorms[i]; norm > p.ClipNorm {
				residual *= p.ClipNorm / norm
			}
			grad[0] += residual
			floats.AddScaled(grad[1:], residual, row)
		}
		if noiseStd > 0 {
			for j := range grad {
				grad[j] += noiseStd * rng.NormFloat64()
			}
		}
		floats.Scale(1/expectedBatch, grad)
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
