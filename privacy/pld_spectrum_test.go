package privacy

import (
	"math"
	"math/cmplx"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/dsp/fourier"
)

// composePartsEveryCoefficient is composeParts without the spectra and powers caches and
// without leaving any coefficient out: every part transformed and raised to its count, as the
// accountant composed before the caches.
func composePartsEveryCoefficient(parts []pldPart, lo, hi, lambda float64) *lossPMF {
	h := parts[0].step.h
	kMin, kMax := supportOf(parts)
	loIdx := math.Max(kMin, math.Floor(lo/h))
	hiIdx := math.Min(kMax, math.Ceil(hi/h))
	if !(hiIdx >= loIdx) {
		loIdx, hiIdx = kMin, kMax
	}
	n := fftSize(int(hiIdx - loIdx + 1))
	kLo := int(loIdx)
	kHi := kLo + n - 1
	logFinite := 0.0
	for _, p := range parts {
		logFinite += p.count * math.Log1p(-p.step.inf)
	}
	inf := -math.Expm1(logFinite)
	if float64(kHi) < kMax {
		inf = math.Min(1, inf+math.Exp(logMGF(parts, lambda)-lambda*float64(kHi+1)*h))
	}
	fft := fourier.NewFFT(n)
	buf := make([]float64, n)
	coef := make([]complex128, n/2+1)
	total := make([]complex128, n/2+1)
	for i := range total {
		total[i] = 1
	}
	for _, p := range parts {
		clear(buf)
		s := p.step
		for i := s.lo; i <= s.hi; i++ {
			buf[mod(s.offset+i, n)] += s.mass[i]
		}
		fft.Coefficients(coef, buf)
		for i, c := range coef {
			total[i] *= powComplex(c, p.count)
		}
	}
	fft.Sequence(buf, total)
	out := &lossPMF{h: h, offset: kLo, mass: make([]float64, n)}
	scale := 1 / float64(n)
	noise := 0.0
	for i := range out.mass {
		v := buf[mod(kLo+i, n)] * scale
		noise = math.Max(noise, -v)
		out.mass[i] = math.Max(v, 0)
	}
	out.inf = math.Min(1, inf+2*noise*float64(n))
	return out
}

// TestComposedSpectrumMatchesEveryCoefficient: composing from cached spectra and powers, and
// leaving out the coefficients bounded below exp(pldDropLog), gives the distribution that
// computing every coefficient gives, bit for bit, with an atom at infinity at least as large
// (larger by at most the bound on what was left out). Each composition is made three times:
// cold, from the caches, and with one part's count changed (the next round of a history).
func TestComposedSpectrumMatchesEveryCoefficient(t *testing.T) {
	replay, acc := newRunReplay(), NewAccountant(nil)
	for r := 1; r <= 60; r++ {
		q, z := replay.q, replay.z
		if arrived := int(math.Round(900 + 30*replay.rng.NormFloat64())); arrived < 1000 {
			z = NoiseGridFloor(z * math.Sqrt(float64(arrived)/1000))
		}
		require.NoError(t, acc.Compose(q, z, 1))
	}
	require.NoError(t, acc.Compose(1, 63.5, 1))
	history, _, err := pldParts(acc.History)
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		parts []SampledGaussian
		h     float64
	}{
		{"a run's history of 60 rounds", history, 2.5e-5},
		{"q=0.1 sigma=4 x 10000", []SampledGaussian{{Q: 0.1, Sigma: 4, Steps: 10000}}, 1e-4},
		{"three mechanisms", []SampledGaussian{{Q: 0.02, Sigma: 1.1, Steps: 500}, {Q: 0.05, Sigma: 2, Steps: 300}, {Q: 1, Sigma: 10, Steps: 3}}, 1e-4},
		{"q=0.01 sigma=0.8 x 10", []SampledGaussian{{Q: 0.01, Sigma: 0.8, Steps: 10}}, 1e-4},
	} {
		for _, dir := range []direction{removeRecord, addRecord} {
			pldCaches = newPLDCaches()
			build := func(parts []SampledGaussian) []pldPart {
				out := make([]pldPart, len(parts))
				for i, p := range parts {
					s, err := cachedStep(p.Q, p.Sigma, tc.h, dir)
					require.NoError(t, err)
					out[i] = pldPart{step: s, count: float64(p.Steps)}
				}
				return out
			}
			next := append([]SampledGaussian(nil), tc.parts...)
			next[0].Steps++
			for i, parts := range [][]SampledGaussian{tc.parts, tc.parts, next} {
				steps := build(parts)
				lo, hi, lambda := pldWindow(steps)
				want := composePartsEveryCoefficient(steps, lo, hi, lambda)
				got, err := composeParts(steps, lo, hi, lambda)
				require.NoError(t, err)
				require.Equal(t, want.h, got.h, "%s dir %d call %d", tc.name, dir, i)
				require.Equal(t, want.offset, got.offset)
				require.Len(t, got.mass, len(want.mass))
				differ := 0
				for k := range want.mass {
					if math.Float64bits(want.mass[k]) != math.Float64bits(got.mass[k]) {
						differ++
					}
				}
				assert.Zero(t, differ, "%s dir %d call %d: masses that differ", tc.name, dir, i)
				assert.GreaterOrEqual(t, got.inf, want.inf)
				assert.LessOrEqual(t, got.inf-want.inf, 1e-300)
			}
		}
	}
}

// TestComposedSpectrumBoundsWhatItLeavesOut: every coefficient composedSpectrum leaves at
// zero is, computed, below exp(pldDropLog) plus the subnormals of its multiplications, and
// every other one is the computed one exactly.
func TestComposedSpectrumBoundsWhatItLeavesOut(t *testing.T) {
	pldCaches = newPLDCaches()
	var parts []pldPart
	for _, p := range []SampledGaussian{{Q: 0.01, Sigma: 0.9, Steps: 40}, {Q: 0.01, Sigma: 0.95, Steps: 25}, {Q: 1, Sigma: 60, Steps: 1}} {
		s, err := cachedStep(p.Q, p.Sigma, 5e-5, removeRecord)
		require.NoError(t, err)
		parts = append(parts, pldPart{step: s, count: float64(p.Steps)})
	}
	const n = 1 << 17
	sc := getScratch(n)
	defer putScratch(sc)
	total, dropped := composedSpectrum(parts, sc)
	require.Positive(t, dropped)
	// The same product, every coefficient.
	fft := fourier.NewFFT(n)
	buf := make([]float64, n)
	want := make([]complex128, n/2+1)
	for i := range want {
		want[i] = 1
	}
	for _, p := range parts {
		clear(buf)
		s := p.step
		for i := s.lo; i <= s.hi; i++ {
			buf[mod(s.offset+i, n)] += s.mass[i]
		}
		for i, c := range fft.Coefficients(nil, buf) {
			want[i] *= powComplex(c, p.count)
		}
	}
	left, nonzero := 0, 0
	perEntry := dropped / n
	for i := range want {
		if total[i] == 0 && want[i] != 0 {
			left++
			require.LessOrEqual(t, cmplx.Abs(want[i]), perEntry, "coefficient %d", i)
			continue
		}
		if total[i] != 0 {
			nonzero++
		}
		require.Equal(t, want[i], total[i], "coefficient %d", i)
	}
	t.Logf("%d of %d coefficients not zero, %d left out that were not zero when computed", nonzero, len(want), left)
	assert.Less(t, nonzero, len(want)*3/4, "a long composition's spectrum is narrow: most of it is left out")
}

// TestWeighedLRUEvictsByWeight: a weighed cache keeps the most recent values within its
// weight, and always the last one.
func TestWeighedLRUEvictsByWeight(t *testing.T) {
	c := newWeighedLRU[int](10, func(v []byte) int { return len(v) })
	c.put(1, make([]byte, 4))
	c.put(2, make([]byte, 4))
	_, ok := c.get(1) // 1 is now the most recent
	require.True(t, ok)
	c.put(3, make([]byte, 4))
	_, ok = c.get(2)
	assert.False(t, ok, "the least recent goes first")
	_, ok = c.get(1)
	assert.True(t, ok)
	c.put(1, make([]byte, 2)) // replacing a value re-weighs it
	assert.Equal(t, 6, c.weight)
	c.put(4, make([]byte, 20))
	assert.Equal(t, 1, c.order.Len(), "a value above the bound is kept alone")
	_, ok = c.get(4)
	assert.True(t, ok)
}

// TestPLDSpectraAreSafeForConcurrentUse: accountants in different goroutines compose
// histories that share steps (and so spectra and powers) but differ in counts, and get what
// each would alone.
func TestPLDSpectraAreSafeForConcurrentUse(t *testing.T) {
	history := func(i int) []SampledGaussian {
		return []SampledGaussian{{Q: 0.02, Sigma: 0.95, Steps: 30 + i}, {Q: 0.02, Sigma: 1, Steps: 20 + 2*i}, {Q: 1, Sigma: 40, Steps: 1}}
	}
	want := make([]float64, 6)
	for i := range want {
		pldCaches = newPLDCaches()
		var err error
		want[i], err = PLDEpsilon(history(i), 1e-6)
		require.NoError(t, err)
	}
	pldCaches = newPLDCaches()
	got := make([]float64, len(want))
	errs := make([]error, len(want))
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i], errs[i] = PLDEpsilon(history(i), 1e-6) })
	}
	wg.Wait()
	for i := range got {
		require.NoError(t, errs[i])
		assert.Equal(t, want[i], got[i], "history %d", i)
	}
}
