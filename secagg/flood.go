package secagg

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/bits"
	mathrand "math/rand/v2"
)

// Flooding (smudging) noise hides the secret-dependent noise of an aggregate in a decryption
// share: the share is statistically close to one that does not depend on the key only when
// the noise's distribution is close to a smooth discrete Gaussian at every point, including
// shifts by the secret-dependent amount. lattigo v5's ring.DiscreteGaussian sampler is a
// ziggurat on one 32-bit word per try; its outputs fall on a few grids, so "sample + 1" is
// often not a possible output (at sigma 2^30, a third of the time) and shifting the noise
// moves its distribution far. FloodSampler is the sampler this package uses instead:
//
//   - up to sigma 2^45 (maxBoxMullerSigma), Box-Muller on two 53-bit uniforms: the angle's
//     resolution 2*pi*2^-53 times the radius (at least about sigma/8 where the mass is) stays
//     below one integer, so every integer in the bulk is a possible output, rounded from a
//     continuous Gaussian;
//   - above, a convolution x1 + k*x2 of two such samples of sigma0 = sigma/sqrt(1+k^2) with k
//     about sigma/2^44: exact integer arithmetic, and sigma0 >= 2^8*k, far above the smoothing
//     parameter of the lattice kZ (about 4.7k for an error of 2^-100), so the base sample fills
//     every gap between multiples of k and the sum is a discrete Gaussian of sigma up to that
//     error (Micciancio and Walter's convolution lemma). That condition caps sigma at 2^80.
//
// Samples can exceed 64 bits (6 sigma at sigma 2^72 is 2^74.6): the sampler hands out the
// pair (x1, x2) and the fixed k, and reduces x1 + k*x2 modulo each ciphertext modulus itself.
//
// The security argument (requiredSigma) treats the samples as an ideal discrete Gaussian. The
// float64 construction is not proven exact; the tests check what a sampler must not get wrong
// for flooding (every integer near a sample is a possible output, collisions at the ideal rate,
// uniform low bits) and show lattigo's sampler failing them.
type FloodSampler struct {
	sigma  float64
	sigma0 float64 // the base samples' standard deviation
	k      uint64  // 0: one base sample is the sample
	src    io.Reader
	buf    [32]byte
	spare  float64 // Box-Muller gives two normals per pair of uniforms
	spared bool
}

// maxBoxMullerSigma is the largest sigma sampled directly; convolutionBase the base sigma of
// larger ones.
const (
	maxBoxMullerSigma = 1 << 45
	convolutionBase   = 1 << 44
	maxLogFloodSigma  = 80
	maxFloodSigma     = 1 << maxLogFloodSigma
)

// NewFloodSampler returns a sampler of standard deviation sigma (1 <= sigma <= 2^80) drawing
// from random, or crypto/rand when random is nil. Only tests and the simulator pass a seeded
// reader.
func NewFloodSampler(sigma float64, random io.Reader) (*FloodSampler, error) {
	if math.IsNaN(sigma) || sigma < 1 || sigma > maxFloodSigma {
		return nil, fmt.Errorf("%w: flooding sigma %g, want 1..2^80", ErrInvalidParams, sigma)
	}
	if random == nil {
		// One 32-byte seed from the operating system keys a ChaCha8 stream for the whole
		// share: as unpredictable, and thousands of times fewer system calls.
		var seed [32]byte
		if _, err := io.ReadFull(rand.Reader, seed[:]); err != nil {
			return nil, fmt.Errorf("flooding noise: %w", err)
		}
		random = mathrand.NewChaCha8(seed)
	}
	s := &FloodSampler{sigma: sigma, sigma0: sigma, src: random}
	if sigma > maxBoxMullerSigma {
		ratio := sigma / convolutionBase
		s.k = uint64(math.Round(math.Sqrt(ratio*ratio - 1)))
		s.sigma0 = sigma / math.Sqrt(1+float64(s.k)*float64(s.k))
	}
	return s, nil
}

// Sigma is the sampler's standard deviation.
func (s *FloodSampler) Sigma() float64 { return s.sigma }

// normal returns one standard normal from Box-Muller over two 53-bit uniforms.
func (s *FloodSampler) normal() (float64, error) {
	if s.spared {
		s.spared = false
		return s.spare, nil
	}
	if _, err := io.ReadFull(s.src, s.buf[:16]); err != nil {
		return 0, fmt.Errorf("flooding noise: %w", err)
	}
	// u1 in (0, 1] so that the logarithm is finite; u2 in [0, 1).
	u1 := float64(binary.LittleEndian.Uint64(s.buf[0:8])>>11+1) * 0x1p-53
	u2 := float64(binary.LittleEndian.Uint64(s.buf[8:16])>>11) * 0x1p-53
	r := math.Sqrt(-2 * math.Log(u1))
	sin, cos := math.Sincos(2 * math.Pi * u2)
	s.spare, s.spared = r*sin, true
	return r * cos, nil
}

// base returns one rounded sample of standard deviation sigma0 (at most about 2^49 in
// magnitude, since a 53-bit u1 bounds the radius by 8.6).
func (s *FloodSampler) base() (int64, error) {
	z, err := s.normal()
	if err != nil {
		return 0, err
	}
	return int64(math.Round(z * s.sigma0)), nil
}

// Pair returns one sample as x1 + K()*x2 (x2 is 0 when K() is 0).
func (s *FloodSampler) Pair() (x1, x2 int64, err error) {
	if x1, err = s.base(); err != nil || s.k == 0 {
		return x1, 0, err
	}
	x2, err = s.base()
	return x1, x2, err
}

// K is the convolution factor: a sample is x1 + K*x2.
func (s *FloodSampler) K() uint64 { return s.k }

// Big returns one sample as a big integer (for tests and analysis).
func (s *FloodSampler) Big() (*big.Int, error) {
	x1, x2, err := s.Pair()
	if err != nil {
		return nil, err
	}
	out := new(big.Int).SetUint64(s.k)
	out.Mul(out, big.NewInt(x2))
	return out.Add(out, big.NewInt(x1)), nil
}

// reduce returns x mod q in [0, q) for a signed x.
func reduce(x int64, q uint64) uint64 {
	if x >= 0 {
		return uint64(x) % q
	}
	r := uint64(-x) % q
	if r == 0 {
		return 0
	}
	return q - r
}

// AddTo adds one fresh sample to each coefficient of a polynomial in RNS form: coeffs[i][j]
// is coefficient j modulo moduli[i], every limb in [0, moduli[i]). The same sample goes into
// every limb of a coefficient.
func (s *FloodSampler) AddTo(coeffs [][]uint64, moduli []uint64) error {
	if len(coeffs) == 0 {
		return nil
	}
	n := len(coeffs[0])
	for j := range n {
		x1, x2, err := s.Pair()
		if err != nil {
			return err
		}
		for i, q := range moduli {
			e := reduce(x1, q)
			if s.k != 0 {
				hi, lo := bits.Mul64(s.k%q, reduce(x2, q))
				e = (e + bits.Rem64(hi, lo, q)) % q
			}
			c := coeffs[i][j] + e
			if c >= q || c < e { // c < e: the sum wrapped 2^64 (moduli below 2^63 never do)
				c -= q
			}
			coeffs[i][j] = c
		}
	}
	return nil
}
