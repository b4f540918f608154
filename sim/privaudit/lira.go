package privaudit

import (
	"errors"
	"fmt"
	"math"
)

// Phi is the logit-scaled confidence of the true label, log(p/(1-p)) with p the model's
// probability of the label: for a logistic model of log-odds z it is z for label 1 and -z for
// label 0, taken from z so that it does not saturate as p nears 1.
func Phi(logOdds, label float64) float64 {
	if label == 1 {
		return logOdds
	}
	return -logOdds
}

// Loss is the cross-entropy of the true label at confidence phi, log(1 + e^-phi), computed
// without overflow.
func Loss(phi float64) float64 {
	if phi > 0 {
		return math.Log1p(math.Exp(-phi))
	}
	return -phi + math.Log1p(math.Exp(phi))
}

// Observations are one model's attack statistics on the targets: Phi[t] is its logit-scaled
// confidence on target t and In[t] whether t was in its training data. Every model of an
// audit observes the same targets in the same order.
type Observations struct {
	Phi []float64
	In  []bool
}

func (o Observations) check(targets int) error {
	if len(o.Phi) != targets || len(o.In) != targets {
		return fmt.Errorf("%d statistics and %d memberships for %d targets", len(o.Phi), len(o.In), targets)
	}
	for t, v := range o.Phi {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("target %d: statistic %v is not finite", t, v)
		}
	}
	return nil
}

// Variance estimates of LiRA's Gaussians.
const (
	// VarianceGlobal pools every target's spread around its own mean, one variance for IN and
	// one for OUT: Carlini et al. (2022, section VI) find it the better estimate with fewer
	// than 64 shadow models.
	VarianceGlobal = "global"
	// VariancePerTarget fits each target's own variances.
	VariancePerTarget = "per_target"
)

// PerTargetVarianceShadows is the fewest shadow models with which LiRA fits each target's own
// variance (half of them IN, half OUT); below it the variance is global.
const PerTargetVarianceShadows = 64

// minSD keeps a Gaussian proper when every shadow gave a target the same statistic.
const minSD = 1e-9

// LiRA is the online likelihood-ratio attack of Carlini et al. (2022) fitted on shadow models:
// for each target, a Gaussian of phi over the shadows that trained on it (IN) and one over
// those that did not (OUT). A model's score on a target is the log-likelihood ratio of its phi
// under the two.
type LiRA struct {
	// Variance is VarianceGlobal or VariancePerTarget.
	Variance       string
	meanIn, sdIn   []float64
	meanOut, sdOut []float64
}

// FitLiRA fits the attack on the shadows' observations, leaving out shadow skip (none when
// skip < 0); the number of shadows given, skip included, chooses the variance estimate, so that
// fits that leave one out estimate it as the fit on all does. Every target needs at least one
// IN and one OUT shadow among those fitted.
func FitLiRA(shadows []Observations, skip int) (*LiRA, error) {
	if len(shadows) == 0 {
		return nil, errors.New("lira: no shadow models")
	}
	targets := len(shadows[0].Phi)
	for k, s := range shadows {
		if err := s.check(targets); err != nil {
			return nil, fmt.Errorf("lira: shadow %d: %w", k, err)
		}
	}
	l := &LiRA{Variance: VarianceGlobal,
		meanIn: make([]float64, targets), sdIn: make([]float64, targets),
		meanOut: make([]float64, targets), sdOut: make([]float64, targets)}
	if len(shadows) >= PerTargetVarianceShadows {
		l.Variance = VariancePerTarget
	}
	var ssIn, ssOut, dofIn, dofOut float64
	for t := range targets {
		var nIn, nOut, sumIn, sumOut float64
		for k, s := range shadows {
			if k == skip {
				continue
			}
			if s.In[t] {
				nIn, sumIn = nIn+1, sumIn+s.Phi[t]
			} else {
				nOut, sumOut = nOut+1, sumOut+s.Phi[t]
			}
		}
		if nIn == 0 || nOut == 0 {
			return nil, fmt.Errorf("lira: target %d is in %v and out of %v of the shadow models; it needs both", t, nIn, nOut)
		}
		l.meanIn[t], l.meanOut[t] = sumIn/nIn, sumOut/nOut
		var sIn, sOut float64
		for k, s := range shadows {
			if k == skip {
				continue
			}
			if d := s.Phi[t] - l.meanIn[t]; s.In[t] {
				sIn += d * d
			} else {
				d = s.Phi[t] - l.meanOut[t]
				sOut += d * d
			}
		}
		ssIn, ssOut, dofIn, dofOut = ssIn+sIn, ssOut+sOut, dofIn+nIn-1, dofOut+nOut-1
		if l.Variance == VariancePerTarget {
			l.sdIn[t], l.sdOut[t] = math.Sqrt(sIn/(nIn-1)), math.Sqrt(sOut/(nOut-1))
		}
	}
	if l.Variance == VarianceGlobal {
		if dofIn == 0 || dofOut == 0 {
			return nil, errors.New("lira: too few shadow models to estimate a variance (every target in or out of only one)")
		}
		sdIn, sdOut := math.Sqrt(ssIn/dofIn), math.Sqrt(ssOut/dofOut)
		for t := range targets {
			l.sdIn[t], l.sdOut[t] = sdIn, sdOut
		}
	}
	for t := range targets {
		l.sdIn[t], l.sdOut[t] = max(l.sdIn[t], minSD), max(l.sdOut[t], minSD)
	}
	return l, nil
}

// Score is the log-likelihood ratio, IN over OUT, of statistic phi on target t.
func (l *LiRA) Score(t int, phi float64) float64 {
	zi := (phi - l.meanIn[t]) / l.sdIn[t]
	zo := (phi - l.meanOut[t]) / l.sdOut[t]
	return math.Log(l.sdOut[t]/l.sdIn[t]) - zi*zi/2 + zo*zo/2
}

// Guesses scores every target of a model's observations.
func (l *LiRA) Guesses(o Observations) Guesses {
	var g Guesses
	for t, phi := range o.Phi {
		g.add(o.In[t], l.Score(t, phi))
	}
	return g
}

// LossGuesses is the loss-threshold attack of Yeom et al. (2018): a target is guessed a member
// when the model's loss on it is low; the score is minus the loss.
func LossGuesses(o Observations) Guesses {
	var g Guesses
	for t, phi := range o.Phi {
		g.add(o.In[t], -Loss(phi))
	}
	return g
}

func (g *Guesses) add(member bool, score float64) {
	if member {
		g.Member = append(g.Member, score)
	} else {
		g.NonMember = append(g.NonMember, score)
	}
}

func (g *Guesses) append(o Guesses) {
	g.Member = append(g.Member, o.Member...)
	g.NonMember = append(g.NonMember, o.NonMember...)
}
