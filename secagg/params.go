package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync"

	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// ParamsLiteral is the unchecked, configuration-friendly form of the scheme parameters. Pass it
// through NewParams to get an immutable, validated Params. The zero value of every field except
// LogN, LogQ and LogDefaultScale means "use the default" (see DefaultParamsLiteral).
//
// There are no auxiliary (P) moduli: additive aggregation never key-switches with evaluation
// keys, so they would only spend security budget.
type ParamsLiteral struct {
	// LogN is the log2 of the ring degree; the number of real values per ciphertext is 2^(LogN-1).
	LogN int `yaml:"log_n" json:"log_n"`
	// LogQ lists the bit sizes of the ciphertext moduli. Ciphertexts stay at the top level, so
	// the product Q bounds the magnitude of any sum (see Params.MaxAbsValue).
	LogQ []int `yaml:"log_q" json:"log_q"`
	// LogDefaultScale is the log2 of the CKKS encoding scale.
	LogDefaultScale int `yaml:"log_default_scale" json:"log_default_scale"`
	// EncoderPrecision is the precision, in bits, of the encoder's FFT. Only float64 (53) is
	// supported: with more, lattigo switches to big.Float and encodes about 20x slower.
	EncoderPrecision uint `yaml:"encoder_precision" json:"encoder_precision"`
	// SmudgingSigma is the standard deviation of the noise each committee member adds to its
	// decryption share so the share reveals nothing about its key.
	SmudgingSigma float64 `yaml:"smudging_sigma" json:"smudging_sigma"`
	// LogDecodePrecision sets the grid decrypted values are rounded to before release:
	// multiples of 2^-LogDecodePrecision. Rounding removes the low-order bits that carry
	// key-dependent noise (lattigo's DecodePublic).
	LogDecodePrecision int `yaml:"log_decode_precision" json:"log_decode_precision"`
}

// DefaultParamsLiteral returns the parameters fedprop uses: ring degree 4096, Q of 55+54 bits
// (log QP = 109, the HomomorphicEncryption.org 128-bit bound for N=4096 with a ternary secret),
// scale 2^62, a float64 encoder, smudging sigma 2^20 and release rounding to 2^-30.
func DefaultParamsLiteral() ParamsLiteral {
	return ParamsLiteral{
		LogN:               12,
		LogQ:               []int{55, 54},
		LogDefaultScale:    62,
		EncoderPrecision:   53,
		SmudgingSigma:      1 << 20,
		LogDecodePrecision: 30,
	}
}

// maxLogQPFor128Bits is the largest log2(QP) that keeps 128-bit security for a ternary secret,
// per ring degree, from the HomomorphicEncryption.org security standard (Table 1, classical).
var maxLogQPFor128Bits = map[int]float64{10: 27, 11: 54, 12: 109, 13: 218, 14: 438, 15: 881}

const (
	// maxSmudgingSigma is where lattigo's discrete Gaussian sampler stops being smooth at
	// integer resolution; a larger sigma is not safer, so it is refused.
	maxSmudgingSigma = 1 << 22
	// minSmudgingSigma keeps the smudging noise well above the noise of an aggregate of many
	// fresh ciphertexts (about 2^10 per fresh ciphertext, times sqrt(#contributions)).
	minSmudgingSigma = 1 << 16
	// maxLength bounds the number of values in one encrypted vector so that a malformed header
	// cannot ask for an absurd allocation.
	maxLength = 1 << 24
	// maxMembers bounds committee sizes and Shamir points.
	maxMembers = 1 << 16
)

// Params are validated, immutable scheme parameters. Share one value freely; every object
// built from it keeps its own buffers.
type Params struct {
	lit    ParamsLiteral
	he     hefloat.Parameters
	id     [8]byte
	qBits  []uint  // bit length of each Q modulus
	maxAbs float64 // largest |sum| that decodes correctly
	// shared holds what every Encryptor of these parameters can share: scratch buffers and
	// decoded public keys.
	shared *sharedState
}

// paramsCache remembers built parameters by literal: building them (NTT tables for every
// modulus) takes about 1.5 ms, and a simulator's 100,000 clients would each pay it on their
// first encryption. It holds at most maxCachedParams literals.
var paramsCache struct {
	sync.Mutex
	byLiteral map[string]Params
}

const maxCachedParams = 8

// NewParams validates lit, fills defaults, and builds the parameters. The same literal gives
// the same (immutable) Params, built once per process.
func NewParams(lit ParamsLiteral) (Params, error) {
	def := DefaultParamsLiteral()
	if lit.EncoderPrecision == 0 {
		lit.EncoderPrecision = def.EncoderPrecision
	}
	if lit.SmudgingSigma == 0 {
		lit.SmudgingSigma = def.SmudgingSigma
	}
	if lit.LogDecodePrecision == 0 {
		lit.LogDecodePrecision = def.LogDecodePrecision
	}
	lit.LogQ = append([]int(nil), lit.LogQ...)
	if err := lit.validate(); err != nil {
		return Params{}, err
	}
	key := fmt.Sprintf("%+v", lit)
	paramsCache.Lock()
	defer paramsCache.Unlock()
	if p, ok := paramsCache.byLiteral[key]; ok {
		return p, nil
	}
	p, err := buildParams(lit)
	if err != nil {
		return Params{}, err
	}
	if len(paramsCache.byLiteral) >= maxCachedParams {
		paramsCache.byLiteral = nil // a process uses one or two literals; fuzzing uses many
	}
	if paramsCache.byLiteral == nil {
		paramsCache.byLiteral = map[string]Params{}
	}
	paramsCache.byLiteral[key] = p
	return p, nil
}

// buildParams builds validated, defaulted parameters.
func buildParams(lit ParamsLiteral) (Params, error) {
	he, err := hefloat.NewParametersFromLiteral(hefloat.ParametersLiteral{
		LogN:            lit.LogN,
		LogQ:            lit.LogQ,
		LogDefaultScale: lit.LogDefaultScale,
		Xs:              ring.Ternary{P: 2.0 / 3},
		Xe:              ring.DiscreteGaussian{Sigma: 3.2, Bound: 19.2},
	})
	if err != nil {
		return Params{}, fmt.Errorf("%w: %w", ErrInvalidParams, err)
	}
	// Lattigo picks NTT-friendly primes next to 2^b, some just above, so log2(QP) may exceed
	// the sum of the requested sizes by a few 1e-13; that is not a security difference.
	if bound := maxLogQPFor128Bits[lit.LogN]; he.LogQP() > bound+1e-6 {
		return Params{}, fmt.Errorf("%w: log2(QP)=%.2f exceeds the 128-bit bound %.0f for LogN=%d", ErrInvalidParams, he.LogQP(), bound, lit.LogN)
	}
	logQ := he.LogQ()
	// Decoding is correct while every coefficient m*scale+noise stays inside (-Q/2, Q/2).
	// A slot value v gives coefficients of magnitude at most |v| (the inverse embedding is an
	// average), so |sum| < Q/(2*scale) suffices; one more bit is kept as margin for noise and
	// for the float64 FFT.
	logMax := logQ - 2 - float64(lit.LogDefaultScale)
	if logMax < 1 {
		return Params{}, fmt.Errorf("%w: log2(Q)=%.2f leaves no headroom above the scale 2^%d", ErrInvalidParams, logQ, lit.LogDefaultScale)
	}
	p := Params{lit: lit, he: he, maxAbs: math.Floor(math.Exp2(logMax))}
	for _, s := range he.RingQ().SubRings {
		p.qBits = append(p.qBits, uint(bits.Len64(s.Modulus)))
	}
	p.id = paramsID(he)
	p.shared = &sharedState{}
	return p, nil
}

func (lit ParamsLiteral) validate() error {
	if _, ok := maxLogQPFor128Bits[lit.LogN]; !ok {
		return fmt.Errorf("%w: LogN=%d, want 10..15", ErrInvalidParams, lit.LogN)
	}
	if len(lit.LogQ) == 0 || len(lit.LogQ) > 8 {
		return fmt.Errorf("%w: LogQ needs 1..8 moduli, has %d", ErrInvalidParams, len(lit.LogQ))
	}
	for _, b := range lit.LogQ {
		// Lattigo needs NTT-friendly primes below 2^61; the lazy accumulator in Sum needs
		// several additions of headroom in a 64-bit word.
		if b < 20 || b > 58 {
			return fmt.Errorf("%w: modulus size %d bits, want 20..58", ErrInvalidParams, b)
		}
	}
	if lit.LogDefaultScale < 20 || lit.LogDefaultScale > 64 {
		return fmt.Errorf("%w: LogDefaultScale=%d, want 20..64", ErrInvalidParams, lit.LogDefaultScale)
	}
	if lit.EncoderPrecision > 53 {
		return fmt.Errorf("%w: EncoderPrecision=%d: only the float64 encoder (53) is supported", ErrInvalidParams, lit.EncoderPrecision)
	}
	if math.IsNaN(lit.SmudgingSigma) || lit.SmudgingSigma < minSmudgingSigma || lit.SmudgingSigma > maxSmudgingSigma {
		return fmt.Errorf("%w: SmudgingSigma=%g, want 2^16..2^22", ErrInvalidParams, lit.SmudgingSigma)
	}
	// The release grid must be much coarser than the decryption noise (about
	// sigma*sqrt(T*N)/scale), or rounding would not hide it; 6 bits of margin for T up to 64.
	maxDecode := float64(lit.LogDefaultScale) - math.Log2(lit.SmudgingSigma) - float64(lit.LogN)/2 - 6
	if lit.LogDecodePrecision < 1 || float64(lit.LogDecodePrecision) > maxDecode {
		return fmt.Errorf("%w: LogDecodePrecision=%d, want 1..%d so rounding hides the decryption noise", ErrInvalidParams, lit.LogDecodePrecision, int(maxDecode))
	}
	return nil
}

// paramsID fingerprints everything that determines the wire format and its meaning.
func paramsID(he hefloat.Parameters) [8]byte {
	h := sha256.New()
	h.Write([]byte("fedprop/secagg/params/v1"))
	var buf [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	put(uint64(he.LogN()))
	put(uint64(len(he.Q())))
	for _, q := range he.Q() {
		put(q)
	}
	put(uint64(len(he.P())))
	for _, q := range he.P() {
		put(q)
	}
	put(uint64(he.LogDefaultScale()))
	var id [8]byte
	copy(id[:], h.Sum(nil))
	return id
}

// Literal returns the (defaults-filled) literal the parameters were built from.
func (p Params) Literal() ParamsLiteral {
	lit := p.lit
	lit.LogQ = append([]int(nil), lit.LogQ...)
	return lit
}

// Slots returns the number of real values one ciphertext carries.
func (p Params) Slots() int { return p.he.MaxSlots() }

// CiphertextsFor returns how many ciphertexts a vector of n values spans.
func (p Params) CiphertextsFor(n int) int {
	if n <= 0 {
		return 0
	}
	return (n + p.Slots() - 1) / p.Slots()
}

// MaxAbsValue returns the largest magnitude a decrypted sum may have and still decode
// correctly (about 3.5e13 with the defaults). Beyond it a sum would wrap around the modulus
// silently, so callers clip each contribution to MaxAbsPerContribution.
func (p Params) MaxAbsValue() float64 { return p.maxAbs }

// MaxAbsPerContribution returns the bound each of up to maxContributors encrypted vectors must
// respect for their sum to stay within MaxAbsValue.
func (p Params) MaxAbsPerContribution(maxContributors int) float64 {
	if maxContributors < 1 {
		maxContributors = 1
	}
	return p.maxAbs / float64(maxContributors)
}

// wordsPerCiphertext is the number of 64-bit words of one degree-1 ciphertext at the top level.
func (p Params) wordsPerCiphertext() int { return 2 * p.he.QCount() * p.he.N() }

// wordsPerQPPoly is the number of 64-bit words of one polynomial over Q and P.
func (p Params) wordsPerQPPoly() int { return (p.he.QCount() + p.he.PCount()) * p.he.N() }

// wordsPerQPoly is the number of 64-bit words of one polynomial over Q.
func (p Params) wordsPerQPoly() int { return p.he.QCount() * p.he.N() }
