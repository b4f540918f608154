package logreg_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/model/logreg"
)

// syntheticData draws n standard-normal rows of d columns and labels from a logistic model with
// known weights, so that the problem has signal but is not separable.
func syntheticData(seed uint64, n, d int) (*mat.Dense, []float64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	truth := make([]float64, d+1)
	for j := range truth {
		truth[j] = rng.NormFloat64()
	}
	data := make([]float64, n*d)
	for i := range data {
		data[i] = rng.NormFloat64()
	}
	X := mat.NewDense(n, d, data)
	y := make([]float64, n)
	for i := range y {
		if rng.Float64() < logreg.Predict(truth, X.RawRowView(i)) {
			y[i] = 1
		}
	}
	return X, y
}

func objectiveGradient(w []float64, X *mat.Dense, y []float64, l2 float64) []float64 {
	grad := make([]float64, len(w))
	logreg.Objective(w, X, y, l2, grad)
	return grad
}

func TestParamsDefaultsAndValidation(t *testing.T) {
	assert.Equal(t, logreg.Params{Epochs: 1, BatchSize: 32, LearningRate: 0.1}, logreg.Params{}.WithDefaults())
	set := logreg.Params{Epochs: 3, BatchSize: 8, LearningRate: 0.5, L2: 0.01, ProxMu: 0.1}
	assert.Equal(t, set, set.WithDefaults())
	require.NoError(t, set.Validate())

	for name, p := range map[string]logreg.Params{
		"zero epochs":       {BatchSize: 1, LearningRate: 0.1},
		"negative batch":    {Epochs: 1, BatchSize: -1, LearningRate: 0.1},
		"zero rate":         {Epochs: 1, BatchSize: 1},
		"nan rate":          {Epochs: 1, BatchSize: 1, LearningRate: math.NaN()},
		"infinite rate":     {Epochs: 1, BatchSize: 1, LearningRate: math.Inf(1)},
		"negative l2":       {Epochs: 1, BatchSize: 1, LearningRate: 0.1, L2: -1},
		"nan prox mu":       {Epochs: 1, BatchSize: 1, LearningRate: 0.1, ProxMu: math.NaN()},
		"negative prox mu":  {Epochs: 1, BatchSize: 1, LearningRate: 0.1, ProxMu: -0.1},
		"infinite l2 value": {Epochs: 1, BatchSize: 1, LearningRate: 0.1, L2: math.Inf(1)},
	} {
		t.Run(name, func(t *testing.T) {
			assert.ErrorIs(t, p.Validate(), logreg.ErrInvalidParams)
		})
	}
}

func TestPredict(t *testing.T) {
	tests := []struct {
		name string
		w, x []float64
		want float64
	}{
		{"zero logit", []float64{0, 1}, []float64{0}, 0.5},
		{"intercept only", []float64{math.Log(3), 0, 0}, []float64{5, -5}, 0.75},
		{"coefficients", []float64{-1, 2, 0.5}, []float64{1, -2}, 0.5},
		{"huge positive logit", []float64{1000, 0}, []float64{0}, 1},
		{"huge negative logit", []float64{-1000, 0}, []float64{0}, 0},
		{"moderate negative logit", []float64{-2, 0}, []float64{3}, 1 / (1 + math.Exp(2))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := logreg.Predict(tt.w, tt.x)
			assert.False(t, math.IsNaN(got))
			assert.InDelta(t, tt.want, got, 1e-15)
		})
	}
}

func TestPredictAllMatchesPredict(t *testing.T) {
	X, _ := syntheticData(1, 50, 4)
	w := []float64{0.3, -1, 2, 0.5, -0.25}
	got := logreg.PredictAll(w, X, nil)
	require.Len(t, got, 50)
	for i, p := range got {
		assert.InDelta(t, logreg.Predict(w, X.RawRowView(i)), p, 1e-15, "row %d", i)
	}
	buf := make([]float64, 3, 64)
	reused := logreg.PredictAll(w, X, buf)
	assert.Same(t, &buf[:1][0], &reused[0], "a large enough dst is reused")
	assert.Equal(t, got, reused)
}

func TestCheckWeights(t *testing.T) {
	require.NoError(t, logreg.CheckWeights([]float64{0, 1, 2}, 2))
	assert.ErrorIs(t, logreg.CheckWeights([]float64{0, 1}, 2), logreg.ErrDimension)
	assert.ErrorIs(t, logreg.CheckWeights([]float64{0, math.Inf(-1), 2}, 2), logreg.ErrNonFinite)
	assert.ErrorIs(t, logreg.CheckWeights([]float64{math.NaN(), 1, 2}, 2), logreg.ErrNonFinite)
}

func TestObjectiveByHand(t *testing.T) {
	// Logits +1 and -1, both classified right: each row loses log(1+e^-1).
	X := mat.NewDense(2, 1, []float64{1, -1})
	y := []float64{1, 0}
	w := []float64{0, 1}
	grad := make([]float64, 2)
	got := logreg.Objective(w, X, y, 0.5, grad)
	assert.InDelta(t, math.Log1p(math.Exp(-1))+0.5/2*1, got, 1e-15)
	// Residuals sigmoid(1)-1 and sigmoid(-1)-0 cancel for the intercept and add up for the
	// coefficient: (2*(1-sigmoid(1)))*(-1)/2 + l2*w1.
	s := 1 / (1 + math.Exp(-1))
	assert.InDelta(t, 0, grad[0], 1e-15)
	assert.InDelta(t, -(1-s)+0.5, grad[1], 1e-15)
}

func TestObjectiveGradientMatchesFiniteDifferences(t *testing.T) {
	X, y := syntheticData(2, 200, 5)
	rng := rand.New(rand.NewPCG(3, 3))
	for _, l2 := range []float64{0, 0.01, 1.5} {
		w := make([]float64, 6)
		for j := range w {
			w[j] = rng.NormFloat64()
		}
		grad := objectiveGradient(w, X, y, l2)
		const h = 1e-6
		for j := range w {
			plus, minus := slices.Clone(w), slices.Clone(w)
			plus[j] += h
			minus[j] -= h
			numeric := (logreg.Objective(plus, X, y, l2, nil) - logreg.Objective(minus, X, y, l2, nil)) / (2 * h)
			assert.InDelta(t, numeric, grad[j], 1e-7, "l2 %v, coordinate %d", l2, j)
		}
	}
}

func TestTrainSGDLowersObjective(t *testing.T) {
	X, y := syntheticData(4, 500, 6)
	global := make([]float64, 7)
	tests := []struct {
		name string
		p    logreg.Params
	}{
		{"defaults", logreg.Params{}},
		{"single-row batches", logreg.Params{BatchSize: 1, LearningRate: 0.05}},
		{"full batch several epochs", logreg.Params{Epochs: 20, BatchSize: 500, LearningRate: 1}},
		{"l2 and prox", logreg.Params{Epochs: 3, L2: 0.01, ProxMu: 0.1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := logreg.Objective(global, X, y, tt.p.L2, nil)
			local, loss, err := logreg.TrainSGD(global, X, y, tt.p, rand.New(rand.NewPCG(5, 5)))
			require.NoError(t, err)
			after := logreg.Objective(local, X, y, tt.p.L2, nil)
			assert.Less(t, after, before-0.1, "objective %v -> %v", before, after)
			assert.Greater(t, loss, 0.0)
			assert.Less(t, loss, math.Log(2))
			assert.Equal(t, make([]float64, 7), global, "global must not be modified")
		})
	}
}

func TestTrainSGDFullBatchStepsByHand(t *testing.T) {
	// With one batch holding every row, the shuffle only reorders a sum, so two epochs are two
	// plain gradient steps; the second one feels the proximal pull towards global.
	X, y := syntheticData(6, 40, 3)
	global := []float64{0.2, -0.5, 0.1, 0.3}
	p := logreg.Params{Epochs: 2, BatchSize: 40, LearningRate: 0.7, L2: 0.05, ProxMu: 0.3}

	w1 := slices.Clone(global)
	floats.AddScaled(w1, -p.LearningRate, objectiveGradient(global, X, y, p.L2))
	step := objectiveGradient(w1, X, y, p.L2)
	for j := range step {
		step[j] += p.ProxMu * (w1[j] - global[j])
	}
	w2 := slices.Clone(w1)
	floats.AddScaled(w2, -p.LearningRate, step)

	local, loss, err := logreg.TrainSGD(global, X, y, p, rand.New(rand.NewPCG(7, 7)))
	require.NoError(t, err)
	assert.InDeltaSlice(t, w2, local, 1e-12)
	assert.InDelta(t, logreg.Objective(w1, X, y, 0, nil), loss, 1e-12, "loss is the last epoch's mean log loss")
}

func TestTrainSGDIsReproducible(t *testing.T) {
	X, y := syntheticData(8, 300, 4)
	global := []float64{0.1, 0, 0, 0, 0}
	p := logreg.Params{Epochs: 2, BatchSize: 16}
	train := func(seed uint64) []float64 {
		local, _, err := logreg.TrainSGD(global, X, y, p, rand.New(rand.NewPCG(seed, 0)))
		require.NoError(t, err)
		return local
	}
	a, b := train(9), train(9)
	assert.True(t, slices.Equal(a, b), "same seed must give bit-identical weights")
	assert.False(t, slices.Equal(a, train(10)), "another seed shuffles differently")
}

func TestTrainSGDRejectsBadInput(t *testing.T) {
	X, y := syntheticData(11, 20, 2)
	good := []float64{0, 0, 0}
	rng := func() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
	badLabels := slices.Clone(y)
	badLabels[3] = 2
	tests := []struct {
		name   string
		global []float64
		X      *mat.Dense
		y      []float64
		p      logreg.Params
		rng    *rand.Rand
		want   error
	}{
		{"short weights", []float64{0, 0}, X, y, logreg.Params{}, rng(), logreg.ErrDimension},
		{"label count", good, X, y[:19], logreg.Params{}, rng(), logreg.ErrDimension},
		{"label value", good, X, badLabels, logreg.Params{}, rng(), logreg.ErrLabel},
		{"nan weight", []float64{0, math.NaN(), 0}, X, y, logreg.Params{}, rng(), logreg.ErrNonFinite},
		{"empty matrix", good, &mat.Dense{}, nil, logreg.Params{}, rng(), logreg.ErrNoRows},
		{"nil matrix", good, nil, nil, logreg.Params{}, rng(), logreg.ErrNoRows},
		{"bad params", good, X, y, logreg.Params{LearningRate: -1}, rng(), logreg.ErrInvalidParams},
		{"nil rng", good, X, y, logreg.Params{}, nil, logreg.ErrNilRand},
		{"divergence", good, X, y, logreg.Params{Epochs: 400, LearningRate: 10, L2: 1}, rng(), logreg.ErrNonFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := logreg.TrainSGD(tt.global, tt.X, tt.y, tt.p, tt.rng)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func TestFitCentralizedConverges(t *testing.T) {
	X, y := syntheticData(12, 1000, 5)
	const l2 = 0.001
	w, err := logreg.FitCentralized(X, y, l2)
	require.NoError(t, err)
	assert.Less(t, floats.Norm(objectiveGradient(w, X, y, l2), math.Inf(1)), 1e-6)

	sgd, _, err := logreg.TrainSGD(make([]float64, 6), X, y, logreg.Params{Epochs: 30, L2: l2}, rand.New(rand.NewPCG(1, 1)))
	require.NoError(t, err)
	assert.LessOrEqual(t, logreg.Objective(w, X, y, l2, nil), logreg.Objective(sgd, X, y, l2, nil))

	_, err = logreg.FitCentralized(X, y, -1)
	assert.ErrorIs(t, err, logreg.ErrInvalidParams)
	_, err = logreg.FitCentralized(X, y[:10], l2)
	assert.ErrorIs(t, err, logreg.ErrDimension)
	_, err = logreg.FitCentralized(nil, nil, l2)
	assert.ErrorIs(t, err, logreg.ErrNoRows)
}
