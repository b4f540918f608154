package synth_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/integrate"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
	"gonum.org/v1/gonum/stat"

	"github.com/fedprop/fedprop/dataset"
)

// auc is the area under the ROC curve of scores against labels.
func auc(scores, labels []float64) float64 {
	y := append([]float64(nil), scores...)
	classes := make([]bool, len(labels))
	for i, l := range labels {
		classes[i] = l == 1
	}
	stat.SortWeightedLabeled(y, classes, nil)
	tpr, fpr, _ := stat.ROC(nil, y, classes, nil)
	return integrate.Trapezoidal(fpr, tpr)
}

// fittedLogistic fits an L2-regularised logistic regression (the centralised reference
// model) on train, standardised with train's own statistics, and returns its scores on
// test.
func fittedLogistic(t *testing.T, train, test *dataset.Dataset) []float64 {
	t.Helper()
	st, err := train.Stats().Standardization()
	require.NoError(t, err)
	enc, err := dataset.NewEncoder(train.Schema, st)
	require.NoError(t, err)
	x := enc.Encode(train)
	n, dim := x.Dims()
	const lambda = 1e-4
	problem := optimize.Problem{
		Func: func(w []float64) float64 {
			z := mat.NewVecDense(n, nil)
			z.MulVec(x, mat.NewVecDense(dim, w[1:]))
			loss := 0.0
			for i := range n {
				zi := z.AtVec(i) + w[0]
				// log(1+e^z) - y z, computed stably
				loss += math.Max(zi, 0) + math.Log1p(math.Exp(-math.Abs(zi))) - train.Label[i]*zi
			}
			return loss/float64(n) + lambda/2*floats.Dot(w[1:], w[1:])
		},
		Grad: func(grad, w []float64) {
			z := mat.NewVecDense(n, nil)
			z.MulVec(x, mat.NewVecDense(dim, w[1:]))
			r := make([]float64, n)
			for i := range n {
				r[i] = (1/(1+math.Exp(-(z.AtVec(i)+w[0]))) - train.Label[i]) / float64(n)
			}
			grad[0] = floats.Sum(r)
			g := mat.NewVecDense(dim, grad[1:])
			g.MulVec(x.T(), mat.NewVecDense(n, r))
			floats.AddScaled(grad[1:], lambda, w[1:])
		},
	}
	res, err := optimize.Minimize(problem, make([]float64, dim+1), &optimize.Settings{GradientThreshold: 1e-7}, &optimize.LBFGS{})
	require.NoError(t, err)
	w := res.X
	scores := make([]float64, test.Len())
	row := make([]float64, dim)
	for i := range scores {
		enc.EncodeRow(test, i, row)
		scores[i] = w[0] + floats.Dot(w[1:], row)
	}
	return scores
}
