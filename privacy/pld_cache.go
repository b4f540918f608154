package privacy

import (
	"container/list"
	"encoding/binary"
	"math"
	"math/cmplx"
	"slices"
	"sync"

	"gonum.org/v1/gonum/dsp/fourier"
)

// The PLD accountant is called often with the same arguments: the coordinator checks the
// budget before a round and records the same composition after it, every client of a run
// admits the same releases into its ledger, and a sigma search builds the same steps at
// nearby grids. These caches are shared by every accountant in the process (so they are safe
// for concurrent use) and bounded; what they hold is a pure function of its key, so a hit
// returns exactly what a recomputation would.

// lru is a small least-recently-used map, bounded by the number of its values or, with a
// weigh function, by their total weight (it always keeps the most recent value). expire drops
// the values not used recently.
type lru[K comparable, V any] struct {
	mu     sync.Mutex
	max    int
	weigh  func(V) int
	weight int
	tick   int // advanced by expire; a value's stamp is the tick of its last use
	items  map[K]*list.Element
	order  *list.List // front: most recent; values are *lruEntry
}

type lruEntry[K comparable, V any] struct {
	key   K
	value V
	stamp int
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return newWeighedLRU[K](max, func(V) int { return 1 })
}

func newWeighedLRU[K comparable, V any](max int, weigh func(V) int) *lru[K, V] {
	return &lru[K, V]{max: max, weigh: weigh, items: make(map[K]*list.Element), order: list.New()}
}

func (c *lru[K, V]) get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.order.MoveToFront(e)
		entry := e.Value.(*lruEntry[K, V])
		entry.stamp = c.tick
		return entry.value, true
	}
	var zero V
	return zero, false
}

func (c *lru[K, V]) put(key K, value V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		entry := e.Value.(*lruEntry[K, V])
		c.weight -= c.weigh(entry.value)
		entry.value, entry.stamp = value, c.tick
		c.order.MoveToFront(e)
	} else {
		c.items[key] = c.order.PushFront(&lruEntry[K, V]{key, value, c.tick})
	}
	c.weight += c.weigh(value)
	for c.weight > c.max && c.order.Len() > 1 {
		c.removeLast()
	}
}

// expire advances the cache's clock by one and drops the values last used more than age
// ticks ago.
func (c *lru[K, V]) expire(age int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	for c.order.Len() > 0 && c.order.Back().Value.(*lruEntry[K, V]).stamp < c.tick-age {
		c.removeLast()
	}
}

func (c *lru[K, V]) removeLast() {
	last := c.order.Back()
	entry := last.Value.(*lruEntry[K, V])
	c.order.Remove(last)
	delete(c.items, entry.key)
	c.weight -= c.weigh(entry.value)
}

// stepKey identifies one discretised step.
type stepKey struct {
	q, sigma, h float64
	dir         direction
}

// epsKey identifies one epsilon query.
type epsKey struct {
	parts string
	delta float64
}

// sigmaKey identifies one noise search: the composition already spent (or reserved), the
// steps to add, and the target.
type sigmaKey struct {
	spent          string
	q              float64
	steps          int
	delta, epsilon float64
}

// The step cache holds 96 steps: one composition of maxPLDParts parts needs up to 64 (two
// directions, a coarse and a fine grid), and a coordinator composes the run's history every
// round with mostly the same steps; with 32 it rebuilt every step every round (about 1 s a
// round in configs/sim-app-he.yaml, whose rounds lose different numbers of contributors).
// pldCaches are the process-wide caches. Steps are at most 8 MiB each (pldMaxStepPoints
// float64s) and usually far less; a composition holds up to two grids of pldMaxPoints, and
// two are kept (a run asks each composition of its history for one epsilon, which the epsilon
// cache keeps). Spectra and powers are bounded by their bytes and dropped when unused.
var pldCaches = newPLDCaches()

// pldCacheSet is the set of caches (newPLDCaches gives empty ones of the production sizes).
type pldCacheSet struct {
	steps    *lru[stepKey, *stepPLD]
	spectra  *lru[spectrumKey, *stepSpectrum]
	powers   *lru[powersKey, []complex128]
	composed *lru[string, *pldComposition]
	epsilon  *lru[epsKey, float64]
	sigma    *lru[sigmaKey, float64]
}

func newPLDCaches() pldCacheSet {
	return pldCacheSet{
		steps:    newLRU[stepKey, *stepPLD](96),
		spectra:  newSpectrumCache(),
		powers:   newPowersCache(),
		composed: newLRU[string, *pldComposition](2),
		epsilon:  newLRU[epsKey, float64](1024),
		sigma:    newLRU[sigmaKey, float64](256),
	}
}

// maxSpectrumBytes bounds the spectra cache: the history of a run that loses contributors has
// up to 2 x 17 parts (two directions), up to 2.5 MiB each on a circle of 2^18 points (20
// bytes a coefficient), far less once the composition is long (see stepSpectrum.trimmed).
// Spectra not used in the last spectrumAge compositions (one per direction) are dropped:
// those of a grid the history has left, of a step it no longer has.
const (
	maxSpectrumBytes = 64 << 20
	spectrumAge      = 16
)

func newSpectrumCache() *lru[spectrumKey, *stepSpectrum] {
	return newWeighedLRU[spectrumKey](maxSpectrumBytes, (*stepSpectrum).bytes)
}

// spectrumKey identifies a step's spectrum on a circle of n points.
type spectrumKey struct {
	step stepKey
	n    int
}

// stepSpectrum is a step's discrete Fourier transform on a circle of n points: what a
// composition raises to the step's count, coefficient by coefficient. It is the same for
// every composition of the step on that circle, so that composing a history again after one
// more round costs no transform of its parts; composedSpectrum reads it. A new spectrum holds
// every coefficient; the cache keeps the first ones, as many as the compositions need.
type stepSpectrum struct {
	// coef are the first coefficients, bit for bit what fourier.FFT.Coefficients gives for
	// the step's masses wrapped onto the circle.
	coef []complex128
	// logAbs[i] is log|coef[i]| rounded up (to float32), for the same first coefficients;
	// blockLogAbs[b] is the largest over coefficients b*spectrumBlock to
	// (b+1)*spectrumBlock-1, for all of them: with these a composition bounds its product's
	// magnitude.
	logAbs      []float32
	blockLogAbs []float32
}

// spectrumBlock is the number of coefficients over which a spectrum keeps one bound beyond
// its first coefficients.
const spectrumBlock = 64

// newStepSpectrum computes s's spectrum on fft's circle; buf is scratch of fft.Len() values.
func newStepSpectrum(s *stepPLD, fft *fourier.FFT, buf []float64) *stepSpectrum {
	n := fft.Len()
	clear(buf)
	for i := s.lo; i <= s.hi; i++ {
		buf[mod(s.offset+i, n)] += s.mass[i]
	}
	sp := &stepSpectrum{coef: fft.Coefficients(nil, buf)}
	sp.logAbs = make([]float32, len(sp.coef))
	sp.blockLogAbs = make([]float32, (len(sp.coef)+spectrumBlock-1)/spectrumBlock)
	for b := range sp.blockLogAbs {
		sp.blockLogAbs[b] = float32(math.Inf(-1))
	}
	for i, c := range sp.coef {
		l := roundUp32(math.Log(cmplx.Abs(c)))
		sp.logAbs[i] = l
		sp.blockLogAbs[i/spectrumBlock] = max(sp.blockLogAbs[i/spectrumBlock], l)
	}
	return sp
}

// addLogBound adds count times an upper bound on log|coefficient i| to bound[i], for every i.
func (sp *stepSpectrum) addLogBound(bound []float64, count float64) {
	for i, l := range sp.logAbs {
		bound[i] += count * float64(l)
	}
	for i := len(sp.logAbs); i < len(bound); {
		b := i / spectrumBlock
		l := count * float64(sp.blockLogAbs[b])
		for end := min((b+1)*spectrumBlock, len(bound)); i < end; i++ {
			bound[i] += l
		}
	}
}

// trimmed returns sp keeping the coefficients a composition needed (the first need), and a
// quarter more: a run's next compositions of the same step need about as many.
func (sp *stepSpectrum) trimmed(need int) *stepSpectrum {
	keep := min(len(sp.coef), trimmedLen(need))
	if keep == len(sp.coef) {
		return sp
	}
	return &stepSpectrum{coef: slices.Clone(sp.coef[:keep]), logAbs: slices.Clone(sp.logAbs[:keep]), blockLogAbs: sp.blockLogAbs}
}

// trimmedLen is how many coefficients a spectrum keeps when a composition needed need.
func trimmedLen(need int) int { return need + need/4 + 64 }

// bytes is what sp holds, for the cache's bound.
func (sp *stepSpectrum) bytes() int {
	return 16*len(sp.coef) + 4*len(sp.logAbs) + 4*len(sp.blockLogAbs) + 96
}

// roundUp32 is the least float32 at or above x.
func roundUp32(x float64) float32 {
	f := float32(x)
	if float64(f) < x {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

// maxPowersBytes bounds the powers cache: a history's parts, each at its count and at one
// more (the budget check's), 16 bytes a coefficient the composition needs (0.2 MiB each after
// 100 rounds of configs/sim-app-he.yaml, 1.5 MiB in its first 40). A count not used in the
// last powersAge compositions (one per direction) is one the history has passed.
const (
	maxPowersBytes = 32 << 20
	powersAge      = 8
)

func newPowersCache() *lru[powersKey, []complex128] {
	return newWeighedLRU[powersKey](maxPowersBytes, func(p []complex128) int { return 16*len(p) + 64 })
}

// powersKey identifies a step's spectrum raised to a count.
type powersKey struct {
	spectrumKey
	count float64
}

// cachedPowers returns powComplex(coef[i], count) for the first need coefficients (coef holds
// at least need), extending what the cache holds when it holds fewer.
func cachedPowers(key spectrumKey, coef []complex128, count float64, need int) []complex128 {
	if count == 1 {
		return coef // powComplex(c, 1) is c
	}
	k := powersKey{key, count}
	have, _ := pldCaches.powers.get(k)
	if len(have) >= need {
		return have
	}
	powers := make([]complex128, need)
	copy(powers, have)
	for i := len(have); i < need; i++ {
		powers[i] = powComplex(coef[i], count)
	}
	pldCaches.powers.put(k, powers)
	return powers
}

// composeScratch is what composing on a circle of n points needs besides its result: the FFT
// plan (its twiddle factors) and buffers. Each size has a pool of them, since a plan is not
// safe for concurrent use.
type composeScratch struct {
	fft   *fourier.FFT
	buf   []float64    // n values
	total []complex128 // n/2+1 coefficients
	bound []float64    // n/2+1 bounds
}

var composeScratches sync.Map // int -> *sync.Pool of *composeScratch

func getScratch(n int) *composeScratch {
	if p, ok := composeScratches.Load(n); ok {
		if sc, ok := p.(*sync.Pool).Get().(*composeScratch); ok {
			return sc
		}
	}
	return &composeScratch{fft: fourier.NewFFT(n), buf: make([]float64, n), total: make([]complex128, n/2+1), bound: make([]float64, n/2+1)}
}

func putScratch(sc *composeScratch) {
	p, _ := composeScratches.LoadOrStore(len(sc.buf), new(sync.Pool))
	p.(*sync.Pool).Put(sc)
}

// cachedStep returns the discretised step, building it on a miss.
func cachedStep(q, sigma, h float64, dir direction) (*stepPLD, error) {
	if q == 1 {
		dir = removeRecord // the two directions of the plain Gaussian are the same distribution
	}
	key := stepKey{q, sigma, h, dir}
	if s, ok := pldCaches.steps.get(key); ok {
		return s, nil
	}
	s, err := newStepPLD(q, sigma, h, dir)
	if err != nil {
		return nil, err
	}
	pldCaches.steps.put(key, s)
	return s, nil
}

// partsKey is a canonical encoding of a reduced composition (see pldParts), bit for bit.
func partsKey(parts []SampledGaussian) string {
	buf := make([]byte, 0, len(parts)*(16+binary.MaxVarintLen64))
	for _, p := range parts {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(p.Q))
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(p.Sigma))
		buf = binary.AppendUvarint(buf, uint64(p.Steps))
	}
	return string(buf)
}
