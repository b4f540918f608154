// Package logreg is fedprop's first model kind: binary logistic regression on encoded feature
// rows, its local training (mini-batch SGD with optional L2 and FedProx proximal terms, and
// DP-SGD for record-level differential privacy) and a centralized L-BFGS fit used as the
// reference a federated model is compared with.
//
// Inputs are gonum matrices with one row per record, already standardised and one-hot encoded;
// labels are 0 or 1. Weights are a []float64 of length dim+1: index 0 is the intercept, then one
// coefficient per input column. Every source of randomness is an injected *rand.Rand, so the
// same seed gives bit-for-bit the same weights.
//
// Model joins weights with the dataset.Encoder their inputs come from: it is logistic
// regression as a model.Model, which scores, explains and describes raw dataset rows.
package logreg

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrInvalidParams marks hyperparameters that are out of range.
	ErrInvalidParams = errors.New("invalid training parameters")
	// ErrDimension marks weights, rows and labels whose sizes do not fit together.
	ErrDimension = errors.New("dimension mismatch")
	// ErrNoRows marks a training set without any row.
	ErrNoRows = errors.New("no training rows")
	// ErrLabel marks a label other than 0 or 1.
	ErrLabel = errors.New("label is not 0 or 1")
	// ErrNonFinite marks a NaN or infinite weight, in the input or produced by training
	// (a learning rate far too large makes SGD diverge).
	ErrNonFinite = errors.New("non-finite weight")
	// ErrNilRand marks a missing random source.
	ErrNilRand = errors.New("nil random source")
)

// Training hyperparameter defaults, applied by Params.WithDefaults to zero fields.
const (
	DefaultEpochs       = 1
	DefaultBatchSize    = 32
	DefaultLearningRate = 0.1
)

// Params are the local training hyperparameters a train task carries.
type Params struct {
	Epochs       int     `yaml:"epochs" json:"epochs"`               // passes over the local rows; default 1
	BatchSize    int     `yaml:"batch_size" json:"batch_size"`       // rows per SGD step; default 32
	LearningRate float64 `yaml:"learning_rate" json:"learning_rate"` // SGD step size; default 0.1
	// L2 is the penalty coefficient on the coefficients (not the intercept) in the objective
	// mean_loss + L2/2*||w[1:]||^2.
	L2 float64 `yaml:"l2" json:"l2"`
	// ProxMu is the FedProx proximal term mu/2*||w - w_global||^2 over all weights, intercept
	// included (0 = plain FedAvg local training).
	ProxMu float64 `yaml:"prox_mu" json:"prox_mu"`
}

// WithDefaults returns p with every zero Epochs, BatchSize and LearningRate replaced by its
// default. L2 and ProxMu stay as they are: zero means "no penalty".
func (p Params) WithDefaults() Params {
	if p.Epochs == 0 {
		p.Epochs = DefaultEpochs
	}
	if p.BatchSize == 0 {
		p.BatchSize = DefaultBatchSize
	}
	if p.LearningRate == 0 {
		p.LearningRate = DefaultLearningRate
	}
	return p
}

// Validate reports whether p, as given (call WithDefaults first to fill zeros), is usable:
// positive Epochs, BatchSize and LearningRate, non-negative L2 and ProxMu, all finite.
func (p Params) Validate() error {
	switch {
	case p.Epochs < 1:
		return fmt.Errorf("%w: epochs %d < 1", ErrInvalidParams, p.Epochs)
	case p.BatchSize < 1:
		return fmt.Errorf("%w: batch size %d < 1", ErrInvalidParams, p.BatchSize)
	case !(p.LearningRate > 0) || math.IsInf(p.LearningRate, 0):
		return fmt.Errorf("%w: learning rate %v is not a positive finite number", ErrInvalidParams, p.LearningRate)
	case !(p.L2 >= 0) || math.IsInf(p.L2, 0):
		return fmt.Errorf("%w: l2 %v is not a non-negative finite number", ErrInvalidParams, p.L2)
	case !(p.ProxMu >= 0) || math.IsInf(p.ProxMu, 0):
		return fmt.Errorf("%w: prox mu %v is not a non-negative finite number", ErrInvalidParams, p.ProxMu)
	}
	return nil
}

// CheckWeights reports whether w fits rows of dim columns (len(w) == dim+1) and is finite.
// Call it on weights that arrive from outside the process before Predict or PredictAll, which
// treat a mismatch as a programming error.
func CheckWeights(w []float64, dim int) error {
	if len(w) != dim+1 {
		return fmt.Errorf("%w: %d weights for %d input columns (want %d)", ErrDimension, len(w), dim, dim+1)
	}
	for i, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: weight %d is %v", ErrNonFinite, i, v)
		}
	}
	return nil
}

// Predict returns the predicted probability sigmoid(w[0] + w[1:]·x), computed without overflow
// for logits of any size. It panics if len(w) != len(x)+1 (see CheckWeights).
func Predict(w []float64, x []float64) float64 {
	return sigmoid(logit(w, x))
}

// PredictAll writes the predicted probability of every row of X to dst, reusing dst when its
// capacity suffices, and returns it (of length rows). It panics if len(w) != cols+1.
func PredictAll(w []float64, X *mat.Dense, dst []float64) []float64 {
	n, d := X.Dims()
	if len(w) != d+1 {
		panic(fmt.Sprintf("model: %d weights for %d columns", len(w), d))
	}
	if cap(dst) < n {
		dst = make([]float64, n)
	}
	dst = dst[:n]
	if n == 0 {
		return dst
	}
	z := mat.NewVecDense(n, dst)
	z.MulVec(X, mat.NewVecDense(d, w[1:]))
	for i := range dst {
		dst[i] = sigmoid(w[0] + dst[i])
	}
	return dst
}

// logit is w[0] + w[1:]·x.
func logit(w, x []float64) float64 {
	return w[0] + floats.Dot(w[1:], x)
}

// sigmoid is 1/(1+exp(-z)), evaluated on the side where exp cannot overflow.
func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// logLossFromLogit is the log loss of label y for logit z, -y*log(p) - (1-y)*log(1-p) with
// p = sigmoid(z), written as softplus(z) - y*z so that it is exact even where p rounds to 0 or 1.
func logLossFromLogit(z, y float64) float64 {
	return math.Max(z, 0) + math.Log1p(math.Exp(-math.Abs(z))) - y*z
}

// checkData validates the shapes of a training problem and the labels, returning the row count.
func checkData(w []float64, X *mat.Dense, y []float64) (int, error) {
	if X == nil || X.IsEmpty() {
		return 0, ErrNoRows
	}
	n, d := X.Dims()
	if len(y) != n {
		return 0, fmt.Errorf("%w: %d labels for %d rows", ErrDimension, len(y), n)
	}
	if err := CheckWeights(w, d); err != nil {
		return 0, err
	}
	for i, v := range y {
		if v != 0 && v != 1 {
			return 0, fmt.Errorf("%w: row %d has label %v", ErrLabel, i, v)
		}
	}
	return n, nil
}

// checkFinite reports the first non-finite weight of a training result.
func checkFinite(w []float64) error {
	for i, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: weight %d became %v (learning rate too large?)", ErrNonFinite, i, v)
		}
	}
	return nil
}
