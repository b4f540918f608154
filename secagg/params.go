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
// through NewParams to get an immutable, validated Params. A zero EncoderPrecision,
// LogDecodePrecision, Guarantee, MaxContributors, MaxCommittee or DecryptionBudget takes the
// default's value; a zero SmudgingSigma is derived from the bound (see requiredSigma).
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
	// SmudgingSigma is the standard deviation of the flooding noise each committee member adds
	// to its decryption share so the share reveals nothing about its key or about the
	// aggregate's noise. It must be at least what Guarantee needs for the bound below.
	SmudgingSigma float64 `yaml:"smudging_sigma" json:"smudging_sigma"`
	// LogDecodePrecision sets the grid decrypted values are rounded to before release:
	// multiples of 2^-LogDecodePrecision. Encryptors round inputs to the same grid, so that
	// a released sum is exact.
	LogDecodePrecision int `yaml:"log_decode_precision" json:"log_decode_precision"`
	// Guarantee is what the flooding noise is sized to guarantee.
	Guarantee Guarantee `yaml:"guarantee" json:"guarantee"`
	// MaxContributors bounds the contributions of one decrypted aggregate; members refuse
	// larger ones, whose noise the flooding was not sized to hide.
	MaxContributors int `yaml:"max_contributors" json:"max_contributors"`
	// MaxCommittee bounds the committee size (the collective key's noise grows with it) and so
	// the active set of a decryption.
	MaxCommittee int `yaml:"max_committee" json:"max_committee"`
	// DecryptionBudget bounds the ciphertexts one member decrypts under one collective key;
	// members count them and refuse beyond it, and a new committee setup starts a new budget.
	DecryptionBudget int `yaml:"decryption_budget" json:"decryption_budget"`
}

// The parameter sets fedprop offers, by name (the secure_aggregation.parameters setting).
const (
	// PresetSimulation is SimulationParamsLiteral, the default.
	PresetSimulation = "simulation"
	// PresetKeyRecovery is KeyRecoveryParamsLiteral.
	PresetKeyRecovery = "key-recovery"
)

// DefaultParamsLiteral returns the parameters fedprop uses unless configured otherwise:
// SimulationParamsLiteral.
func DefaultParamsLiteral() ParamsLiteral { return SimulationParamsLiteral() }

// SimulationParamsLiteral returns the simulation-secure set: the flooding noise keeps the
// statistical distance between real and simulated decryption shares at most 2^-40 over a
// key's budget of 65,536 ciphertext decryptions of up to 16,384 contributions, for a committee
// of up to 32 (sigma 2^72). That needs ring degree 8192 (4,096 values per ciphertext),
// Q of 3x55 bits (log QP = 165, within the 128-bit bound of 218 for N=8192) and scale 2^115,
// which leaves sums up to 2^48 and releases them on a 2^-30 grid. An update costs 393 KB.
func SimulationParamsLiteral() ParamsLiteral {
	return withSigma(ParamsLiteral{
		LogN:               13,
		LogQ:               []int{55, 55, 55},
		LogDefaultScale:    115,
		EncoderPrecision:   53,
		LogDecodePrecision: 30,
		Guarantee:          GuaranteeSimulation,
		MaxContributors:    1 << 14,
		MaxCommittee:       32,
		DecryptionBudget:   1 << 16,
	})
}

// KeyRecoveryParamsLiteral returns the lighter set for app cohorts where bandwidth rules:
// ring degree 4096, Q of 55+54 bits, scale 2^67, sums up to 2^40 released on a 2^-20 grid,
// an update of 131 KB (a third of the simulation set's). Its flooding noise (sigma 2^33) only
// bounds the probability that the coordinator recovers the collective key (about 2^-63 over
// the same budget); decryption shares may leak a little about each aggregate's noise, so it
// gives no simulation guarantee. Pair it with client-level differential privacy.
func KeyRecoveryParamsLiteral() ParamsLiteral {
	return withSigma(ParamsLiteral{
		LogN:               12,
		LogQ:               []int{55, 54},
		LogDefaultScale:    67,
		EncoderPrecision:   53,
		LogDecodePrecision: 20,
		Guarantee:          GuaranteeKeyRecovery,
		MaxContributors:    1 << 14,
		MaxCommittee:       32,
		DecryptionBudget:   1 << 16,
	})
}

// PresetLiteral returns the named parameter set.
func PresetLiteral(name string) (ParamsLiteral, error) {
	switch name {
	case "", PresetSimulation:
		return SimulationParamsLiteral(), nil
	case PresetKeyRecovery:
		return KeyRecoveryParamsLiteral(), nil
	}
	return ParamsLiteral{}, fmt.Errorf("%w: parameter set %q, want %q or %q", ErrInvalidParams, name, PresetSimulation, PresetKeyRecovery)
}

// withSigma fills a zero SmudgingSigma with the smallest power of two the bound needs.
func withSigma(lit ParamsLiteral) ParamsLiteral {
	if lit.SmudgingSigma != 0 {
		return lit
	}
	if need, err := requiredSigma(lit.Guarantee, lit.LogN, lit.MaxContributors, lit.MaxCommittee, lit.DecryptionBudget); err == nil && need > 0 {
		lit.SmudgingSigma = math.Exp2(math.Ceil(math.Log2(need)))
	}
	return lit
}

// maxLogQPFor128Bits is the largest log2(QP) that keeps 128-bit security for a ternary secret,
// per ring degree, from the HomomorphicEncryption.org security standard (Table 1, classical).
var maxLogQPFor128Bits = map[int]float64{10: 27, 11: 54, 12: 109, 13: 218, 14: 438, 15: 881}

const (
	// maxLength bounds the number of values in one encrypted vector so that a malformed header
	// cannot ask for an absurd allocation.
	maxLength = 1 << 24
	// maxMembers bounds committee sizes and Shamir points.
	maxMembers = 1 << 16
	// maxBudget bounds DecryptionBudget and MaxContributors: the bound's arithmetic is in
	// float64 and beyond 2^40 nothing is meaningful.
	maxBudget = 1 << 40
	// releaseMarginBits is how far below half a release-grid step the decryption noise's
	// standard deviation must stay: 2^3.5, about 11 standard deviations, so that rounding
	// recovers the exact sum with overwhelming probability.
	releaseMarginBits = 3.5
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
	if lit.LogDecodePrecision == 0 {
		lit.LogDecodePrecision = def.LogDecodePrecision
	}
	if lit.Guarantee == "" {
		lit.Guarantee = def.Guarantee
	}
	if lit.MaxContributors == 0 {
		lit.MaxContributors = def.MaxContributors
	}
	if lit.MaxCommittee == 0 {
		lit.MaxCommittee = def.MaxCommittee
	}
	if lit.DecryptionBudget == 0 {
		lit.DecryptionBudget = def.DecryptionBudget
	}
	lit = withSigma(lit)
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
	logQ := 0
	for _, b := range lit.LogQ {
		logQ += b
	}
	if lit.LogDefaultScale < 20 || lit.LogDefaultScale > logQ-20 {
		return fmt.Errorf("%w: LogDefaultScale=%d, want 20..%d (log2(Q) minus 20 bits for the sums)", ErrInvalidParams, lit.LogDefaultScale, logQ-20)
	}
	if lit.EncoderPrecision > 53 {
		return fmt.Errorf("%w: EncoderPrecision=%d: only the float64 encoder (53) is supported", ErrInvalidParams, lit.EncoderPrecision)
	}
	if lit.MaxContributors < 1 || lit.MaxContributors > maxBudget {
		return fmt.Errorf("%w: MaxContributors=%d, want 1..2^40", ErrInvalidParams, lit.MaxContributors)
	}
	if lit.MaxCommittee < 2 || lit.MaxCommittee > maxMembers {
		return fmt.Errorf("%w: MaxCommittee=%d, want 2..%d", ErrInvalidParams, lit.MaxCommittee, maxMembers)
	}
	if lit.DecryptionBudget < 1 || lit.DecryptionBudget > maxBudget {
		return fmt.Errorf("%w: DecryptionBudget=%d, want 1..2^40", ErrInvalidParams, lit.DecryptionBudget)
	}
	need, err := requiredSigma(lit.Guarantee, lit.LogN, lit.MaxContributors, lit.MaxCommittee, lit.DecryptionBudget)
	if err != nil {
		return err
	}
	if math.IsNaN(lit.SmudgingSigma) || lit.SmudgingSigma < need || lit.SmudgingSigma > maxFloodSigma {
		return fmt.Errorf("%w: SmudgingSigma=%g (2^%.1f), want 2^%.1f (what a %s guarantee needs for %d decryptions of %d contributions, committee %d) up to 2^%d",
			ErrInvalidParams, lit.SmudgingSigma, math.Log2(lit.SmudgingSigma), math.Log2(need), lit.Guarantee, lit.DecryptionBudget, lit.MaxContributors, lit.MaxCommittee, maxLogFloodSigma)
	}
	// The release grid must be coarser than the decryption noise, or rounding would not
	// remove it: the noise of T shares, each sigma per coefficient, lands in a slot with
	// standard deviation sigma*sqrt(T*N/2)/scale; it must stay 2^3.5 below half a step.
	maxDecode := float64(lit.LogDefaultScale) - math.Log2(lit.SmudgingSigma) - math.Log2(float64(lit.MaxCommittee))/2 -
		float64(lit.LogN-1)/2 - 1 - releaseMarginBits
	if lit.LogDecodePrecision < 1 || float64(lit.LogDecodePrecision) > maxDecode {
		return fmt.Errorf("%w: LogDecodePrecision=%d, want 1..%d so rounding removes the decryption noise (or raise LogDefaultScale)", ErrInvalidParams, lit.LogDecodePrecision, int(maxDecode))
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

// Security states what the parameters guarantee about decryption shares.
func (p Params) Security() Security { return p.lit.security() }

// ReleaseGrid is the step decrypted values are rounded to, 2^-LogDecodePrecision.
func (p Params) ReleaseGrid() float64 { return math.Ldexp(1, -p.lit.LogDecodePrecision) }

// MaxContributors is the largest aggregate, in contributions, members decrypt.
func (p Params) MaxContributors() int { return p.lit.MaxContributors }

// DecryptionBudget is the number of ciphertexts a member decrypts under one collective key.
func (p Params) DecryptionBudget() int { return p.lit.DecryptionBudget }

// Presets lists the named parameter sets, the default first.
func Presets() []string { return []string{PresetSimulation, PresetKeyRecovery} }

// PresetOf names the parameter set a byte string of this package (a collective public key, a
// ciphertext) was made under, from the fingerprint in its header, and returns those
// parameters. A client uses it to see which guarantee a key it is handed carries before it
// encrypts anything under it; bytes made under unnamed parameters are ErrParamsMismatch.
func PresetOf(data []byte) (string, Params, error) {
	if len(data) < headerSize || string(data[0:4]) != wireMagic {
		return "", Params{}, fmt.Errorf("%w: not a secure-aggregation value", ErrMalformed)
	}
	for _, name := range Presets() {
		lit, err := PresetLiteral(name)
		if err != nil {
			return "", Params{}, err
		}
		p, err := NewParams(lit)
		if err != nil {
			return "", Params{}, err
		}
		if [8]byte(data[8:16]) == p.id {
			return name, p, nil
		}
	}
	return "", Params{}, fmt.Errorf("%w: made under parameters %x, which are none of %v", ErrParamsMismatch, data[8:16], Presets())
}
