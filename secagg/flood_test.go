package secagg

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// chachaReader is a seeded reader for repeatable sampler tests.
type chachaReader struct{ c *rand.ChaCha8 }

func (r chachaReader) Read(b []byte) (int, error) { return r.c.Read(b) }

func seeded(seed byte) chachaReader { return chachaReader{rand.NewChaCha8([32]byte{seed})} }

// floodDraws returns n samples of the package's flooding sampler (they fit int64 up to
// sigma 2^57).
func floodDraws(t *testing.T, sigma float64, n int) []int64 {
	t.Helper()
	s, err := NewFloodSampler(sigma, seeded(byte(math.Log2(sigma))))
	require.NoError(t, err)
	out := make([]int64, n)
	for i := range out {
		x, err := s.Big()
		require.NoError(t, err)
		require.True(t, x.IsInt64())
		out[i] = x.Int64()
	}
	return out
}

// lattigoDraws returns n samples of lattigo v5's discrete Gaussian sampler, centred.
func lattigoDraws(t *testing.T, sigma float64, n int) []int64 {
	t.Helper()
	const logN = 12
	q := uint64(0x3fffffff000001) // a 54-bit NTT-friendly prime for N = 2^12
	r, err := ring.NewRing(1<<logN, []uint64{q})
	require.NoError(t, err)
	prng, err := sampling.NewKeyedPRNG([]byte{byte(math.Log2(sigma))})
	require.NoError(t, err)
	g := ring.NewGaussianSampler(prng, r, ring.DiscreteGaussian{Sigma: sigma, Bound: 6 * sigma}, false)
	out := make([]int64, 0, n)
	pol := r.NewPoly()
	for len(out) < n {
		g.Read(pol)
		for _, c := range pol.Coeffs[0] {
			if len(out) == n {
				break
			}
			if c > q/2 {
				out = append(out, -int64(q-c))
			} else {
				out = append(out, int64(c))
			}
		}
	}
	return out
}

// samplerReport is what the statistical tests measure of a sampler's output.
type samplerReport struct {
	std float64
	// equal and adjacent count the unordered pairs of samples that are equal and that differ
	// by one; expected is the ideal count of equal pairs, C(n,2) * sum_x p(x)^2, about
	// C(n,2) / (2 sqrt(pi) sigma); an ideal sampler gives twice as many adjacent pairs.
	equal, adjacent, expected float64
	// chi2 is the chi-square of the samples' low 8 bits against uniform (255 degrees of
	// freedom: mean 255, standard deviation 22.6).
	chi2 float64
}

func measure(draws []int64, sigma float64) samplerReport {
	var rep samplerReport
	var sq float64
	counts := make([]float64, 256)
	for _, x := range draws {
		sq += float64(x) * float64(x)
		counts[uint64(x)&0xff]++
	}
	n := float64(len(draws))
	rep.std = math.Sqrt(sq / n)
	for _, c := range counts {
		d := c - n/256
		rep.chi2 += d * d / (n / 256)
	}
	sorted := slices.Clone(draws)
	slices.Sort(sorted)
	mult := map[int64]float64{}
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j] == sorted[i] {
			j++
		}
		k := float64(j - i)
		rep.equal += k * (k - 1) / 2
		mult[sorted[i]] = k
		i = j
	}
	for x, k := range mult {
		rep.adjacent += k * mult[x+1]
	}
	rep.expected = n * (n - 1) / 2 / (2 * math.Sqrt(math.Pi) * sigma)
	return rep
}

// pass reports whether a sampler's output looks like a smooth discrete Gaussian of sigma:
// the right spread, as many equal and adjacent pairs as an ideal sampler gives (within 6
// Poisson standard deviations), and uniform low bits.
func (r samplerReport) pass(sigma float64) (bool, string) {
	tol := 6 * math.Sqrt(r.expected)
	switch {
	case math.Abs(r.std/sigma-1) > 0.01:
		return false, "standard deviation"
	case r.expected >= 100 && math.Abs(r.equal-r.expected) > tol:
		return false, "equal pairs: the outputs crowd on fewer integers than a Gaussian's"
	case r.expected < 1 && r.equal > 10:
		return false, "equal pairs where a Gaussian gives almost none"
	case r.expected >= 100 && math.Abs(r.adjacent-2*r.expected) > math.Sqrt2*tol:
		return false, "adjacent pairs: sample + 1 is not always a possible output"
	case r.chi2 > 255+6*22.6:
		return false, "low bits"
	}
	return true, ""
}

// TestFloodingSamplerIsSmoothWhereLattigosIsNot runs the same tests on the package's flooding
// sampler and on lattigo v5's discrete Gaussian sampler: at sigma 2^20, 2^30 and 2^40 the
// flooding sampler passes all of them; lattigo's fails at 2^30 and 2^40.
func TestFloodingSamplerIsSmoothWhereLattigosIsNot(t *testing.T) {
	if testing.Short() {
		t.Skip("draws millions of samples")
	}
	cases := []struct {
		logSigma   int
		n          int
		lattigoBad bool
	}{
		{20, 1 << 19, false},
		{30, 2 << 20, true},
		{40, 1 << 19, true},
	}
	for _, tc := range cases {
		sigma := math.Ldexp(1, tc.logSigma)
		ours := measure(floodDraws(t, sigma, tc.n), sigma)
		ok, why := ours.pass(sigma)
		assert.True(t, ok, "flooding sampler at sigma 2^%d fails the %s test: %+v", tc.logSigma, why, ours)
		theirs := measure(lattigoDraws(t, sigma, tc.n), sigma)
		ok, why = theirs.pass(sigma)
		t.Logf("sigma 2^%d: ours %+v; lattigo %+v (%s)", tc.logSigma, ours, theirs, why)
		if tc.lattigoBad {
			assert.False(t, ok, "lattigo's sampler at sigma 2^%d passes every test", tc.logSigma)
		}
	}
}

// TestFloodingSamplerAboveBoxMuller: the convolution x1 + k*x2 keeps the spread and the low
// bits at sigma 2^50, 2^66 and 2^72 (the default), keeps the base sample's sigma at least 2^8
// times k (far above the smoothing parameter of kZ), and reduces exactly into RNS limbs.
func TestFloodingSamplerAboveBoxMuller(t *testing.T) {
	for _, logSigma := range []int{50, 66, 72, maxLogFloodSigma} {
		sigma := math.Ldexp(1, logSigma)
		s, err := NewFloodSampler(sigma, seeded(byte(logSigma)))
		require.NoError(t, err)
		require.NotZero(t, s.K())
		assert.GreaterOrEqual(t, s.sigma0, 256*float64(s.K()), "sigma 2^%d", logSigma)
		var sq float64
		counts := make([]float64, 256)
		const n = 1 << 18
		for range n {
			x, err := s.Big()
			require.NoError(t, err)
			f, _ := new(big.Float).SetInt(x).Float64()
			sq += f * f
			counts[new(big.Int).And(x, big.NewInt(0xff)).Uint64()]++
		}
		assert.InEpsilon(t, sigma, math.Sqrt(sq/n), 0.01, "sigma 2^%d", logSigma)
		var chi2 float64
		for _, c := range counts {
			chi2 += (c - n/256) * (c - n/256) / (n / 256)
		}
		assert.Less(t, chi2, 255+6*22.6, "low bits at sigma 2^%d", logSigma)
	}

	// AddTo puts the same sample, exactly, into every limb.
	moduli := []uint64{0x3fffffff000001, 0x7fffffffe0001}
	s, err := NewFloodSampler(math.Ldexp(1, 66), seeded(9))
	require.NoError(t, err)
	ref, err := NewFloodSampler(math.Ldexp(1, 66), seeded(9))
	require.NoError(t, err)
	coeffs := [][]uint64{{5, moduli[0] - 1}, {7, moduli[1] - 1}}
	require.NoError(t, s.AddTo(coeffs, moduli))
	for j, start := range [][]int64{{5, 7}, {-1, -1}} {
		x, err := ref.Big()
		require.NoError(t, err)
		for i, q := range moduli {
			want := new(big.Int).Add(x, big.NewInt(start[i]))
			want.Mod(want, new(big.Int).SetUint64(q))
			assert.Equal(t, want.Uint64(), coeffs[i][j], "limb %d of coefficient %d", i, j)
		}
	}
}

// TestDecryptionSharesCarryTheFloodingNoise: with c1 = 0 a decryption share is its noise
// alone; it has the configured standard deviation and smooth low bits, so the flooding
// sampler (not only lattigo's fresh-encryption noise) is in every share.
func TestDecryptionSharesCarryTheFloodingNoise(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 3, 2, 5)
	enc, err := NewEncryptor(p, c.publicKey, nil)
	require.NoError(t, err)
	sum, err := NewSum(p, c.publicKey, 10)
	require.NoError(t, err)
	ct, err := enc.Encrypt(make([]float64, 10))
	require.NoError(t, err)
	require.NoError(t, sum.Add(ct))
	agg, err := sum.MarshalBinary()
	require.NoError(t, err)
	_, body, err := parseCiphertextSet(p, agg)
	require.NoError(t, err)
	wordsQ := p.wordsPerQPoly()
	clear(body[8*wordsQ : 8*2*wordsQ]) // c1 of the only ciphertext

	share, err := c.member(1).DecryptionShare(agg, []int{1, 2})
	require.NoError(t, err)
	ringQ := p.he.RingQ()
	poly := ringQ.NewPoly()
	_, err = readRows(share[decryptionShareHeaderSize:], poly.Coeffs, p.he.Q(), kindCiphertext)
	require.NoError(t, err)
	ringQ.INTT(poly, poly)
	// Sigma exceeds every modulus, so the noise is read through a CRT lift of all limbs.
	moduli := p.he.Q()
	bigQ := big.NewInt(1)
	for _, q := range moduli {
		bigQ.Mul(bigQ, new(big.Int).SetUint64(q))
	}
	half := new(big.Int).Rsh(bigQ, 1)
	var sq float64
	counts := make([]float64, 256)
	n := len(poly.Coeffs[0])
	for j := range n {
		x := crtLift(poly.Coeffs, j, moduli, bigQ)
		if x.Cmp(half) > 0 {
			x.Sub(x, bigQ)
		}
		f, _ := new(big.Float).SetInt(x).Float64()
		sq += f * f
		counts[new(big.Int).And(x, big.NewInt(0xff)).Uint64()]++
	}
	var chi2 float64
	for _, c := range counts {
		chi2 += (c - float64(n)/256) * (c - float64(n)/256) / (float64(n) / 256)
	}
	sigma := p.lit.SmudgingSigma
	assert.InEpsilon(t, sigma, math.Sqrt(sq/float64(n)), 0.05, "the share's noise")
	assert.Less(t, chi2, 255+6*22.6)
}

// crtLift returns the integer in [0, Q) whose residue modulo moduli[i] is coeffs[i][j].
func crtLift(coeffs [][]uint64, j int, moduli []uint64, bigQ *big.Int) *big.Int {
	x := new(big.Int)
	for i, q := range moduli {
		bq := new(big.Int).SetUint64(q)
		rest := new(big.Int).Quo(bigQ, bq)
		inv := new(big.Int).ModInverse(new(big.Int).Mod(rest, bq), bq)
		term := new(big.Int).SetUint64(coeffs[i][j])
		term.Mul(term, inv).Mod(term, bq).Mul(term, rest)
		x.Add(x, term)
	}
	return x.Mod(x, bigQ)
}
