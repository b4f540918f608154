package metrics_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/metrics"
)

// TestOneRecordStaysWithinItsRecordBound adds one extreme record at a time (confidently wrong
// in both directions, right, on a bin edge) and checks that it changes at most Touched values,
// each by at most its bound: the premise of the noise's calibration.
func TestOneRecordStaysWithinItsRecordBound(t *testing.T) {
	const bins = 20
	rb := metrics.EvalSumsRecordBound(bins)
	require.Len(t, rb.Bounds, 5+2*bins)
	assert.Equal(t, 6, rb.Touched)
	for _, row := range []struct{ score, label float64 }{{0, 1}, {1, 0}, {1e-300, 1}, {0.5, 1}, {0.05, 0}, {0.999, 1}} {
		e := metrics.NewEvalSums(bins)
		e.AddWeighted([]float64{row.score}, []float64{row.label}, 1, metrics.MaxRowLogLoss)
		changed := 0
		for i, v := range e.Vector() {
			if v != 0 {
				changed++
			}
			assert.LessOrEqual(t, math.Abs(v), rb.Bounds[i], "value %d of row %+v", i, row)
		}
		assert.LessOrEqual(t, changed, rb.Touched, "row %+v", row)
	}
	e := metrics.NewEvalSums(bins)
	e.AddWeighted([]float64{0}, []float64{1}, 1, 0)
	assert.Greater(t, e.LogLossSum, metrics.MaxRowLogLoss, "uncapped, one wrong row adds far more")
}

// TestAWeightOfOneOverNCountsAClientOnce: n rows at weight 1/n add up to what one row adds.
func TestAWeightOfOneOverNCountsAClientOnce(t *testing.T) {
	scores, labels := randomScores(3, 400, 1000)
	e := metrics.NewEvalSums(20)
	e.AddWeighted(scores, labels, 1.0/400, metrics.MaxRowLogLoss)
	assert.InDelta(t, 1, e.N, 1e-12)
	var hist float64
	for b := range e.Bins {
		hist += e.PosHist[b] + e.NegHist[b]
	}
	assert.InDelta(t, 1, hist, 1e-12)
	plain := metrics.NewEvalSums(20)
	plain.AddScores(scores, labels)
	assert.InDelta(t, plain.Summary().AUC, e.Summary().AUC, 1e-12, "weights change no ratio")
}

func TestNoiseScalesGiveEveryValueTheSameNoiseRelativeToItsBound(t *testing.T) {
	a := metrics.RecordBound{Bounds: []float64{1, 2}, Touched: 2}
	b := metrics.RecordBound{Bounds: []float64{0.5}, Touched: 7}
	got := metrics.NoiseScales(a, b)
	assert.Equal(t, []float64{3, 6, 1.5}, got, "sqrt(2+7) = 3 times each bound")
}

func TestClampedUndoesWhatNoiseMakesImpossible(t *testing.T) {
	e := metrics.NewEvalSums(3)
	e.N, e.Positives, e.LogLossSum, e.BrierSum, e.Correct = 10, 12, -1, 2, -3
	e.PosHist = []float64{-2, 5, 7}
	e.NegHist = []float64{1, -0.5, 0}
	c := e.Clamped()
	assert.Equal(t, 10.0, c.Positives)
	assert.Equal(t, 0.0, c.LogLossSum)
	assert.Equal(t, 0.0, c.Correct)
	assert.Equal(t, []float64{0, 5, 7}, c.PosHist)
	assert.Equal(t, []float64{1, 0, 0}, c.NegHist)
	assert.Equal(t, -2.0, e.PosHist[0], "the input is left alone")
}

// TestAUCNoiseStdPredictsTheSpreadOfANoisedAUC: noise of a known std on every count of a
// histogram moves its AUC by about what AUCNoiseStd says.
func TestAUCNoiseStdPredictsTheSpreadOfANoisedAUC(t *testing.T) {
	scores, labels := randomScores(5, 20000, 1000)
	e := metrics.NewEvalSums(20)
	e.AddScores(scores, labels)
	const sigma = 30
	want := e.AUCNoiseStd(sigma)
	rng := rand.New(rand.NewPCG(1, 2))
	base := e.Summary().AUC
	var sq float64
	const draws = 2000
	for range draws {
		n := metrics.NewEvalSums(20)
		for b := range n.Bins {
			n.PosHist[b] = e.PosHist[b] + sigma*rng.NormFloat64()
			n.NegHist[b] = e.NegHist[b] + sigma*rng.NormFloat64()
		}
		d := n.Summary().AUC - base
		sq += d * d
	}
	got := math.Sqrt(sq / draws)
	assert.InEpsilon(t, want, got, 0.1, "predicted %v, measured %v", want, got)
	assert.True(t, math.IsNaN(metrics.NewEvalSums(4).AUCNoiseStd(1)), "no rows: undefined")
}

func TestVectorBinsReadsTheBinsOffTheLength(t *testing.T) {
	for _, bins := range []int{1, 20, 2000} {
		assert.Equal(t, bins, metrics.VectorBins(len(metrics.NewEvalSums(bins).Vector())))
	}
	for _, n := range []int{0, 5, 6, 8} {
		assert.Zero(t, metrics.VectorBins(n), "%d values", n)
	}
}
