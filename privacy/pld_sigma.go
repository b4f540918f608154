package privacy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// PLDSigmaTolerance is the relative tolerance of the noise searches (SigmaFor,
// Accountant.SigmaWithin) under PLD: each evaluation composes a privacy loss distribution, so
// they stop sooner than SigmaTolerance. A relative change of 1e-6 in sigma moves epsilon by
// about 1e-6 of itself, far below the accountant's own 1e-4.
const PLDSigmaTolerance = 1e-6

// sigmaForPLD is SigmaFor under PLD (arguments already checked).
func sigmaForPLD(q float64, steps int, delta, target float64, orders []float64) (float64, error) {
	key := sigmaKey{spent: ordersKey(orders), q: q, steps: steps, delta: delta, epsilon: target}
	if sigma, ok := pldCaches.sigma.get(key); ok {
		return sigma, nil
	}
	// RDP's answer meets the target under PLD, which never reports more than RDP.
	hi, err := SigmaFor(q, steps, delta, target, orders, Tight)
	if errors.Is(err, ErrTargetUnreachable) {
		hi = MaxSigma
	} else if err != nil {
		return 0, err
	}
	sigma, err := refineSigma(func(sigma float64) (float64, error) {
		eps, _, err := Epsilon(q, sigma, steps, delta, orders, PLD)
		return eps, err
	}, target, hi)
	if errors.Is(err, ErrTargetUnreachable) {
		return 0, fmt.Errorf("epsilon %v at delta %v with q=%v over %d steps needs sigma > %v: %w",
			target, delta, q, steps, MaxSigma, ErrTargetUnreachable)
	}
	if err != nil {
		return 0, err
	}
	pldCaches.sigma.put(key, sigma)
	return sigma, nil
}

// refineSigma returns the smallest sigma (to PLDSigmaTolerance, erring high) whose epsilon is
// within target, given hi, a sigma believed to meet it. Epsilon falls with sigma, smoothly
// enough for regula falsi on (log sigma, log epsilon) with the Illinois modification (the end
// that stays put twice has its value halved), which needs a handful of evaluations where
// bisection needs twenty; a step that would not shrink the bracket enough bisects instead.
func refineSigma(epsAt func(sigma float64) (float64, error), target, hi float64) (float64, error) {
	ehi, err := epsAt(hi)
	if err != nil {
		return 0, err
	}
	if ehi > target {
		return 0, fmt.Errorf("epsilon %.6g at sigma %v, above %v: %w", ehi, hi, target, ErrTargetUnreachable)
	}
	// Bracket from below: PLD usually needs 10-40% less noise than RDP.
	var lo, elo float64
	for factor := 0.85; ; factor = 0.5 {
		cand := hi * factor
		if cand < MaxSigma*1e-18 {
			return hi, nil // meets the target with next to no noise
		}
		e, err := epsAt(cand)
		if err != nil {
			return 0, err
		}
		if e > target {
			lo, elo = cand, e
			break
		}
		hi, ehi = cand, e
	}
	f := func(e float64) float64 { return math.Log(e / target) } // > 0 fails, <= 0 meets
	flo, fhi := f(elo), f(ehi)
	side := 0
	before, last := math.Inf(1), math.Inf(1) // the bracket's log-width two and one steps ago
	for evals := 0; hi-lo > PLDSigmaTolerance*hi && evals < maxSigmaEvals; evals++ {
		xlo, xhi := math.Log(lo), math.Log(hi)
		x := xlo + (xhi-xlo)/2
		// Regula falsi, unless the last two steps failed to halve the bracket: epsilon is
		// only piecewise smooth in sigma (the grid changes with it), and bisecting then bounds
		// the search at about twice bisection's 20 steps.
		if xhi-xlo <= before/2 && !math.IsInf(flo, 0) && !math.IsInf(fhi, 0) && flo > fhi {
			x = (xlo*fhi - xhi*flo) / (fhi - flo)
		}
		before, last = last, xhi-xlo
		// Stay clear of the ends, so that each step removes at least a little of the bracket.
		margin := (xhi - xlo) / 64
		x = math.Min(math.Max(x, xlo+margin), xhi-margin)
		sigma := math.Exp(x)
		e, err := epsAt(sigma)
		if err != nil {
			return 0, err
		}
		if e <= target {
			hi, fhi = sigma, f(e)
			if side == 1 {
				flo /= 2
			}
			side = 1
		} else {
			lo, flo = sigma, f(e)
			if side == -1 {
				fhi /= 2
			}
			side = -1
		}
	}
	// hi always meets the target; only its distance from the smallest such sigma is at stake.
	return hi, nil
}

// maxSigmaEvals bounds refineSigma's evaluations (it needs 6 to 10 on smooth inputs): each
// composes a privacy loss distribution.
const maxSigmaEvals = 60

// ordersKey encodes orders for a cache key.
func ordersKey(orders []float64) string {
	buf := make([]byte, 0, 8*len(orders)+1)
	buf = append(buf, '|')
	for _, a := range orders {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(a))
	}
	return string(buf)
}
