package privaudit_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/fedprop/fedprop/sim/privaudit"
)

// TestClopperPearsonKnownValues checks the interval against closed forms (k = 0, 1, n-1, n,
// where the beta quantiles are powers) and the tabulated 5 of 10.
func TestClopperPearsonKnownValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		k, n   int
		conf   float64
		lo, hi float64
	}{
		{"none of 10", 0, 10, 0.95, 0, 1 - math.Pow(0.025, 0.1)},
		{"all of 10", 10, 10, 0.95, math.Pow(0.025, 0.1), 1},
		{"one of 100, lower end", 1, 100, 0.95, 1 - math.Pow(0.975, 0.01), 0.0544593},
		{"99 of 100, upper end", 99, 100, 0.95, 1 - 0.0544593, math.Pow(0.975, 0.01)},
		{"none of 500", 0, 500, 0.95, 0, 1 - math.Pow(0.025, 1.0/500)},
		{"5 of 10 (tabulated)", 5, 10, 0.95, 0.1870860, 0.8129140},
		{"none of 500 at 99%", 0, 500, 0.99, 0, 1 - math.Pow(0.005, 1.0/500)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi, err := privaudit.ClopperPearson(tc.k, tc.n, tc.conf)
			require.NoError(t, err)
			assert.InDelta(t, tc.lo, lo, 1e-6)
			assert.InDelta(t, tc.hi, hi, 1e-6)
		})
	}
}

// TestClopperPearsonInvertsTheBinomialTails: at the lower end, k or more successes have
// probability alpha/2; at the upper end, k or fewer do.
func TestClopperPearsonInvertsTheBinomialTails(t *testing.T) {
	for _, tc := range []struct{ k, n int }{{1, 20}, {7, 50}, {37, 500}, {250, 500}, {499, 500}} {
		lo, hi, err := privaudit.ClopperPearson(tc.k, tc.n, 0.95)
		require.NoError(t, err)
		atLeast := 1 - distuv.Binomial{N: float64(tc.n), P: lo}.CDF(float64(tc.k-1))
		atMost := distuv.Binomial{N: float64(tc.n), P: hi}.CDF(float64(tc.k))
		assert.InDelta(t, 0.025, atLeast, 1e-6, "%d of %d: P(X >= k | lo)", tc.k, tc.n)
		assert.InDelta(t, 0.025, atMost, 1e-6, "%d of %d: P(X <= k | hi)", tc.k, tc.n)
	}
}

func TestClopperPearsonRefusesWhatIsNotARate(t *testing.T) {
	for _, tc := range []struct {
		k, n int
		conf float64
	}{{0, 0, 0.95}, {-1, 10, 0.95}, {11, 10, 0.95}, {1, 10, 1}, {1, 10, 0}, {1, 10, math.NaN()}} {
		_, _, err := privaudit.ClopperPearson(tc.k, tc.n, tc.conf)
		assert.Error(t, err, "%+v", tc)
	}
}

// TestEpsilonLowerBoundHandComputed: eps >= max(log((TPR-delta)/FPR), log((1-FPR-delta)/(1-TPR))),
// and never below 0.
func TestEpsilonLowerBoundHandComputed(t *testing.T) {
	for _, tc := range []struct {
		name             string
		tpr, fpr, delta  float64
		want             float64
		infinite, atZero bool
	}{
		{"half the members at 1% false positives", 0.5, 0.01, 0, math.Log(50), false, false},
		{"delta takes its share", 0.5, 0.01, 1e-5, math.Log(0.49999 / 0.01), false, false},
		{"the second inequality binds", 0.99, 0.5, 0, math.Log(0.5 / 0.01), false, false},
		{"three times the false positives", 0.3, 0.1, 0, math.Log(3), false, false},
		{"a coin", 0.1, 0.1, 0, 0, false, true},
		{"worse than a coin", 0.05, 0.1, 0, 0, false, true},
		{"no more true positives than delta", 1e-5, 0, 1e-5, 0, false, true},
		{"a positive rate without false positives", 0.2, 0, 1e-5, 0, true, false},
		{"every member without missing one", 1, 0.5, 0, 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := privaudit.EpsilonLowerBound(tc.tpr, tc.fpr, tc.delta)
			switch {
			case tc.infinite:
				assert.True(t, math.IsInf(got, 1), "%v", got)
			case tc.atZero:
				assert.Zero(t, got)
			default:
				assert.InDelta(t, tc.want, got, 1e-12)
			}
		})
	}
}

func TestROCAndAUC(t *testing.T) {
	g := privaudit.Guesses{Member: []float64{3, 2, 1}, NonMember: []float64{2.5, 0.5}}
	roc := privaudit.ROC(g)
	require.Len(t, roc, 6)
	assert.True(t, math.IsInf(roc[0].Threshold, 1))
	want := []privaudit.ROCPoint{{Threshold: 3, TPR: 1.0 / 3}, {Threshold: 2.5, FPR: 0.5, TPR: 1.0 / 3},
		{Threshold: 2, FPR: 0.5, TPR: 2.0 / 3}, {Threshold: 1, FPR: 0.5, TPR: 1}, {Threshold: 0.5, FPR: 1, TPR: 1}}
	for i, w := range want {
		assert.Equal(t, w.Threshold, roc[i+1].Threshold)
		assert.InDelta(t, w.FPR, roc[i+1].FPR, 1e-15)
		assert.InDelta(t, w.TPR, roc[i+1].TPR, 1e-15)
	}
	assert.InDelta(t, 4.0/6, privaudit.AUC(roc), 1e-15, "4 of the 6 member/non-member pairs are ordered right")
	assert.InDelta(t, 1.0/3, privaudit.TPRAtFPR(roc, 0.1), 1e-15)
	assert.InDelta(t, 1, privaudit.TPRAtFPR(roc, 0.5), 1e-15)

	tied := privaudit.ROC(privaudit.Guesses{Member: []float64{1, 1}, NonMember: []float64{1, 1}})
	assert.InDelta(t, 0.5, privaudit.AUC(tied), 1e-15, "a tie counts half")
}

func TestLossAndPhi(t *testing.T) {
	assert.InDelta(t, math.Ln2, privaudit.Loss(0), 1e-15)
	assert.InDelta(t, 1000, privaudit.Loss(-1000), 1e-9, "no overflow")
	assert.InDelta(t, 0, privaudit.Loss(1000), 1e-300)
	assert.Equal(t, 2.5, privaudit.Phi(2.5, 1))
	assert.Equal(t, -2.5, privaudit.Phi(2.5, 0))
	p := 0.8 // phi is log(p/(1-p)) of the true label's probability
	z := math.Log(p / (1 - p))
	assert.InDelta(t, math.Log((1-p)/p), privaudit.Phi(z, 0), 1e-12)
	assert.InDelta(t, -math.Log(p), privaudit.Loss(privaudit.Phi(z, 1)), 1e-12)
}
