package logreg_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model/logreg"
)

// TestFitCentralizedMatchesScikitLearn checks the centralized reference against scikit-learn
// 1.2.1 LogisticRegression(lbfgs, C=1) on the fixed bank-marketing split (README of the shared
// data): AUC 0.7718, log loss 0.2984, accuracy 0.8933 on the test rows.
func TestFitCentralizedMatchesScikitLearn(t *testing.T) {
	bank := loadBank(t)
	n, dim := bank.XTrain.Dims()
	require.Equal(t, 36168, n)
	require.Equal(t, 6+12+3+4+2+2+2+3+12+4, dim)

	w, err := logreg.FitCentralized(bank.XTrain, bank.YTrain, 1/float64(n))
	require.NoError(t, err)
	scores := logreg.PredictAll(w, bank.XTest, nil)
	got := metrics.Evaluate(scores, bank.YTest)
	t.Logf("centralized fit on the bank test rows: %+v", got)

	assert.GreaterOrEqual(t, got.AUC, 0.770)
	assert.InDelta(t, 0.7718, got.AUC, 0.0005)
	assert.InDelta(t, 0.2984, got.LogLoss, 0.0005)
	assert.InDelta(t, 0.8933, got.Accuracy, 0.0005)

	// The federated evaluation path recovers the same AUC from score histograms.
	sums := metrics.NewEvalSums(metrics.DefaultBins)
	sums.AddScores(scores, bank.YTest)
	bound := sums.AUCErrorBound()
	histAUC := sums.Summary().AUC
	t.Logf("histogram AUC %.6f (exact %.6f), bound %.6f with %d bins", histAUC, got.AUC, bound, metrics.DefaultBins)
	assert.LessOrEqual(t, bound, 0.001)
	assert.InDelta(t, got.AUC, histAUC, bound)
	for _, bins := range []int{100, 500, 1000, 2000, 4000} {
		s := metrics.NewEvalSums(bins)
		s.AddScores(scores, bank.YTest)
		t.Logf("bins %d: histogram AUC error %.2e, bound %.2e", bins, s.Summary().AUC-got.AUC, s.AUCErrorBound())
	}
}
