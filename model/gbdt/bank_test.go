package gbdt_test

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/banktest"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model/gbdt"
)

// bankFit is the default-parameter model of bank-full's training rows, fitted once for the
// tests that need it.
var bankFit struct {
	once    sync.Once
	std     dataset.Standardization
	m       *gbdt.Model
	elapsed time.Duration
	err     error
}

// bankModel loads bank-full (skipping without the shared data, failing under CI=true) and
// returns its split and the default model, standardised with the training rows' statistics
// as the scikit-learn reference is.
func bankModel(t *testing.T) (banktest.Split, dataset.Standardization, *gbdt.Model) {
	t.Helper()
	split := banktest.Load(t)
	bankFit.once.Do(func() {
		bankFit.std, bankFit.err = split.Train.Stats().Standardization()
		if bankFit.err != nil {
			return
		}
		start := time.Now()
		bankFit.m, bankFit.err = gbdt.Fit(split.Train, bankFit.std, gbdt.DefaultParams())
		bankFit.elapsed = time.Since(start)
	})
	require.NoError(t, bankFit.err)
	return split, bankFit.std, bankFit.m
}

// TestBankCentralizedFit pins the default model's quality on bank-full's fixed test rows. The
// data's README records the logistic regression reference, test AUC 0.772 and log loss 0.298;
// scikit-learn's HistGradientBoostingClassifier is quoted at about 0.805 and 0.281 on this
// split, a figure the README does not (yet) record.
func TestBankCentralizedFit(t *testing.T) {
	split, _, m := bankModel(t)
	scores, err := m.Predict(split.Test)
	require.NoError(t, err)
	got := metrics.Evaluate(scores, split.Test.Label)
	t.Logf("bank-full test rows: AUC %.4f, log loss %.4f, accuracy %.4f (%d trees fitted on %d rows in %v)",
		got.AUC, got.LogLoss, got.Accuracy, len(m.Trees), split.Train.Len(), bankFit.elapsed)
	assert.GreaterOrEqual(t, got.AUC, 0.800)
	assert.Less(t, got.LogLoss, 0.2984, "better than the logistic regression reference")
}

func TestBankTreeSHAPAddsUpOnEveryTestRow(t *testing.T) {
	split, _, m := bankModel(t)
	all, err := m.ExplainAll(split.Test)
	require.NoError(t, err)
	worst := 0.0
	for i, e := range all {
		sum := e.Expected
		for _, v := range e.Values {
			sum += v
		}
		require.Equal(t, m.Margin(split.Test, i), e.Margin)
		worst = max(worst, math.Abs(sum-e.Margin))
	}
	t.Logf("largest |expected + sum of SHAP values - margin| over %d rows: %.2g", len(all), worst)
	require.LessOrEqual(t, worst, 1e-9)
}

func TestBankFederatedEqualsCentralized(t *testing.T) {
	split := banktest.Load(t)
	std, err := split.Train.Stats().Standardization()
	require.NoError(t, err)
	p := gbdt.DefaultParams()
	p.Trees, p.Colsample = 20, 0.8 // enough to reach deep, small trees; colsample is the coordinator's
	central, err := gbdt.Fit(split.Train, std, p)
	require.NoError(t, err)
	n := split.Train.Len()
	fed, err := gbdt.FitFederated(parts(split.Train, n/10, n/2, n/5, n-n/10-n/2-n/5), std, p)
	require.NoError(t, err)
	requireSameModel(t, central, fed, 1e-9)
}
