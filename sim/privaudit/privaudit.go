// Package privaudit measures how much a trained model gives away about whether a record was in
// its training data: membership inference against records known to be in and out, by a loss
// threshold (Yeom et al. 2018) and by the online likelihood-ratio attack on shadow models (LiRA,
// Carlini et al. 2022); each attack's ROC, its true-positive rate at low false-positive rates,
// and the lower bound on epsilon its success implies for any (epsilon, delta)-DP training
// (Jagielski et al. 2020; Nasr et al. 2021), with Clopper-Pearson confidence bounds.
//
// The package is pure: it takes the attack statistic (package sim trains the audited and shadow
// models with the production roles and computes it) and returns figures; apart from writing and
// reading its report it does no I/O, and the same observations give the same report.
package privaudit

import (
	"errors"
	"fmt"
	"math"
)

// FPRLevels are the false-positive rates an audit reports the true-positive rate and the
// epsilon bound at.
var FPRLevels = []float64{0.001, 0.01, 0.1}

// Confidence is the probability with which the largest of an audit's epsilon bounds holds:
// every bound is computed at 1 - (1 - Confidence)/tests (Bonferroni over the attacks and the
// levels).
const Confidence = 0.95

// Attack names.
const (
	AttackLiRA = "lira"
	AttackLoss = "loss"
)

// Result is what the attacks found.
type Result struct {
	// Targets are the records attacked: Members were in the audited model's training data,
	// NonMembers not. Shadows is the number of shadow models.
	Targets    int `json:"targets"`
	Members    int `json:"members"`
	NonMembers int `json:"non_members"`
	Shadows    int `json:"shadows"`
	// Delta is the delta of the epsilon bounds: the accountant's.
	Delta float64 `json:"delta"`
	// Confidence is the probability with which EpsilonLowerBound holds; TestConfidence that of
	// each Clopper-Pearson interval behind the bounds.
	Confidence     float64 `json:"confidence"`
	TestConfidence float64 `json:"test_confidence"`
	// Variance is how LiRA's Gaussians were fitted: VarianceGlobal or VariancePerTarget.
	Variance string   `json:"variance"`
	Attacks  []Attack `json:"attacks"`
	// EpsilonLowerBound is the largest bound of any attack at any level.
	EpsilonLowerBound float64 `json:"epsilon_lower_bound"`
}

// Attack is one attack's success against the audited model.
type Attack struct {
	Name string `json:"name"`
	// AUC is the area under the ROC curve of the audited model's guesses.
	AUC float64 `json:"auc"`
	// TPRAtFPR reads the curve at each of FPRLevels.
	TPRAtFPR []Rate `json:"tpr_at_fpr"`
	// Bounds are the epsilon bounds at each of FPRLevels, and EpsilonLowerBound the largest.
	Bounds            []Bound `json:"bounds"`
	EpsilonLowerBound float64 `json:"epsilon_lower_bound"`
	// ROC is the curve (written as CSV, not JSON).
	ROC []ROCPoint `json:"-"`
}

// Rate is a true-positive rate at a false-positive rate.
type Rate struct {
	FPR float64 `json:"fpr"`
	TPR float64 `json:"tpr"`
}

// Bound is the epsilon lower bound at one false-positive level. The threshold is fixed on the
// shadow models (where their guesses' false-positive rate is at most Level) so that it owes
// nothing to the audited model's guesses; the audited model's true and false positives at it
// are counted, and their rates bounded by Clopper-Pearson intervals: the TPR from below and
// the FPR from above.
type Bound struct {
	Level float64 `json:"level"`
	// Threshold is the score at or above which a target is guessed a member; nil when no score
	// of the shadows kept their false-positive rate at Level (then nothing is guessed).
	Threshold *float64 `json:"threshold"`
	// TruePositives of Members and FalsePositives of NonMembers; TPRLow and FPRHigh their
	// confidence bounds.
	TruePositives  int     `json:"true_positives"`
	FalsePositives int     `json:"false_positives"`
	TPRLow         float64 `json:"tpr_low"`
	FPRHigh        float64 `json:"fpr_high"`
	Epsilon        float64 `json:"epsilon"`
}

// Run attacks the audited model's observations with both attacks, LiRA fitted on the shadows'
// observations, and bounds epsilon at delta. Every model observes the same targets; the
// audited model needs members and non-members, and there must be at least 4 shadows (LiRA's
// thresholds are fixed on each shadow with the others fitted, so each target needs an IN and
// an OUT shadow among the rest).
func Run(audited Observations, shadows []Observations, delta float64) (*Result, error) {
	targets := len(audited.Phi)
	if err := audited.check(targets); err != nil {
		return nil, fmt.Errorf("audit: audited model: %w", err)
	}
	if len(shadows) < 4 {
		return nil, fmt.Errorf("audit: %d shadow models; at least 4 are needed", len(shadows))
	}
	for k, s := range shadows {
		if err := s.check(targets); err != nil {
			return nil, fmt.Errorf("audit: shadow %d: %w", k, err)
		}
	}
	if !(delta >= 0 && delta < 1) {
		return nil, fmt.Errorf("audit: delta %v is not in [0, 1)", delta)
	}
	res := &Result{Targets: targets, Shadows: len(shadows), Delta: delta, Confidence: Confidence}
	for _, in := range audited.In {
		if in {
			res.Members++
		}
	}
	res.NonMembers = targets - res.Members
	if res.Members == 0 || res.NonMembers == 0 {
		return nil, fmt.Errorf("audit: the audited model has %d member and %d non-member targets; it needs both", res.Members, res.NonMembers)
	}
	lira, err := FitLiRA(shadows, -1)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	res.Variance = lira.Variance
	var liraCal, lossCal Guesses
	for k, s := range shadows {
		l, err := FitLiRA(shadows, k)
		if err != nil {
			return nil, fmt.Errorf("audit: shadow %d left out: %w", k, err)
		}
		liraCal.append(l.Guesses(s))
		lossCal.append(LossGuesses(s))
	}
	tests := 2 * len(FPRLevels)
	res.TestConfidence = 1 - (1-Confidence)/float64(tests)
	for _, a := range []struct {
		name              string
		audited, shadowed Guesses
	}{
		{AttackLiRA, lira.Guesses(audited), liraCal},
		{AttackLoss, LossGuesses(audited), lossCal},
	} {
		att, err := evaluate(a.name, a.audited, a.shadowed, delta, res.TestConfidence)
		if err != nil {
			return nil, fmt.Errorf("audit: %s: %w", a.name, err)
		}
		res.Attacks = append(res.Attacks, att)
		res.EpsilonLowerBound = max(res.EpsilonLowerBound, att.EpsilonLowerBound)
	}
	return res, nil
}

// evaluate measures an attack: its ROC on the audited guesses, and the epsilon bound at each
// level with thresholds fixed on the calibration (shadow) guesses.
func evaluate(name string, audited, calibration Guesses, delta, confidence float64) (Attack, error) {
	if len(calibration.Member) == 0 || len(calibration.NonMember) == 0 {
		return Attack{}, errors.New("no calibration guesses")
	}
	a := Attack{Name: name, ROC: ROC(audited)}
	a.AUC = AUC(a.ROC)
	cal := ROC(calibration)
	pos, neg := len(audited.Member), len(audited.NonMember)
	for _, level := range FPRLevels {
		a.TPRAtFPR = append(a.TPRAtFPR, Rate{FPR: level, TPR: TPRAtFPR(a.ROC, level)})
		b := Bound{Level: level}
		if t := thresholdAt(cal, level); !math.IsInf(t, 1) {
			b.Threshold = &t
			b.TruePositives, b.FalsePositives = countAtLeast(audited.Member, t), countAtLeast(audited.NonMember, t)
		}
		var err error
		if b.TPRLow, _, err = ClopperPearson(b.TruePositives, pos, confidence); err != nil {
			return Attack{}, err
		}
		if _, b.FPRHigh, err = ClopperPearson(b.FalsePositives, neg, confidence); err != nil {
			return Attack{}, err
		}
		b.Epsilon = EpsilonLowerBound(b.TPRLow, b.FPRHigh, delta)
		a.Bounds = append(a.Bounds, b)
		a.EpsilonLowerBound = max(a.EpsilonLowerBound, b.Epsilon)
	}
	return a, nil
}

// Attack returns the named attack's result, or nil.
func (r *Result) Attack(name string) *Attack {
	for i := range r.Attacks {
		if r.Attacks[i].Name == name {
			return &r.Attacks[i]
		}
	}
	return nil
}
