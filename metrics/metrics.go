// Package metrics evaluates propensity scores against 0/1 labels: exact metrics on scores held
// in one place (Evaluate), and EvalSums, the additive counts a federated evaluate task returns,
// from which the coordinator recovers the same metrics (AUC from score histograms) after summing
// them across clients, in plaintext or under secure aggregation.
//
// A label counts as positive when it is at least 0.5 (labels are meant to be 0 or 1). A score is
// a predicted probability of the positive class.
package metrics

import (
	"encoding/json"
	"math"
	"slices"
)

// Summary holds the evaluation metrics of a set of scored rows.
type Summary struct {
	N        float64 `json:"n"`        // number of rows
	AUC      float64 `json:"auc"`      // ROC AUC; NaN when all rows are of one class
	LogLoss  float64 `json:"log_loss"` // mean log loss, probabilities clamped to [ProbabilityClamp, 1-ProbabilityClamp]
	Accuracy float64 `json:"accuracy"` // fraction of rows classified right at threshold 0.5 (positive when score > 0.5)
	Brier    float64 `json:"brier"`    // mean squared difference between score and label
}

// summaryJSON mirrors Summary with nullable numbers: JSON has no NaN, and an AUC over rows of
// one class is undefined, not an error.
type summaryJSON struct {
	N        *float64 `json:"n"`
	AUC      *float64 `json:"auc"`
	LogLoss  *float64 `json:"log_loss"`
	Accuracy *float64 `json:"accuracy"`
	Brier    *float64 `json:"brier"`
}

func finiteOrNil(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

func valueOrNaN(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// MarshalJSON writes undefined figures (NaN) as null.
func (s Summary) MarshalJSON() ([]byte, error) {
	return json.Marshal(summaryJSON{finiteOrNil(s.N), finiteOrNil(s.AUC), finiteOrNil(s.LogLoss), finiteOrNil(s.Accuracy), finiteOrNil(s.Brier)})
}

// UnmarshalJSON reads null as NaN.
func (s *Summary) UnmarshalJSON(b []byte) error {
	var j summaryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Summary{valueOrNaN(j.N), valueOrNaN(j.AUC), valueOrNaN(j.LogLoss), valueOrNaN(j.Accuracy), valueOrNaN(j.Brier)}
	return nil
}

// ProbabilityClamp keeps log loss finite for scores of exactly 0 or 1; scikit-learn's log_loss
// used the same 1e-15 (before version 1.3 changed it to the float epsilon).
const ProbabilityClamp = 1e-15

// MaxLogLoss is the most one record's log loss can be: that of a score clamped at
// ProbabilityClamp. A train or evaluation sum is checked against it times its records.
var MaxLogLoss = -math.Log(ProbabilityClamp)

// Evaluate returns the exact metrics of scores against labels. AUC is computed by sorting, with
// tied scores getting half credit. It panics if the slices differ in length; with no rows every
// metric is NaN.
func Evaluate(scores, labels []float64) Summary {
	checkLengths(scores, labels)
	n := float64(len(scores))
	var logLoss, brier, correct float64
	for i, s := range scores {
		logLoss += rowLogLoss(s, labels[i])
		brier += (s - labels[i]) * (s - labels[i])
		if isCorrect(s, labels[i]) {
			correct++
		}
	}
	return Summary{N: n, AUC: AUC(scores, labels), LogLoss: logLoss / n, Accuracy: correct / n, Brier: brier / n}
}

// AUC returns the exact ROC AUC of scores against labels: the probability that a random positive
// row scores above a random negative one, ties counting one half (the Mann-Whitney statistic, as
// scikit-learn's roc_auc_score). It is NaN when there are no positives or no negatives, and it
// panics if the slices differ in length.
func AUC(scores, labels []float64) float64 {
	checkLengths(scores, labels)
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return compareScores(scores[a], scores[b]) })

	// Walk groups of tied scores upwards: each positive beats every negative below its group and
	// half of the negatives inside it.
	var positives, negatives, wins float64
	for start := 0; start < len(order); {
		end := start
		var groupPos, groupNeg float64
		for end < len(order) && compareScores(scores[order[end]], scores[order[start]]) == 0 {
			if isPositive(labels[order[end]]) {
				groupPos++
			} else {
				groupNeg++
			}
			end++
		}
		wins += groupPos*negatives + 0.5*groupPos*groupNeg
		positives += groupPos
		negatives += groupNeg
		start = end
	}
	return wins / (positives * negatives)
}

// LogLoss returns the mean log loss of scores against labels, probabilities clamped to
// [ProbabilityClamp, 1-ProbabilityClamp] like scikit-learn. It panics if the slices differ in length.
func LogLoss(scores, labels []float64) float64 {
	checkLengths(scores, labels)
	var sum float64
	for i, s := range scores {
		sum += rowLogLoss(s, labels[i])
	}
	return sum / float64(len(scores))
}

// compareScores orders scores ascending with NaN first, so sorting never sees an inconsistent
// order.
func compareScores(a, b float64) int {
	switch {
	case a < b || (math.IsNaN(a) && !math.IsNaN(b)):
		return -1
	case a > b || (!math.IsNaN(a) && math.IsNaN(b)):
		return 1
	}
	return 0
}

func isPositive(label float64) bool { return label >= 0.5 }

// isCorrect reports whether thresholding score at 0.5 gives label's class. Positive means
// score > 0.5, as scikit-learn's predict (decision function > 0).
func isCorrect(score, label float64) bool { return (score > 0.5) == isPositive(label) }

// rowLogLoss is the clamped log loss of one row.
func rowLogLoss(score, label float64) float64 {
	p := min(max(score, ProbabilityClamp), 1-ProbabilityClamp)
	return -(label*math.Log(p) + (1-label)*math.Log1p(-p))
}

func checkLengths(scores, labels []float64) {
	if len(scores) != len(labels) {
		panic("metrics: scores and labels differ in length")
	}
}
