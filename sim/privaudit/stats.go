package privaudit

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// ClopperPearson is the exact two-sided binomial confidence interval of a rate from k successes
// in n trials at the given confidence (0.95: 2.5% of the tail on each side): the lower end is
// the alpha/2 quantile of Beta(k, n-k+1) (0 when k = 0), the upper the 1-alpha/2 quantile of
// Beta(k+1, n-k) (1 when k = n).
func ClopperPearson(k, n int, confidence float64) (lo, hi float64, err error) {
	if n < 1 || k < 0 || k > n {
		return 0, 0, fmt.Errorf("clopper-pearson: %d successes in %d trials", k, n)
	}
	if !(confidence > 0 && confidence < 1) {
		return 0, 0, fmt.Errorf("clopper-pearson: confidence %v is not in (0, 1)", confidence)
	}
	alpha := 1 - confidence
	lo, hi = 0, 1
	if k > 0 {
		lo = distuv.Beta{Alpha: float64(k), Beta: float64(n - k + 1)}.Quantile(alpha / 2)
	}
	if k < n {
		hi = distuv.Beta{Alpha: float64(k + 1), Beta: float64(n - k)}.Quantile(1 - alpha/2)
	}
	return lo, hi, nil
}

// EpsilonLowerBound is the smallest epsilon with which an (epsilon, delta)-DP training could let
// a membership test reach true-positive rate tpr at false-positive rate fpr. DP implies
// TPR <= e^eps FPR + delta and 1-FPR <= e^eps (1-TPR) + delta, so
//
//	eps >= max(log((TPR - delta)/FPR), log((1 - FPR - delta)/(1 - TPR))),
//
// and never less than 0. It is +Inf when a rate of 0 or 1 makes a ratio's denominator 0 and its
// numerator positive; Bound feeds it confidence bounds instead, which never are.
func EpsilonLowerBound(tpr, fpr, delta float64) float64 {
	eps := 0.0
	if num := tpr - delta; num > 0 {
		eps = max(eps, logRatio(num, fpr))
	}
	if num := 1 - fpr - delta; num > 0 {
		eps = max(eps, logRatio(num, 1-tpr))
	}
	return eps
}

func logRatio(num, den float64) float64 {
	if den <= 0 {
		return math.Inf(1)
	}
	return math.Log(num / den)
}

// ROCPoint is one threshold of an attack: guessing "member" for every score at or above
// Threshold gives these rates.
type ROCPoint struct {
	Threshold float64 `json:"threshold"`
	FPR       float64 `json:"fpr"`
	TPR       float64 `json:"tpr"`
}

// Guesses are an attack's scores on the targets, higher meaning "member": on the targets that
// were in the training data and on those that were not.
type Guesses struct {
	Member, NonMember []float64
}

// ROC is the attack's ROC curve: one point per distinct score, from (0, 0) at threshold +Inf to
// (1, 1), by decreasing threshold. Both sides must be non-empty.
func ROC(g Guesses) []ROCPoint {
	type scored struct {
		s      float64
		member bool
	}
	all := make([]scored, 0, len(g.Member)+len(g.NonMember))
	for _, s := range g.Member {
		all = append(all, scored{s, true})
	}
	for _, s := range g.NonMember {
		all = append(all, scored{s, false})
	}
	slices.SortFunc(all, func(a, b scored) int { return cmp.Compare(b.s, a.s) })
	pos, neg := float64(len(g.Member)), float64(len(g.NonMember))
	out := []ROCPoint{{Threshold: math.Inf(1)}}
	tp, fp := 0, 0
	for i := 0; i < len(all); {
		t := all[i].s
		for ; i < len(all) && all[i].s == t; i++ {
			if all[i].member {
				tp++
			} else {
				fp++
			}
		}
		out = append(out, ROCPoint{Threshold: t, FPR: float64(fp) / neg, TPR: float64(tp) / pos})
	}
	return out
}

// AUC is the area under an ROC curve (trapezoids: a tie counts half).
func AUC(roc []ROCPoint) float64 {
	a := 0.0
	for i := 1; i < len(roc); i++ {
		a += (roc[i].FPR - roc[i-1].FPR) * (roc[i].TPR + roc[i-1].TPR) / 2
	}
	return a
}

// TPRAtFPR is the highest true-positive rate of a point of the curve whose false-positive rate
// is at most fpr: the figure LiRA reports, read off the audited guesses themselves.
func TPRAtFPR(roc []ROCPoint, fpr float64) float64 {
	best := 0.0
	for _, p := range roc {
		if p.FPR <= fpr {
			best = max(best, p.TPR)
		}
	}
	return best
}

// thresholdAt is the lowest threshold of the curve whose false-positive rate is at most fpr
// (+Inf when only the origin qualifies).
func thresholdAt(roc []ROCPoint, fpr float64) float64 {
	t := math.Inf(1)
	for _, p := range roc {
		if p.FPR <= fpr {
			t = min(t, p.Threshold)
		}
	}
	return t
}

// countAtLeast counts the scores at or above t.
func countAtLeast(scores []float64, t float64) int {
	n := 0
	for _, s := range scores {
		if s >= t {
			n++
		}
	}
	return n
}
