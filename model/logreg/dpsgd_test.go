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
	"gonum.org/v1/gonum/stat"

	"github.com/fedprop/fedprop/model/logreg"
)

func TestDPSGDParamsValidate(t *testing.T) {
	good := logreg.DPSGDParams{SamplingRate: 0.1, ClipNorm: 1, NoiseMultiplier: 1, Steps: 10, LearningRate: 0.1}
	require.NoError(t, good.Validate())
	noNoise := good
	noNoise.NoiseMultiplier = 0
	require.NoError(t, noNoise.Validate(), "z = 0 is allowed (no privacy, a baseline)")

	tests := map[string]func(p *logreg.DPSGDParams){
		"zero sampling rate":    func(p *logreg.DPSGDParams) { p.SamplingRate = 0 },
		"sampling rate above 1": func(p *logreg.DPSGDParams) { p.SamplingRate = 1.5 },
		"nan sampling rate":     func(p *logreg.DPSGDParams) { p.SamplingRate = math.NaN() },
		"zero clip":             func(p *logreg.DPSGDParams) { p.ClipNorm = 0 },
		"infinite clip":         func(p *logreg.DPSGDParams) { p.ClipNorm = math.Inf(1) },
		"negative noise":        func(p *logreg.DPSGDParams) { p.NoiseMultiplier = -1 },
		"zero steps":            func(p *logreg.DPSGDParams) { p.Steps = 0 },
		"zero learning rate":    func(p *logreg.DPSGDParams) { p.LearningRate = 0 },
		"negative l2":           func(p *logreg.DPSGDParams) { p.L2 = -0.1 },
		"negative reference":    func(p *logreg.DPSGDParams) { p.ReferenceRecords = -1 },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			p := good
			mutate(&p)
			assert.ErrorIs(t, p.Validate(), logreg.ErrInvalidParams)
		})
	}
}

// With q = 1, no noise and a clip no gradient reaches, DP-SGD is full-batch gradient descent on
// Objective.
func TestDPSGDWithoutPrivacyIsGradientDescent(t *testing.T) {
	X, y := syntheticData(20, 60, 3)
	global := []float64{0.1, -0.2, 0.3, 0}
	p := logreg.DPSGDParams{SamplingRate: 1, ClipNorm: 1e6, Steps: 15, LearningRate: 0.5, L2: 0.02}

	want := slices.Clone(global)
	for range p.Steps {
		floats.AddScaled(want, -p.LearningRate, objectiveGradient(want, X, y, p.L2))
	}
	got, err := logreg.TrainDPSGD(global, X, y, p, rand.New(rand.NewPCG(1, 1)))
	require.NoError(t, err)
	assert.InDeltaSlice(t, want, got, 1e-12)
	assert.Equal(t, []float64{0.1, -0.2, 0.3, 0}, global, "global must not be modified")
}

// Poisson sampling divided by the expected batch size q*n is an unbiased estimate of the full
// gradient: averaged over many seeds, one step matches one full-batch step.
func TestDPSGDPoissonSamplingIsUnbiased(t *testing.T) {
	X, y := syntheticData(21, 200, 2)
	global := []float64{0, 0.5, -0.5}
	p := logreg.DPSGDParams{SamplingRate: 0.3, ClipNorm: 1e6, Steps: 1, LearningRate: 1}
	want := slices.Clone(global)
	floats.AddScaled(want, -1, objectiveGradient(global, X, y, 0))

	const runs = 4000
	mean := make([]float64, 3)
	for seed := range uint64(runs) {
		w, err := logreg.TrainDPSGD(global, X, y, p, rand.New(rand.NewPCG(seed, 21)))
		require.NoError(t, err)
		floats.AddScaled(mean, 1.0/runs, w)
	}
	// The per-run standard deviation of a coordinate is below 0.05 here, so the mean of 4000
	// runs is within 0.003 with overwhelming probability, while dividing by n instead of q*n
	// would be off by 70% of a step of size ~0.1.
	assert.InDeltaSlice(t, want, mean, 0.003)
}

// With every per-example gradient exactly zero (the intercept saturates the sigmoid at p = 1 for
// positive rows whose features are all zero) a step moves the weights by the noise alone, so the
// weights' empirical standard deviation after S steps measures the noise scale:
// sqrt(S) * lr * z*C / (q*n).
func TestDPSGDNoiseScale(t *testing.T) {
	const n, dim, steps = 40, 10000, 50
	X := mat.NewDense(n, dim, nil)
	y := make([]float64, n)
	for i := range y {
		y[i] = 1
	}
	global := make([]float64, dim+1)
	global[0] = 1000
	p := logreg.DPSGDParams{SamplingRate: 0.25, ClipNorm: 2, NoiseMultiplier: 1.5, Steps: steps, LearningRate: 0.3}

	w, err := logreg.TrainDPSGD(global, X, y, p, rand.New(rand.NewPCG(22, 22)))
	require.NoError(t, err)
	moves := w[1:] // coefficients started at 0
	want := math.Sqrt(steps) * p.LearningRate * p.NoiseMultiplier * p.ClipNorm / (p.SamplingRate * n)
	assert.InDelta(t, 0, stat.Mean(moves, nil), 0.05*want)
	assert.InEpsilon(t, want, stat.StdDev(moves, nil), 0.03, "noise std must be z*C/(q*n) per step")
}

// With a tiny clip every example's gradient is cut to norm C. When all rows are identical their
// clipped gradients point the same way, so one full-batch step has norm exactly lr*C, against
// the direction of the raw gradient.
func TestDPSGDClipsPerExample(t *testing.T) {
	const n = 30
	row := []float64{2, -1, 0.5}
	data := make([]float64, 0, n*len(row))
	for range n {
		data = append(data, row...)
	}
	X := mat.NewDense(n, len(row), data)
	y := make([]float64, n)
	for i := range y {
		y[i] = 1
	}
	global := make([]float64, 4)
	p := logreg.DPSGDParams{SamplingRate: 1, ClipNorm: 1e-3, Steps: 1, LearningRate: 0.5}

	w, err := logreg.TrainDPSGD(global, X, y, p, rand.New(rand.NewPCG(23, 23)))
	require.NoError(t, err)
	assert.InDelta(t, p.LearningRate*p.ClipNorm, floats.Norm(w, 2), 1e-15)

	raw := objectiveGradient(global, X, y, 0)
	floats.Scale(-p.LearningRate*p.ClipNorm/floats.Norm(raw, 2), raw)
	assert.InDeltaSlice(t, raw, w, 1e-15)
}

func TestDPSGDIsReproducible(t *testing.T) {
	X, y := syntheticData(24, 100, 3)
	global := make([]float64, 4)
	p := logreg.DPSGDParams{SamplingRate: 0.2, ClipNorm: 1, NoiseMultiplier: 1.1, Steps: 20, LearningRate: 0.2, L2: 0.01}
	train := func(seed uint64) []float64 {
		w, err := logreg.TrainDPSGD(global, X, y, p, rand.New(rand.NewPCG(seed, 0)))
		require.NoError(t, err)
		return w
	}
	a, b := train(5), train(5)
	assert.True(t, slices.Equal(a, b), "same seed must give bit-identical weights")
	assert.False(t, slices.Equal(a, train(6)))
}

func TestTrainDPSGDRejectsBadInput(t *testing.T) {
	X, y := syntheticData(25, 10, 2)
	p := logreg.DPSGDParams{SamplingRate: 0.5, ClipNorm: 1, NoiseMultiplier: 1, Steps: 2, LearningRate: 0.1}
	rng := rand.New(rand.NewPCG(1, 1))
	_, err := logreg.TrainDPSGD([]float64{0, 0}, X, y, p, rng)
	assert.ErrorIs(t, err, logreg.ErrDimension)
	_, err = logreg.TrainDPSGD([]float64{0, 0, 0}, X, y, logreg.DPSGDParams{}, rng)
	assert.ErrorIs(t, err, logreg.ErrInvalidParams)
	_, err = logreg.TrainDPSGD([]float64{0, 0, 0}, X, y, p, nil)
	assert.ErrorIs(t, err, logreg.ErrNilRand)
}

// With ReferenceRecords the noised sum is divided by q*ReferenceRecords instead of q*n: the
// same trajectory as the legacy estimator when ReferenceRecords = n, and without noise a first
// step k times as long when the reference is k times smaller.
func TestDPSGDReferenceRecordsOnlyRescalesTheStep(t *testing.T) {
	X, y := syntheticData(26, 80, 3)
	global := []float64{0.2, -0.1, 0.3, 0.05}
	legacy := logreg.DPSGDParams{SamplingRate: 0.3, ClipNorm: 0.8, NoiseMultiplier: 1.2, Steps: 25, LearningRate: 0.4, L2: 0.01}
	train := func(p logreg.DPSGDParams, seed uint64) []float64 {
		w, err := logreg.TrainDPSGD(global, X, y, p, rand.New(rand.NewPCG(seed, 26)))
		require.NoError(t, err)
		return w
	}
	same := legacy
	same.ReferenceRecords = 80
	assert.InDeltaSlice(t, train(legacy, 1), train(same, 1), 1e-12, "ReferenceRecords = n is the legacy estimator")

	tests := []struct {
		name      string
		reference int
		factor    float64
	}{
		{name: "half the records", reference: 40, factor: 2},
		{name: "the records", reference: 80, factor: 1},
		{name: "four times the records", reference: 320, factor: 0.25},
	}
	full := logreg.DPSGDParams{SamplingRate: 1, ClipNorm: 0.5, Steps: 1, LearningRate: 0.3}
	base := train(full, 2)
	floats.Sub(base, global)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := full
			p.ReferenceRecords = tt.reference
			got := train(p, 2)
			floats.Sub(got, global)
			want := slices.Clone(base)
			floats.Scale(tt.factor, want)
			assert.InDeltaSlice(t, want, got, 1e-12)
		})
	}
}

// TestDPSGDOneRecordMovesAStepByAtMostItsBound pins what the accountant assumes from the
// outside: one record, however extreme, moves a noiseless step by at most lr*C/(q*R) for the
// reference R (or q*n without one), its clipped gradient over the public denominator.
func TestDPSGDOneRecordMovesAStepByAtMostItsBound(t *testing.T) {
	tests := []struct {
		name      string
		row       []float64
		y         float64
		reference int
	}{
		{name: "huge features, reference", row: []float64{1e5, -2e5}, y: 1, reference: 1000},
		{name: "huge features, own count", row: []float64{1e5, -2e5}, y: 0, reference: 0},
		{name: "ordinary row, reference", row: []float64{0.5, -0.2}, y: 1, reference: 7},
	}
	const q, clip, lr = 0.9, 0.7, 3.0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			X := mat.NewDense(1, len(tt.row), tt.row)
			global := []float64{0.1, 0.2, 0.3}
			p := logreg.DPSGDParams{SamplingRate: q, ClipNorm: clip, Steps: 1, LearningRate: lr, ReferenceRecords: tt.reference}
			records := float64(max(tt.reference, 1)) // one row: q*n = q
			bound := lr * clip / (q * records)
			for seed := range uint64(20) {
				w, err := logreg.TrainDPSGD(global, X, []float64{tt.y}, p, rand.New(rand.NewPCG(seed, 27)))
				require.NoError(t, err)
				floats.Sub(w, global)
				assert.LessOrEqual(t, floats.Norm(w, 2), bound*(1+1e-12))
			}
		})
	}
}

// The noise of a step on the ReferenceRecords denominator is sqrt(S)*lr*z*C/(q*R) after S
// steps, whatever the client's own record count: every client of a run adds the same noise.
func TestDPSGDNoiseScaleWithReference(t *testing.T) {
	const n, dim, steps, reference = 40, 10000, 50, 900
	X := mat.NewDense(n, dim, nil)
	y := make([]float64, n)
	for i := range y {
		y[i] = 1
	}
	global := make([]float64, dim+1)
	global[0] = 1000
	p := logreg.DPSGDParams{SamplingRate: 0.25, ClipNorm: 2, NoiseMultiplier: 1.5, Steps: steps, LearningRate: 0.3, ReferenceRecords: reference}

	w, err := logreg.TrainDPSGD(global, X, y, p, rand.New(rand.NewPCG(28, 28)))
	require.NoError(t, err)
	want := math.Sqrt(steps) * p.LearningRate * p.NoiseMultiplier * p.ClipNorm / (p.SamplingRate * reference)
	assert.InEpsilon(t, want, stat.StdDev(w[1:], nil), 0.03)
}
