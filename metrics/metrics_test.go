package metrics_test

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/metrics"
)

// bruteForceAUC counts every positive/negative pair, the definition AUC must agree with.
func bruteForceAUC(scores, labels []float64) float64 {
	var wins, pairs float64
	for i := range scores {
		for j := range scores {
			if labels[i] != 1 || labels[j] != 0 {
				continue
			}
			pairs++
			switch {
			case scores[i] > scores[j]:
				wins++
			case scores[i] == scores[j]:
				wins += 0.5
			}
		}
	}
	return wins / pairs
}

// randomScores draws labels with a positive rate of about 0.2 and scores that lean towards the
// label, rounded to `levels` distinct values so that ties occur.
func randomScores(seed uint64, n int, levels float64) (scores, labels []float64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	scores, labels = make([]float64, n), make([]float64, n)
	for i := range scores {
		if rng.Float64() < 0.2 {
			labels[i] = 1
		}
		s := min(max(0.3*labels[i]+0.7*rng.Float64(), 0), 1)
		scores[i] = math.Round(s*levels) / levels
	}
	return scores, labels
}

func TestAUCByHand(t *testing.T) {
	tests := []struct {
		name           string
		scores, labels []float64
		want           float64
	}{
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []float64{0, 0, 1, 1}, 1},
		{"reversed", []float64{0.9, 0.8, 0.2, 0.1}, []float64{0, 0, 1, 1}, 0},
		{"scikit-learn example", []float64{0.1, 0.4, 0.35, 0.8}, []float64{0, 0, 1, 1}, 0.75},
		{"a tie counts half", []float64{0.5, 0.5, 0.2, 0.9}, []float64{1, 0, 0, 1}, 3.5 / 4},
		{"all tied", []float64{0.3, 0.3, 0.3}, []float64{1, 0, 1}, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.InDelta(t, tt.want, metrics.AUC(tt.scores, tt.labels), 1e-15)
		})
	}
	assert.True(t, math.IsNaN(metrics.AUC([]float64{0.1, 0.2}, []float64{1, 1})), "one class has no AUC")
	assert.True(t, math.IsNaN(metrics.AUC(nil, nil)))
}

func TestAUCMatchesPairCount(t *testing.T) {
	for seed := range uint64(5) {
		scores, labels := randomScores(seed, 700, 40)
		assert.InDelta(t, bruteForceAUC(scores, labels), metrics.AUC(scores, labels), 1e-12)
	}
}

func TestEvaluateByHand(t *testing.T) {
	scores := []float64{0.9, 0.5, 0, 0.2}
	labels := []float64{1, 1, 1, 0}
	got := metrics.Evaluate(scores, labels)
	assert.Equal(t, 4.0, got.N)
	// A score of exactly 0.5 is predicted negative (scikit-learn's predict); the 0 score is
	// clamped to 1e-15 before the log.
	assert.InDelta(t, 2.0/4, got.Accuracy, 1e-15)
	wantLogLoss := -(math.Log(0.9) + math.Log(0.5) + math.Log(1e-15) + math.Log(0.8)) / 4
	assert.InDelta(t, wantLogLoss, got.LogLoss, 1e-12)
	assert.InDelta(t, wantLogLoss, metrics.LogLoss(scores, labels), 1e-12)
	assert.InDelta(t, (0.01+0.25+1+0.04)/4, got.Brier, 1e-15)
	assert.InDelta(t, 2.0/3, got.AUC, 1e-15)
}

func TestEvalSumsMatchesEvaluate(t *testing.T) {
	scores, labels := randomScores(1, 2000, 1e6)
	exact := metrics.Evaluate(scores, labels)
	for _, bins := range []int{1, 10, 100, metrics.DefaultBins} {
		sums := metrics.NewEvalSums(bins)
		sums.AddScores(scores, labels)
		got := sums.Summary()
		assert.Equal(t, exact.N, got.N)
		assert.InDelta(t, exact.LogLoss, got.LogLoss, 1e-12)
		assert.InDelta(t, exact.Accuracy, got.Accuracy, 1e-15)
		assert.InDelta(t, exact.Brier, got.Brier, 1e-15)
		bound := sums.AUCErrorBound()
		assert.LessOrEqual(t, math.Abs(got.AUC-exact.AUC), bound+1e-15, "bins %d", bins)
	}
	one := metrics.NewEvalSums(1)
	one.AddScores(scores, labels)
	assert.InDelta(t, 0.5, one.Summary().AUC, 1e-15, "one bin ties every pair")
	assert.InDelta(t, 0.5, one.AUCErrorBound(), 1e-15)
}

func TestEvalSumsAUCIsExactWhenNoBinIsShared(t *testing.T) {
	// Scores in the middle of distinct bins of ten: no positive shares a bin with a negative.
	scores := []float64{0.05, 0.15, 0.25, 0.35, 0.45, 0.95}
	labels := []float64{0, 1, 0, 0, 1, 1}
	sums := metrics.NewEvalSums(10)
	sums.AddScores(scores, labels)
	assert.Zero(t, sums.AUCErrorBound())
	assert.InDelta(t, metrics.AUC(scores, labels), sums.Summary().AUC, 1e-15)
}

func TestEvalSumsBinEdges(t *testing.T) {
	sums := metrics.NewEvalSums(4)
	sums.AddScores([]float64{0, 0.25, 0.5, 0.999, 1, 1.5, -0.2, math.NaN()}, []float64{1, 1, 1, 1, 1, 1, 1, 1})
	assert.Equal(t, []float64{3, 1, 1, 3}, sums.PosHist)
	assert.Equal(t, []float64{0, 0, 0, 0}, sums.NegHist)
	assert.Equal(t, 8.0, sums.Positives)
	assert.True(t, math.IsNaN(sums.LogLossSum), "a NaN score shows in the aggregate")
}

func TestEvalSumsAddAcrossClients(t *testing.T) {
	scores, labels := randomScores(2, 900, 1e4)
	whole := metrics.NewEvalSums(50)
	whole.AddScores(scores, labels)

	total := metrics.NewEvalSums(50)
	vectorSum := make([]float64, len(total.Vector()))
	for _, part := range [][2]int{{0, 100}, {100, 550}, {550, 900}} {
		client := metrics.NewEvalSums(50)
		client.AddScores(scores[part[0]:part[1]], labels[part[0]:part[1]])
		require.NoError(t, total.Add(client))
		for i, v := range client.Vector() {
			vectorSum[i] += v
		}
	}
	assert.Equal(t, whole.PosHist, total.PosHist)
	assert.Equal(t, whole.NegHist, total.NegHist)
	assert.Equal(t, whole.N, total.N)
	assert.Equal(t, whole.Correct, total.Correct)
	assert.InDelta(t, whole.LogLossSum, total.LogLossSum, 1e-9)
	assert.Equal(t, whole.Summary().AUC, total.Summary().AUC)

	decoded, err := metrics.EvalSumsFromVector(vectorSum, 50)
	require.NoError(t, err)
	assert.InDeltaSlice(t, total.Vector(), decoded.Vector(), 1e-9, "summing vectors is summing EvalSums")

	other := metrics.NewEvalSums(60)
	assert.ErrorIs(t, total.Add(other), metrics.ErrBins)
	broken := metrics.EvalSums{Bins: 50}
	assert.ErrorIs(t, total.Add(broken), metrics.ErrBins)
}

func TestEvalSumsVectorRoundTrip(t *testing.T) {
	sums := metrics.NewEvalSums(3)
	sums.AddScores([]float64{0.1, 0.6, 0.9, 0.4}, []float64{0, 1, 1, 0})
	v := sums.Vector()
	require.Len(t, v, 5+2*3)
	assert.Equal(t, []float64{4, 2}, v[:2])
	assert.Equal(t, 4.0, v[4], "all four rows are classified right")
	assert.Equal(t, []float64{0, 1, 1, 1, 1, 0}, v[5:], "bins [0,1/3), [1/3,2/3), [2/3,1]")
	back, err := metrics.EvalSumsFromVector(v, 3)
	require.NoError(t, err)
	assert.Equal(t, sums, back)
}

func TestEvalSumsFromVectorRejects(t *testing.T) {
	good := metrics.NewEvalSums(2).Vector()
	tests := []struct {
		name string
		v    []float64
		bins int
		want error
	}{
		{"zero bins", good, 0, metrics.ErrBins},
		{"negative bins", good, -3, metrics.ErrBins},
		{"short", good[:8], 2, metrics.ErrVector},
		{"long", append(slices.Clone(good), 0), 2, metrics.ErrVector},
		{"bins where 5+2*bins overflows to 1", []float64{0}, math.MaxInt - 1, metrics.ErrVector},
		{"nan", []float64{math.NaN(), 0, 0, 0, 0, 0, 0, 0, 0}, 2, metrics.ErrVector},
		{"infinite", []float64{0, 0, 0, 0, 0, 0, math.Inf(1), 0, 0}, 2, metrics.ErrVector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := metrics.EvalSumsFromVector(tt.v, tt.bins)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func TestNewEvalSumsDefaultsBins(t *testing.T) {
	sums := metrics.NewEvalSums(0)
	assert.Equal(t, metrics.DefaultBins, sums.Bins)
	assert.Len(t, sums.PosHist, metrics.DefaultBins)
	assert.Len(t, sums.NegHist, metrics.DefaultBins)
}

// FuzzEvalSumsFromVector feeds arbitrary vectors (8 bytes per float64) and bin counts to the
// decoder: it must return an error or a value that re-encodes to the same vector, never panic.
func FuzzEvalSumsFromVector(f *testing.F) {
	seed := metrics.NewEvalSums(2)
	seed.AddScores([]float64{0.2, 0.7}, []float64{0, 1})
	f.Add(floatBytes(seed.Vector()), 2)
	f.Add([]byte{}, 0)
	f.Add(floatBytes([]float64{1, 2, 3}), -1)
	f.Add(floatBytes(make([]float64, 7)), 1)
	f.Fuzz(func(t *testing.T, data []byte, bins int) {
		v := make([]float64, len(data)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))
		}
		sums, err := metrics.EvalSumsFromVector(v, bins)
		if err != nil {
			return
		}
		assert.Equal(t, v, sums.Vector())
		_ = sums.Summary()
		_ = sums.AUCErrorBound()
		require.NoError(t, sums.Add(sums))
	})
}

func floatBytes(v []float64) []byte {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}

func TestSummaryJSONWritesUndefinedFiguresAsNull(t *testing.T) {
	in := metrics.Summary{N: 4, AUC: math.NaN(), LogLoss: 0.25, Accuracy: 1, Brier: 0.125}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	assert.JSONEq(t, `{"n":4,"auc":null,"log_loss":0.25,"accuracy":1,"brier":0.125}`, string(b))
	var out metrics.Summary
	require.NoError(t, json.Unmarshal(b, &out))
	assert.True(t, math.IsNaN(out.AUC))
	assert.Equal(t, in.LogLoss, out.LogLoss)
}

func TestVectorLenIsTheVectorsLength(t *testing.T) {
	for _, bins := range []int{0, 1, 20, metrics.DefaultBins} {
		assert.Len(t, metrics.NewEvalSums(bins).Vector(), metrics.VectorLen(bins), "bins %d", bins)
	}
	assert.Equal(t, 20, metrics.VectorBins(metrics.VectorLen(20)))
}
