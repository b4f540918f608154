package privacy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/cmplx"
	"slices"
	"sync"
)

// This file is the privacy loss distribution (PLD) accountant of the Poisson-subsampled Gaussian
// mechanism under add/remove adjacency. Its epsilon is an upper bound by construction, not an
// estimate:
//
//   - Plain Gaussian steps (q = 1) compose exactly: T_i steps of noise s_i are one Gaussian
//     mechanism of noise 1/sqrt(sum T_i/s_i^2), whose delta has a closed form (Balle and Wang
//     2018). A composition of such steps alone is answered from it, exactly; in a mixed
//     composition they are one step.
//   - Discretisation ("connect the dots", Doroshenko et al. 2022). The privacy loss L = log(P/Q)
//     under P lives on the grid k*h plus an atom at +infinity. The mass of P on each grid bin
//     (a, a+h] is split between a and a+h so that the mass and E[exp(-L)] (the mass of Q) are
//     kept. exp(-l) is convex, so the split is a mean-preserving spread in exp(-L), and every
//     hockey-stick divergence, E[(1 - exp(eps - L))+], can only grow: the discrete distribution
//     dominates the real one at every epsilon. Unlike rounding losses up, which shifts a
//     composition of T steps by up to T*h, the split adds at most h^2/8 to the mean of each step,
//     so 10,000 steps still agree with the exact Gaussian to 1e-4 at h = 1e-4.
//   - Truncation. The Gaussian is cut 9.3 standard deviations out (mass 7e-21). Above the last
//     grid point the same split goes between it and +infinity; below the first point the mass is
//     moved up to it. Both only add loss.
//   - Composition. Dominance survives composition (Zhu, Dong and Wang 2022), so the T-fold
//     composition is the T-th convolution power of the discrete distribution, computed as one
//     FFT, a T-th power per coefficient and one inverse FFT over a window that holds all but
//     pldWindowTail of the composition's mass on either side (a Chernoff bound on the exact
//     moment generating function of the discrete steps). The FFT is circular: mass below the
//     window wraps to high losses (pessimistic); mass above it would wrap to low losses, so its
//     Chernoff bound is added to the atom at infinity.
//   - Spectra. The parts' transforms (per grid and circle) and their powers (per count) are
//     cached, so that recomposing a history after one more round powers one part; and the
//     composed coefficients whose magnitude the parts bound below exp(-760) are not computed
//     (they underflow to zero, or to a few subnormals, when they are): n times their bound,
//     below 1e-315, joins the atom at infinity (see composedSpectrum).
//   - Rounding. The FFT and the powers leave errors spread over every entry, about as large as
//     the largest negative entry (where the mass is 0): twice that for every entry is added to
//     the atom at infinity. For 10,000 steps it is near 1e-13; where it is not small next to
//     delta (delta near 1e-12, or q far below 1/T over 10^5 steps) epsilon comes out large,
//     and the accountant's cross-check, Renyi DP, gives the bound.
//   - Add/remove adjacency. Removing a record gives the pair ((1-q)N(0,s^2) + qN(1,s^2),
//     N(0,s^2)); adding one the reverse. A neighbouring data set is one or the other for the
//     whole run, so each direction is composed on its own and the larger epsilon is reported
//     (as Google's dp_accounting does). With q = 1 both directions are the same Gaussian.

// SampledGaussian is Steps steps of the Poisson-subsampled Gaussian mechanism with sampling
// rate Q and noise multiplier Sigma (noise standard deviation over L2 sensitivity): one entry of
// an accountant's history, or one term of a composition handed to PLDEpsilon.
type SampledGaussian struct {
	// Q is the Poisson sampling rate, in [0, 1].
	Q float64 `json:"q"`
	// Sigma is the noise multiplier.
	Sigma float64 `json:"sigma"`
	// Steps is how many times the step is repeated.
	Steps int `json:"steps"`
}

// validate checks one composition term like Compose checks its arguments.
func (m SampledGaussian) validate() error {
	return validateMechanism(m.Q, m.Sigma, m.Steps)
}

const (
	// DefaultPLDInterval is the reference grid spacing of privacy losses (dp_accounting's
	// default). The accountant refines it by powers of two while the composed distribution
	// stays within pldTargetPoints, and coarsens it when the distribution is wider.
	DefaultPLDInterval = 1e-4
	// pldMinIntervalShift bounds the refinement: h >= DefaultPLDInterval / 2^8 (about 4e-7).
	// Finer bins would carry so little mass each that the split's cancellation (p - e^a r is
	// about p*h/2) would drown in the rounding of the normal CDF differences.
	pldMinIntervalShift = 8
	// pldTailZ is where the Gaussian is cut: the mass beyond 9.3 standard deviations is below
	// 1e-20, so even 10^6 steps put less than 1e-14 into the atom at infinity this way.
	pldTailZ = 9.3
	// pldWindowTail is the composed mass the FFT window may leave out on each side; what it
	// leaves out above is bounded and added to delta.
	pldWindowTail = 1e-15
	// pldTargetPoints is the composed grid size the spacing aims at: 2^18 points, a few
	// milliseconds per FFT, and 4e-6 of the window per point.
	pldTargetPoints = 1 << 18
	// pldBiasBudget is what the discretisation may add to epsilon, below T h^2/2 for T steps:
	// long compositions get a finer grid than pldTargetPoints, up to pldMaxPoints/2. 10,000
	// steps keep h = DefaultPLDInterval.
	pldBiasBudget = 5e-5
	// pldCoarsePoints is the widest step's grid size in the coarse pass that places the
	// window.
	pldCoarsePoints = 1 << 13
	// pldMaxPoints bounds the composed grid and pldMaxStepPoints one step's grid: they bound
	// memory (16 MiB per composed direction) and time.
	pldMaxPoints     = 1 << 21
	pldMaxStepPoints = 1 << 20
	// maxPLDParts is how many distinct (q, sigma) a PLD composition handles one by one; beyond
	// it they are merged pessimistically (see coarsenParts).
	maxPLDParts = 16
)

// direction is the adjacency a PLD describes.
type direction int8

const (
	// removeRecord: P = (1-q)N(0,s^2) + qN(1,s^2), Q = N(0,s^2).
	removeRecord direction = iota
	// addRecord: P = N(0,s^2), Q = (1-q)N(0,s^2) + qN(1,s^2).
	addRecord
)

// lossPMF is a discrete privacy loss distribution: mass[i] at loss (offset+i)*h and inf at
// +infinity.
type lossPMF struct {
	h      float64
	offset int
	mass   []float64
	inf    float64
}

// loss is the privacy loss at index i of mass.
func (p *lossPMF) loss(i int) float64 { return float64(p.offset+i) * p.h }

// delta is the hockey-stick divergence at eps: E[(1 - exp(eps - L))+] + P(L = infinity).
func (p *lossPMF) delta(eps float64) float64 {
	d := 0.0
	for i := len(p.mass) - 1; i >= 0; i-- {
		l := p.loss(i)
		if l <= eps {
			break
		}
		d += p.mass[i] * -math.Expm1(eps-l)
	}
	return math.Min(1, d+p.inf)
}

// epsilon is the smallest eps >= 0 with delta(eps) <= target (+Inf when the atom at infinity
// alone exceeds target). Walking down from the highest loss, it keeps A = sum of the masses
// above the current interval [l_k - h, l_k) and S = sum of mass_j exp(l_k - l_j) over them, so
// that delta(eps) = inf + A - exp(eps - l_k) S there, and solves that for eps exactly.
func (p *lossPMF) epsilon(target float64) float64 {
	if p.inf >= target {
		return math.Inf(1)
	}
	eh := math.Exp(-p.h)
	var a, s float64
	solve := func(lk, lo float64) float64 {
		if s <= 0 {
			return math.Max(lo, 0)
		}
		eps := lk + math.Log((p.inf+a-target)/s)
		return math.Max(math.Max(eps, lo), 0)
	}
	for k := len(p.mass) - 1; k >= 0; k-- {
		a += p.mass[k]
		s = s*eh + p.mass[k]
		lk := p.loss(k)
		lo := lk - p.h
		if lo <= 0 {
			// The interval reaches eps = 0: the answer is 0 if delta(0) is within target.
			if p.inf+a-math.Exp(-lk)*s <= target {
				return 0
			}
			return solve(lk, 0)
		}
		if p.inf+a-eh*s > target {
			return solve(lk, lo)
		}
	}
	// Every loss is above the first grid point and delta there is within target: below it
	// delta(eps) = inf + A - exp(eps - l_0) S with every mass in A and S.
	if len(p.mass) == 0 {
		return 0
	}
	return solve(p.loss(0), 0)
}

// stepPLD is one step's discretised PLD.
type stepPLD struct {
	lossPMF
	// lo and hi are the first and last indices of mass that are not zero.
	lo, hi int
	// key is what the step was built from, and what its spectra are cached under.
	key stepKey
	// mgf remembers logMGF's values: a window search evaluates it at the same lambdas for
	// every composition whose search takes the same path, and a step outlives many of them.
	mgfMu sync.Mutex
	mgf   map[float64]float64
}

// logMix is log(1 - q + q e^s) without overflow or cancellation.
func logMix(q, s float64) float64 {
	switch {
	case q == 1:
		return s
	case s > 0:
		return s + math.Log1p((1-q)*math.Expm1(-s))
	default:
		return math.Log1p(q * math.Expm1(s))
	}
}

// removeThreshold is the x with remove-direction loss log(1 - q + q exp((2x-1)/(2s^2))) = l:
// {L <= l} = {x <= removeThreshold(l)}. It is -Inf when l <= log(1-q), below every loss.
func removeThreshold(q, sigma, l float64) float64 {
	v := sigma * sigma
	if q == 1 {
		return v*l + 0.5
	}
	var logRatio float64 // log((e^l - (1-q)) / q)
	if l > 30 {
		logRatio = l + math.Log1p(-(1-q)*math.Exp(-l)) - math.Log(q)
	} else {
		d := math.Expm1(l) + q
		if d <= 0 {
			return math.Inf(-1)
		}
		logRatio = math.Log(d) - math.Log(q)
	}
	return v*logRatio + 0.5
}

// normCDF and normSF are the standard normal's distribution and survival functions, each
// accurate in its own tail.
func normCDF(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }
func normSF(z float64) float64  { return 0.5 * math.Erfc(z/math.Sqrt2) }

// split is the N(0,s^2) (c0) and N(1,s^2) (c1) mass on each side of a loss threshold: below
// (L <= l) and above (L > l). The smaller side of each comes from erfc directly and the other
// is its complement, so that a difference of two of them can be taken where both are small.
type split struct{ below0, above0, below1, above1 float64 }

// sides returns (below, above) for a threshold at z standard deviations: one erfc.
func sides(z float64) (below, above float64) {
	if z < 0 {
		below = normCDF(z)
		return below, 1 - below
	}
	above = normSF(z)
	return 1 - above, above
}

// sideMass is the mass between two thresholds t < u of one component, from whichever side
// keeps precision: both below 0.5, both above 0.5, or one on each side.
func sideMass(belowT, aboveT, belowU, aboveU float64) float64 {
	switch {
	case belowU <= 0.5:
		return math.Max(belowU-belowT, 0)
	case aboveT <= 0.5:
		return math.Max(aboveT-aboveU, 0)
	default:
		return math.Max(1-belowT-aboveU, 0)
	}
}

// newStepPLD discretises one step of the Poisson-subsampled Gaussian (q in (0, 1], sigma > 0)
// in direction dir on the grid of spacing h.
func newStepPLD(q, sigma, h float64, dir direction) (*stepPLD, error) {
	lmin, lmax := stepLossRange(q, sigma, dir)
	kLo, kHi := int(math.Floor(lmin/h)), int(math.Ceil(lmax/h))
	if kHi-kLo+1 > pldMaxStepPoints || kHi < kLo {
		return nil, fmt.Errorf("pld step q=%v sigma=%v: %d grid points at spacing %v: %w", q, sigma, kHi-kLo+1, h, ErrNumerical)
	}
	n := kHi - kLo + 1
	at := func(k int) split {
		l := float64(k) * h
		var sp split
		if dir == removeRecord {
			x := removeThreshold(q, sigma, l)
			sp.below0, sp.above0 = sides(x / sigma)
			sp.below1, sp.above1 = sides((x - 1) / sigma)
			return sp
		}
		// add: L(x) = -removeLoss(x), so {L <= l} = {x >= removeThreshold(-l)}.
		x := removeThreshold(q, sigma, -l)
		sp.above0, sp.below0 = sides(x / sigma)
		sp.above1, sp.below1 = sides((x - 1) / sigma)
		return sp
	}
	// pMass is P's mass from the components' masses (Q's enters only through excess).
	pMass := func(d0, d1 float64) float64 {
		if dir == removeRecord {
			return (1-q)*d0 + q*d1
		}
		return d0
	}
	// excess is p - e^a r, the part of the P-mass above e^a times the Q-mass, written so that
	// the exponentials cancel exactly; scaled multiplies in log space, so that a huge e^a
	// times a mass that underflowed to 0 is 0, not NaN.
	excess := func(a, d0, d1 float64) float64 {
		if dir == removeRecord {
			return q*d1 - scaled(math.Expm1(a)+q, d0)
		}
		return scaled(q*math.Exp(a)-math.Expm1(a), d0) - scaled(math.Exp(a), q*d1)
	}
	spread := -math.Expm1(-h) // 1 - e^{-h}

	d := &stepPLD{lossPMF: lossPMF{h: h, offset: kLo, mass: make([]float64, n)}, key: stepKey{q, sigma, h, dir}}
	cur := at(kLo)
	// Below the grid: round up to its first point.
	d.mass[0] += pMass(cur.below0, cur.below1)
	for i := range n - 1 {
		next := at(kLo + i + 1)
		d0 := sideMass(cur.below0, cur.above0, next.below0, next.above0)
		d1 := sideMass(cur.below1, cur.above1, next.below1, next.above1)
		if p := pMass(d0, d1); p > 0 {
			up := math.Min(math.Max(excess(float64(kLo+i)*h, d0, d1)/spread, 0), p)
			d.mass[i+1] += up
			d.mass[i] += p - up
		}
		cur = next
	}
	// Above the grid: split between the last point and +infinity (e^{-infinity} = 0), keeping
	// E[exp(-L)]: the atom gets p - e^b r, which is delta(b).
	if p := pMass(cur.above0, cur.above1); p > 0 {
		inf := math.Min(math.Max(excess(float64(kHi)*h, cur.above0, cur.above1), 0), p)
		d.inf = inf
		d.mass[n-1] += p - inf
	}
	d.lo, d.hi = 0, n-1
	for d.lo < n-1 && d.mass[d.lo] == 0 {
		d.lo++
	}
	for d.hi > d.lo && d.mass[d.hi] == 0 {
		d.hi--
	}
	return d, nil
}

// scaled is c*x for x >= 0, 0 when x is 0 whatever c is, and through logarithms when the
// product would overflow in between.
func scaled(c, x float64) float64 {
	switch {
	case x == 0:
		return 0
	case math.IsInf(c, 0) || math.Abs(c) > 1e300:
		return math.Copysign(math.Exp(math.Log(math.Abs(c))+math.Log(x)), c)
	}
	return c * x
}

// stepLossRange is the range of losses one step's grid must cover: the losses at the cut of
// P's components, pldTailZ standard deviations beyond their means (with q = 1 the remove
// direction's P has no N(0, s^2) component, and the add direction is the same distribution).
func stepLossRange(q, sigma float64, dir direction) (lmin, lmax float64) {
	removeLoss := func(x float64) float64 { return logMix(q, (2*x-1)/(2*sigma*sigma)) }
	z := pldTailZ * sigma
	switch {
	case q == 1:
		return removeLoss(1 - z), removeLoss(1 + z)
	case dir == removeRecord:
		return removeLoss(-z), removeLoss(1 + z)
	}
	return -removeLoss(z), -removeLoss(-z)
}

// maxMGFMemo bounds a step's remembered logMGF values (a window search takes about 40).
const maxMGFMemo = 1024

// logMGF is log E[exp(lambda L); L finite] for lambda != 0 (see computeLogMGF), remembered:
// the value for a lambda is the one its first computation gave.
func (d *stepPLD) logMGF(lambda float64) float64 {
	d.mgfMu.Lock()
	v, ok := d.mgf[lambda]
	d.mgfMu.Unlock()
	if ok {
		return v
	}
	v = d.computeLogMGF(lambda)
	d.mgfMu.Lock()
	if d.mgf == nil || len(d.mgf) >= maxMGFMemo {
		d.mgf = make(map[float64]float64)
	}
	d.mgf[lambda] = v
	d.mgfMu.Unlock()
	return v
}

// computeLogMGF is log E[exp(lambda L); L finite] for lambda != 0, exact up to rounding,
// which the margin covers: Horner's scheme in exp(-|lambda| h), from the lowest loss up for
// lambda > 0 and from the highest down for lambda < 0, so that no power overflows. Four terms
// per iteration break the chain of dependent multiplications.
func (d *stepPLD) computeLogMGF(lambda float64) float64 {
	r := math.Exp(-math.Abs(lambda) * d.h)
	r2 := r * r
	r3, r4 := r2*r, r2*r2
	m := d.mass[d.lo : d.hi+1]
	acc := 0.0
	if lambda > 0 {
		i := 0
		for ; i+4 <= len(m); i += 4 {
			acc = acc*r4 + (m[i]*r3 + m[i+1]*r2 + m[i+2]*r + m[i+3])
		}
		for ; i < len(m); i++ {
			acc = acc*r + m[i]
		}
	} else {
		i := len(m) - 1
		for ; i >= 3; i -= 4 {
			acc = acc*r4 + (m[i]*r3 + m[i-1]*r2 + m[i-2]*r + m[i-3])
		}
		for ; i >= 0; i-- {
			acc = acc*r + m[i]
		}
	}
	const margin = 1e-9 // relative rounding of up to 2^20 additions is far below this
	end := d.loss(d.hi)
	if lambda < 0 {
		end = d.loss(d.lo)
	}
	return math.Log(acc) + lambda*end + margin
}

// pldPart is one distinct step of a composition and how often it is repeated.
type pldPart struct {
	step  *stepPLD
	count float64
}

// logMGF is log E[exp(lambda S); S finite] of the composed loss S: a sum over the parts.
func logMGF(parts []pldPart, lambda float64) float64 {
	k := 0.0
	for _, p := range parts {
		k += p.count * p.step.logMGF(lambda)
	}
	return k
}

// supportOf is the lowest and highest composed loss index with mass.
func supportOf(parts []pldPart) (kMin, kMax float64) {
	for _, p := range parts {
		kMin += p.count * float64(p.step.offset+p.step.lo)
		kMax += p.count * float64(p.step.offset+p.step.hi)
	}
	return kMin, kMax
}

// pldWindow is where the composed loss lies but for pldWindowTail on either side (Chernoff:
// mass(S >= t) <= exp(K(lambda) - lambda t) for lambda > 0 and mass(S <= t) <= exp(K(-mu) +
// mu t) for mu > 0), in losses, and the lambda of the upper bound.
func pldWindow(parts []pldPart) (lo, hi, lambda float64) {
	logTail := math.Log(1 / pldWindowTail)
	upper, lambda := minimiseLog(func(l float64) float64 { return (logMGF(parts, l) + logTail) / l })
	lower, _ := minimiseLog(func(mu float64) float64 { return (logMGF(parts, -mu) + logTail) / mu })
	h := parts[0].step.h
	kMin, kMax := supportOf(parts)
	lo, hi = math.Max(kMin*h, -lower), math.Min(kMax*h, upper)
	if !(hi >= lo) {
		lo, hi = kMin*h, kMax*h
	}
	return lo, hi, lambda
}

// composeParts composes the parts' steps (all on one grid) by FFT over the window [lo, hi]
// of losses. The result holds every composed loss in its window exactly, and in inf the atoms
// at infinity and the bound, at lambda, on the mass above the window.
func composeParts(parts []pldPart, lo, hi, lambda float64) (*lossPMF, error) {
	h := parts[0].step.h
	kMin, kMax := supportOf(parts)
	loIdx := math.Max(kMin, math.Floor(lo/h))
	hiIdx := math.Min(kMax, math.Ceil(hi/h))
	if !(hiIdx >= loIdx) {
		loIdx, hiIdx = kMin, kMax
	}
	width := hiIdx - loIdx + 1
	if width > pldMaxPoints {
		return nil, fmt.Errorf("composed privacy loss needs %.0f grid points at spacing %v: %w", width, h, ErrNumerical)
	}
	n := fftSize(int(width))
	kLo := int(loIdx)
	kHi := kLo + n - 1
	logFinite := 0.0
	for _, p := range parts {
		logFinite += p.count * math.Log1p(-p.step.inf)
	}
	inf := -math.Expm1(logFinite)
	if float64(kHi) < kMax {
		// The bound on the mass above the window, which the circular convolution folds onto
		// low losses, joins the atom at infinity.
		inf = math.Min(1, inf+math.Exp(logMGF(parts, lambda)-lambda*float64(kHi+1)*h))
	}

	sc := getScratch(n)
	defer putScratch(sc)
	buf := sc.buf
	total, dropped := composedSpectrum(parts, sc)
	sc.fft.Sequence(buf, total)
	out := &lossPMF{h: h, offset: kLo, mass: make([]float64, n)}
	scale := 1 / float64(n)
	noise := 0.0
	j := mod(kLo, n) // buf's index of out.mass[i], mod(kLo+i, n)
	for i := range out.mass {
		// Rounding leaves tiny negative values where the mass is 0; they are dropped, which
		// can only add loss, and their size measures the rounding of every entry.
		v := buf[j] * scale
		noise = max(noise, -v)
		out.mass[i] = max(v, 0)
		if j++; j == n {
			j = 0
		}
	}
	// The FFT's rounding (and the powers') is spread over all n entries, about as large as the
	// largest negative one: twice that on every entry joins the atom at infinity, so that
	// mass the rounding took from a high loss is still counted. It is far below any delta in
	// use (about 1e-13 for 10,000 steps); a delta too small to be told from it gets a large
	// epsilon, and RDP's bound is the smaller.
	out.inf = math.Min(1, inf+2*noise*float64(n)+dropped)
	return out, nil
}

// pldDropLog is where composedSpectrum stops computing a coefficient of the composition: when
// the product of its parts' powers is certainly below exp(pldDropLog) in magnitude. Such a
// coefficient underflows to zero (or to a few subnormals, below 1e-321) when it is computed;
// in a long composition most of them do (the composed loss is smooth, its spectrum narrow).
const pldDropLog = -760

// composedSpectrum is the Fourier transform of the composition of parts (all on one grid)
// on sc's circle of n points: for each coefficient, the product in order of the parts'
// coefficients, each raised to its count by powComplex. Every coefficient it computes is bit
// for bit what computing them all gives; those that the parts' spectra bound below
// exp(pldDropLog) in magnitude are left at zero. dropped is n times what that can take from
// an entry of the inverse transform (scaled by 1/n): the mass the caller adds to the atom at
// infinity, below 1e-315. In every composition tried, the inverse transform came out bit for
// bit that of computing every coefficient (TestComposedSpectrumMatchesEveryCoefficient).
// The spectra and the powers come from caches, so that composing a history again after one
// more round raises one part to a new count and transforms nothing. total is sc.total.
func composedSpectrum(parts []pldPart, sc *composeScratch) (total []complex128, dropped float64) {
	fft, buf, n := sc.fft, sc.buf, len(sc.buf)
	half := n/2 + 1
	spectra := make([]*stepSpectrum, len(parts))
	fresh := make([]bool, len(parts))
	for k, p := range parts {
		sp, ok := pldCaches.spectra.get(spectrumKey{p.step.key, n})
		if !ok {
			sp, fresh[k] = newStepSpectrum(p.step, fft, buf), true
		}
		spectra[k] = sp
	}
	// The bound, the sum over parts of count times log|coefficient| (each rounded up), and
	// need, the coefficients up to the last that the bound does not leave out. Beyond a
	// cached spectrum's first coefficients the bound is per block; should a part then not
	// hold the first need, it is computed again, in full, and the bound with it.
	bound := sc.bound
	need := 0
	for {
		clear(bound)
		for k, p := range parts {
			spectra[k].addLogBound(bound, p.count)
		}
		need = 0
		for i := half - 1; i >= 0; i-- {
			if bound[i] >= pldDropLog {
				need = i + 1
				break
			}
		}
		short := false
		for k, p := range parts {
			if len(spectra[k].coef) < need {
				spectra[k], fresh[k], short = newStepSpectrum(p.step, fft, buf), true, true
			}
		}
		if !short {
			break
		}
	}
	for k, p := range parts {
		if sp := spectra[k]; fresh[k] || len(sp.coef) > trimmedLen(need)*3/2 {
			// A new spectrum, or one that holds half as much again as the history now needs
			// (its spectrum narrows as it grows).
			pldCaches.spectra.put(spectrumKey{p.step.key, n}, sp.trimmed(need))
		}
	}
	total = sc.total
	clear(total)
	for i := range need {
		if bound[i] >= pldDropLog {
			total[i] = 1
		}
	}
	for k, p := range parts {
		powers := cachedPowers(spectrumKey{p.step.key, n}, spectra[k].coef, p.count, need)
		for i := range need {
			if bound[i] >= pldDropLog {
				total[i] *= powers[i]
			}
		}
	}
	if need < half || slices.ContainsFunc(bound[:need], func(b float64) bool { return b < pldDropLog }) {
		// A dropped coefficient was below exp(pldDropLog) up to rounding (the factor 2) plus
		// half a subnormal per component for each multiplication; each entry of the inverse
		// transform (scaled by 1/n) moves by at most that.
		dropped = float64(n) * (2*math.Exp(pldDropLog) + float64(len(parts)+1)*0x1p-1073)
	}
	pldCaches.spectra.expire(spectrumAge)
	pldCaches.powers.expire(powersAge)
	return total, dropped
}

// minimiseLog minimises a unimodal f over lambda in [1e-6, 1e10] by golden-section search on
// log lambda, and returns the minimum and where it is.
func minimiseLog(f func(float64) float64) (float64, float64) {
	const phi = 0.6180339887498949
	a, b := math.Log(1e-6), math.Log(1e10)
	c, d := b-phi*(b-a), a+phi*(b-a)
	fc, fd := f(math.Exp(c)), f(math.Exp(d))
	for b-a > 1e-2 {
		if fc <= fd {
			b, d, fd = d, c, fc
			c = b - phi*(b-a)
			fc = f(math.Exp(c))
		} else {
			a, c, fc = c, d, fd
			d = a + phi*(b-a)
			fd = f(math.Exp(d))
		}
	}
	if fc <= fd {
		return fc, math.Exp(c)
	}
	return fd, math.Exp(d)
}

// fftSize is the smallest 2^a, 3*2^a or 5*2^a that is at least n: sizes the FFT factors well.
func fftSize(n int) int {
	best := math.MaxInt
	for _, f := range []int{1, 3, 5} {
		s := f
		for s < n {
			s *= 2
		}
		best = min(best, s)
	}
	return best
}

// mod is the non-negative remainder.
func mod(a, n int) int {
	r := a % n
	if r < 0 {
		r += n
	}
	return r
}

// powComplex is c^t for a real t >= 1, through polar form: the magnitude underflows to 0 for
// the high frequencies of a long composition, which is what makes their power cheap.
func powComplex(c complex128, t float64) complex128 {
	if t == 1 {
		return c
	}
	r := cmplx.Abs(c)
	if r == 0 {
		return 0
	}
	lr := t * math.Log(r)
	if lr < -745 {
		return 0
	}
	m := math.Exp(lr)
	sin, cos := math.Sincos(t * cmplx.Phase(c))
	return complex(m*cos, m*sin)
}

// pldParts checks a composition and reduces it to its distinct (q, sigma) with their step
// counts, sorted, without the terms that release nothing (q = 0 or no steps). Every term with
// q = 1 is a plain Gaussian mechanism, and Gaussian mechanisms compose exactly into one: noise
// multipliers s_i over T_i steps act as one step of 1/sqrt(sum T_i/s_i^2) (their privacy loss
// distributions are Gaussians whose means and variances add). They become that one step, which
// is both exact and one discretisation instead of many. noNoise reports a term with sigma = 0
// and q > 0: no finite guarantee.
func pldParts(mechs []SampledGaussian) (parts []SampledGaussian, noNoise bool, err error) {
	gaussian := 0.0 // sum of T_i / s_i^2 over the terms with q = 1
	for i, m := range mechs {
		if err := m.validate(); err != nil {
			return nil, false, fmt.Errorf("composition term %d: %w", i, err)
		}
		switch {
		case m.Q == 0 || m.Steps == 0:
		case m.Sigma == 0:
			return nil, true, nil
		case m.Q == 1:
			gaussian += float64(m.Steps) / (m.Sigma * m.Sigma)
		default:
			parts = mergeInto(parts, m)
		}
	}
	if gaussian > 0 {
		parts = append(parts, SampledGaussian{Q: 1, Sigma: 1 / math.Sqrt(gaussian), Steps: 1})
	}
	parts = coarsenParts(parts)
	slices.SortFunc(parts, func(a, b SampledGaussian) int {
		if c := cmp.Compare(a.Q, b.Q); c != 0 {
			return c
		}
		return cmp.Compare(a.Sigma, b.Sigma)
	})
	return parts, false, nil
}

// coarsenParts bounds the number of distinct steps a composition handles (each costs an FFT)
// by merging them pessimistically: a merged group has the group's highest q and lowest sigma.
// Less noise and a higher sampling rate give a mechanism that dominates each original (the
// extra noise and the thinner sampling are post-processing of it), so the merged
// composition's epsilon is an upper bound. A fine geometric grid (sigma rounded down, q up,
// the ratio doubling from 1/4096) first brings the count to 4*maxPLDParts; then the pair whose
// merge adds the least order-2 Renyi divergence is merged until maxPLDParts remain. A run meets this only when many rounds lose different
// numbers of contributors.
func coarsenParts(parts []SampledGaussian) []SampledGaussian {
	if len(parts) <= maxPLDParts {
		return parts
	}
	merged := parts
	for ratio := 1.0 / 4096; len(merged) > 4*maxPLDParts; ratio *= 2 {
		step := math.Log1p(ratio)
		merged = nil
		for _, p := range parts {
			sigma := math.Min(p.Sigma, math.Exp(math.Floor(math.Log(p.Sigma)/step)*step))
			q := math.Max(p.Q, math.Min(1, math.Exp(math.Ceil(math.Log(p.Q)/step)*step)))
			merged = mergeInto(merged, SampledGaussian{Q: q, Sigma: sigma, Steps: p.Steps})
		}
	}
	merged = slices.Clone(merged)
	// What a merge costs: the steps it weakens times how much more each then spends, measured
	// by the order-2 Renyi divergence of the step, log(1 + q^2 (exp(1/sigma^2) - 1)).
	spend := func(m SampledGaussian) float64 { return math.Log1p(m.Q * m.Q * math.Expm1(1/(m.Sigma*m.Sigma))) }
	cost := func(a, b SampledGaussian) float64 {
		both := spend(SampledGaussian{Q: math.Max(a.Q, b.Q), Sigma: math.Min(a.Sigma, b.Sigma)})
		return float64(a.Steps)*(both-spend(a)) + float64(b.Steps)*(both-spend(b))
	}
	for len(merged) > maxPLDParts {
		bi, bj, best := 0, 1, math.Inf(1)
		for i := range merged {
			for j := i + 1; j < len(merged); j++ {
				if c := cost(merged[i], merged[j]); c < best {
					bi, bj, best = i, j, c
				}
			}
		}
		a, b := merged[bi], merged[bj]
		merged[bi] = SampledGaussian{Q: math.Max(a.Q, b.Q), Sigma: math.Min(a.Sigma, b.Sigma), Steps: a.Steps + b.Steps}
		merged = slices.Delete(merged, bj, bj+1)
	}
	return merged
}

// mergeInto adds m to parts, merging it with an entry of the same (q, sigma).
func mergeInto(parts []SampledGaussian, m SampledGaussian) []SampledGaussian {
	if j := slices.IndexFunc(parts, func(p SampledGaussian) bool { return p.Q == m.Q && p.Sigma == m.Sigma }); j >= 0 {
		parts[j].Steps += m.Steps
		return parts
	}
	return append(parts, m)
}

// composedPLD composes the parts (distinct, sorted, q > 0, sigma > 0) in one direction. A
// coarse grid (pldCoarsePoints for the widest step) places the window; the spacing is then
// DefaultPLDInterval times the power of two that gives the window about pldTargetPoints
// points, or finer if the number of steps needs it for pldBiasBudget (but never more than
// pldMaxPoints/2 points, never finer than pldMinIntervalShift halvings, nor so fine that a
// step exceeds pldMaxStepPoints), and the composition is computed there.
func composedPLD(parts []SampledGaussian, dir direction) (*lossPMF, error) {
	build := func(h float64) ([]pldPart, error) {
		out := make([]pldPart, len(parts))
		for i, p := range parts {
			s, err := cachedStep(p.Q, p.Sigma, h, dir)
			if err != nil {
				return nil, err
			}
			out[i] = pldPart{step: s, count: float64(p.Steps)}
		}
		return out, nil
	}
	widest := 0.0
	for _, p := range parts {
		lmin, lmax := stepLossRange(p.Q, p.Sigma, dir)
		widest = math.Max(widest, lmax-lmin)
	}
	spacing := func(width, points float64) int {
		if !(width > 0) {
			return -pldMinIntervalShift // a step at a single loss: any grid holds it
		}
		return int(math.Ceil(math.Log2(width / points / DefaultPLDInterval)))
	}
	if len(parts) == 1 && parts[0].Steps == 1 {
		// One step is its own composition: no FFT, no window, no rounding beyond the step's.
		shift := max(spacing(widest, pldTargetPoints), -pldMinIntervalShift)
		step, err := build(math.Ldexp(DefaultPLDInterval, shift))
		if err != nil {
			return nil, err
		}
		s := step[0].step
		return &lossPMF{h: s.h, offset: s.offset + s.lo, mass: s.mass[s.lo : s.hi+1], inf: s.inf}, nil
	}
	coarse, err := build(math.Ldexp(DefaultPLDInterval, max(spacing(widest, pldCoarsePoints), -pldMinIntervalShift)))
	if err != nil {
		return nil, err
	}
	lo, hi, _ := pldWindow(coarse)
	// Each step's split adds at most h^2/8 to its mean loss and h^2/4 to its variance, which
	// moves the epsilon of T steps by less than T h^2/2 (0.25 to 0.45 T h^2 measured against
	// the exact Gaussian): keep that within pldBiasBudget.
	steps := 0.0
	for _, p := range parts {
		steps += float64(p.Steps)
	}
	accurate := int(math.Floor(math.Log2(math.Sqrt(2*pldBiasBudget/steps)/DefaultPLDInterval) + 1e-9))
	shift := max(min(spacing(hi-lo, pldTargetPoints), accurate), spacing(hi-lo, pldMaxPoints/2),
		spacing(widest, pldMaxStepPoints-2), -pldMinIntervalShift)
	// The coarse grid only sets the spacing: its split moves low losses up, so its window can
	// start too high for the fine grid (and what lies below the window would wrap to the top).
	// The window is placed again with the fine grid's exact moment generating function, and
	// the spacing doubles should that window not fit.
	for range 8 {
		fine, err := build(math.Ldexp(DefaultPLDInterval, shift))
		if err != nil {
			return nil, err
		}
		lo, hi, lambda := pldWindow(fine)
		if width := (hi - lo) / fine[0].step.h; width > pldMaxPoints-2 {
			shift += int(math.Ceil(math.Log2(width / (pldMaxPoints / 2))))
			continue
		}
		return composeParts(fine, lo, hi, lambda)
	}
	return nil, fmt.Errorf("pld: no grid spacing holds the composition: %w", ErrNumerical)
}

// pldComposition is the composed PLD of a composition in both directions (one when every
// step has q = 1, where they coincide).
type pldComposition struct {
	dirs []*lossPMF
}

func (c *pldComposition) epsilon(delta float64) float64 {
	eps := 0.0
	for _, d := range c.dirs {
		eps = math.Max(eps, d.epsilon(delta))
	}
	return eps
}

func (c *pldComposition) delta(eps float64) float64 {
	delta := 0.0
	for _, d := range c.dirs {
		delta = math.Max(delta, d.delta(eps))
	}
	return delta
}

// composePLD builds (or finds in the cache) the composed PLD of parts, the two directions
// side by side: they share nothing, and a cold call is dominated by building their steps.
func composePLD(parts []SampledGaussian) (*pldComposition, error) {
	key := partsKey(parts)
	if c, ok := pldCaches.composed.get(key); ok {
		return c, nil
	}
	dirs := []direction{removeRecord}
	if slices.ContainsFunc(parts, func(p SampledGaussian) bool { return p.Q < 1 }) {
		dirs = append(dirs, addRecord)
	}
	c := &pldComposition{dirs: make([]*lossPMF, len(dirs))}
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Go(func() { c.dirs[i], errs[i] = composedPLD(parts, dir) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	pldCaches.composed.put(key, c)
	return c, nil
}

// PLDEpsilon is the epsilon at delta of the composition of the given Poisson-subsampled
// Gaussian steps under add/remove adjacency, by privacy loss distributions: an upper bound on
// the exact value, within about 1e-4 of it (see the top of pld.go). Terms with q = 0 or no
// steps release nothing; a term with sigma = 0 and q > 0 makes epsilon +Inf. delta = 0 gives
// +Inf unless nothing is released.
func PLDEpsilon(mechs []SampledGaussian, delta float64) (float64, error) {
	if math.IsNaN(delta) || delta < 0 || delta > 1 {
		return 0, fmt.Errorf("delta=%v, want 0 <= delta <= 1: %w", delta, ErrInvalidArgument)
	}
	parts, noNoise, err := pldParts(mechs)
	switch {
	case err != nil:
		return 0, err
	case noNoise:
		return math.Inf(1), nil
	case len(parts) == 0:
		return 0, nil
	case delta == 0:
		return math.Inf(1), nil
	case delta == 1:
		return 0, nil
	}
	if len(parts) == 1 && parts[0].Q == 1 {
		return gaussianEpsilon(parts[0].Sigma, delta), nil
	}
	key := epsKey{parts: partsKey(parts), delta: delta}
	if eps, ok := pldCaches.epsilon.get(key); ok {
		return eps, nil
	}
	c, err := composePLD(parts)
	if err != nil {
		return 0, err
	}
	eps := c.epsilon(delta)
	pldCaches.epsilon.put(key, eps)
	return eps, nil
}

// PLDDelta is the delta at epsilon of the same composition: an upper bound on the exact
// hockey-stick divergence, the larger of the two adjacency directions.
func PLDDelta(mechs []SampledGaussian, epsilon float64) (float64, error) {
	if math.IsNaN(epsilon) || epsilon < 0 {
		return 0, fmt.Errorf("epsilon=%v, want >= 0: %w", epsilon, ErrInvalidArgument)
	}
	parts, noNoise, err := pldParts(mechs)
	switch {
	case err != nil:
		return 0, err
	case noNoise:
		return 1, nil
	case len(parts) == 0:
		return 0, nil
	case len(parts) == 1 && parts[0].Q == 1:
		return gaussianDelta(parts[0].Sigma, epsilon), nil
	}
	c, err := composePLD(parts)
	if err != nil {
		return 0, err
	}
	return c.delta(epsilon), nil
}

// gaussianDelta is the exact delta at eps of the Gaussian mechanism with sensitivity 1 and
// noise s (Balle and Wang 2018, Theorem 8): Phi(1/(2s) - eps s) - e^eps Phi(-1/(2s) - eps s),
// the second term in log space so that e^eps cannot overflow.
func gaussianDelta(s, eps float64) float64 {
	a := normCDF(1/(2*s) - eps*s)
	b := math.Exp(eps + math.Log(0.5) + logErfc((1/(2*s)+eps*s)/math.Sqrt2))
	return math.Min(1, math.Max(a-b, 0))
}

// gaussianEpsilon is the smallest eps >= 0 with gaussianDelta(s, eps) <= delta, by bisection
// to the last bit, erring high. delta falls with eps.
func gaussianEpsilon(s, delta float64) float64 {
	if gaussianDelta(s, 0) <= delta {
		return 0
	}
	lo, hi := 0.0, 1.0
	for gaussianDelta(s, hi) > delta {
		lo, hi = hi, 2*hi
		if math.IsInf(hi, 1) {
			return hi
		}
	}
	for range 200 {
		mid := lo + (hi-lo)/2
		if mid <= lo || mid >= hi {
			break
		}
		if gaussianDelta(s, mid) > delta {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}
