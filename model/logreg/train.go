package logreg

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
)

// TrainSGD runs mini-batch SGD from global on (X, y), shuffling each epoch with rng, and
// returns the local weights and the mean training loss of the last epoch. It does not modify
// global.
//
// Each step moves against the gradient of the batch's mean log loss plus L2*w[1:] plus
// ProxMu*(w - global). The returned loss is the mean log loss (without penalty terms) of every
// row of the last epoch, each taken at the weights in force when its batch was processed, the
// figure training logs usually report. Zero fields of p take their defaults (Params.WithDefaults).
func TrainSGD(global []float64, X *mat.Dense, y []float64, p Params, rng *rand.Rand) (local []float64, loss float64, err error) {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return nil, 0, fmt.Errorf("train sgd: %w", err)
	}
	if rng == nil {
		return nil, 0, fmt.Errorf("train sgd: %w", ErrNilRand)
	}
	n, err := checkData(global, X, y)
	if err != nil {
		return nil, 0, fmt.Errorf("train sgd: %w", err)
	}

	w := slices.Clone(global)
	grad := make([]float64, len(w))
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	var lossSum float64
	for range p.Epochs {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		lossSum = 0
		for start := 0; start < n; start += p.BatchSize {
			batch := order[start:min(start+p.BatchSize, n)]
			clear(grad)
			for _, i := range batch {
				row := X.RawRowView(i)
				z := logit(w, row)
				lossSum += logLossFromLogit(z, y[i])
				residual := sigmoid(z) - y[i]
				grad[0] += residual
				floats.AddScaled(grad[1:], residual, row)
			}
			floats.Scale(1/float64(len(batch)), grad)
			if p.L2 != 0 {
				floats.AddScaled(grad[1:], p.L2, w[1:])
			}
			if p.ProxMu != 0 {
				for j := range grad {
					grad[j] += p.ProxMu * (w[j] - global[j])
				}
			}
			floats.AddScaled(w, -p.LearningRate, grad)
		}
	}
	if err := checkFinite(w); err != nil {
		return nil, 0, fmt.Errorf("train sgd: %w", err)
	}
	return w, lossSum / float64(n), nil
}

// Objective returns mean log loss + l2/2*||w[1:]||^2 of w on (X, y) and, when grad is not nil,
// writes its gradient to grad (len(w)). It is the function FitCentralized minimises and the one
// TrainSGD descends stochastically (without the proximal term). It panics on mismatched sizes;
// it is meant for data that has passed the checks of TrainSGD or FitCentralized.
func Objective(w []float64, X *mat.Dense, y []float64, l2 float64, grad []float64) float64 {
	n, d := X.Dims()
	if len(w) != d+1 || len(y) != n || (grad != nil && len(grad) != len(w)) {
		panic(fmt.Sprintf("model: objective with %d weights, %d gradient slots, %d labels for a %dx%d matrix", len(w), len(grad), len(y), n, d))
	}
	z := mat.NewVecDense(n, nil)
	z.MulVec(X, mat.NewVecDense(d, w[1:]))
	logits := z.RawVector().Data
	var lossSum float64
	for i, zi := range logits {
		zi += w[0]
		lossSum += logLossFromLogit(zi, y[i])
		// Reuse the buffer for the scaled residuals the gradient needs.
		logits[i] = (sigmoid(zi) - y[i]) / float64(n)
	}
	coef := w[1:]
	value := lossSum/float64(n) + l2/2*floats.Dot(coef, coef)
	if grad != nil {
		grad[0] = floats.Sum(logits)
		g := mat.NewVecDense(d, grad[1:])
		g.MulVec(X.T(), z)
		floats.AddScaled(grad[1:], l2, coef)
	}
	return value
}

// Convergence settings of FitCentralized. The gradient threshold is far below scikit-learn's
// lbfgs default tolerance (1e-4), so the fit is at least as converged as its reference.
const (
	centralGradientTol = 1e-8
	centralMaxIter     = 10000
)

// FitCentralized trains the same model on pooled rows to convergence with gonum/optimize's
// L-BFGS, starting from zero weights, and returns the minimiser of Objective with penalty l2.
// It is the centralized reference and agrees with scikit-learn's LogisticRegression(C) when
// l2 = 1/(C*n), n being the number of rows.
func FitCentralized(X *mat.Dense, y []float64, l2 float64) ([]float64, error) {
	if !(l2 >= 0) || math.IsInf(l2, 0) {
		return nil, fmt.Errorf("fit centralized: %w: l2 %v is not a non-negative finite number", ErrInvalidParams, l2)
	}
	var d int
	if X != nil && !X.IsEmpty() {
		_, d = X.Dims()
	}
	w0 := make([]float64, d+1)
	if _, err := checkData(w0, X, y); err != nil {
		return nil, fmt.Errorf("fit centralized: %w", err)
	}
	problem := optimize.Problem{
		Func: func(w []float64) float64 { return Objective(w, X, y, l2, nil) },
		Grad: func(grad, w []float64) { Objective(w, X, y, l2, grad) },
	}
	settings := &optimize.Settings{
		GradientThreshold: centralGradientTol,
		MajorIterations:   centralMaxIter,
		// Stop only on the gradient: the default converger would also stop when the objective
		// stalls for 100 iterations, which is not convergence.
		Converger: optimize.NeverTerminate{},
	}
	result, err := optimize.Minimize(problem, w0, settings, &optimize.LBFGS{})
	if err != nil {
		// A line search can fail in the last digits once the gradient is at rounding level;
		// the point is then converged for every practical purpose.
		linesearch := errors.Is(err, optimize.ErrLinesearcherFailure) || errors.Is(err, optimize.ErrNoProgress)
		if result == nil || !linesearch || gradientNorm(result.X, X, y, l2) > 1e-6 {
			return nil, fmt.Errorf("fit centralized: l-bfgs: %w", err)
		}
	} else if result.Status != optimize.GradientThreshold {
		return nil, fmt.Errorf("fit centralized: l-bfgs stopped with status %v before converging", result.Status)
	}
	return slices.Clone(result.X), nil
}

// gradientNorm is the infinity norm of the Objective gradient at w.
func gradientNorm(w []float64, X *mat.Dense, y []float64, l2 float64) float64 {
	grad := make([]float64, len(w))
	Objective(w, X, y, l2, grad)
	return floats.Norm(grad, math.Inf(1))
}
