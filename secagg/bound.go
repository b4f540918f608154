package secagg

import (
	"fmt"
	"math"
)

// Guarantee names what the flooding noise of a decryption share is sized to guarantee over a
// collective key's lifetime (see the package documentation, "Flooding noise").
type Guarantee string

const (
	// GuaranteeSimulation: the decryption shares the coordinator sees are within statistical
	// distance 2^-SimulationBits of shares a simulator makes from the decrypted sums alone, so
	// they reveal nothing else, about the key or about any contribution's encryption noise.
	GuaranteeSimulation Guarantee = "simulation"
	// GuaranteeKeyRecovery: the Rényi divergence of order 2 between real and simulated shares
	// is at most 2, so any attack that recovers the key succeeds with probability at most
	// sqrt(2*p), p its probability against RLWE alone: about 2^-63.5 for p = 2^-128. Shares may
	// leak a little about each aggregate's noise; there is no simulation guarantee.
	GuaranteeKeyRecovery Guarantee = "key-recovery"
)

// SimulationBits is the statistical-distance exponent GuaranteeSimulation sizes for: the
// distance over the key's whole decryption budget is at most 2^-40.
const SimulationBits = 40

// rlweBits is the hardness assumed of the underlying RLWE instance (the parameter checks keep
// log QP within the HomomorphicEncryption.org 128-bit bound).
const rlweBits = 128

const (
	// freshSigma is the standard deviation of fresh RLWE errors (lattigo's Xe): public-key
	// shares and encryption noise.
	freshSigma = 3.2
	// ternaryVariance is the variance of a coefficient of a ternary secret or of an
	// encryption's u (lattigo's Ternary{P: 2/3}: nonzero with probability 2/3).
	ternaryVariance = 2.0 / 3
	// normTail is the factor by which the bound on the squared norm of the noise exceeds its
	// expectation. The squared norm sums 2^12 to 2^13 coefficients; its relative spread is a
	// few percent (TestNoiseNormBoundHolds measures it), so a factor of 2 is never reached.
	normTail = 2
)

// noiseNormBound bounds the Euclidean norm, over the ring's N coefficients, of the
// secret-dependent noise of one ciphertext that sums K fresh encryptions under the collective
// key of a committee of n members:
//
//	e = sum over contributions of (u*e_pk + e0 + e1*s),  e_pk = sum_i e_i,  s = sum_i s_i.
//
// Per coefficient, u*e_pk has variance N*(2/3)*n*3.2^2, e1*s the same and e0 3.2^2; K
// independent contributions add their variances, and the squared norm is N times that, times
// normTail.
func noiseNormBound(logN, contributors, members int) float64 {
	n := math.Exp2(float64(logN))
	perCoefficient := freshSigma * freshSigma * (1 + 2*n*ternaryVariance*float64(members))
	return math.Sqrt(normTail * n * float64(contributors) * perCoefficient)
}

// requiredSigma returns the smallest flooding sigma that gives guarantee g for a key serving
// budget ciphertext decryptions of aggregates of up to contributors encryptions, for a
// committee of up to members.
//
// Let e_j be the secret-dependent noise of the j-th decrypted ciphertext, ||e_j|| <= B. In the
// worst case a single honest member's flooding noise E (independent discrete Gaussians of
// sigma per coefficient) stands between the coordinator and e_j: it sees E + e_j where a
// simulator would produce E. For Gaussians of equal sigma, shifting by e_j costs
// KL = ||e_j||^2/(2 sigma^2) and a Rényi divergence of order 2 of exp(||e_j||^2/sigma^2); both
// compose over independent decryptions by adding exponents. Over M decryptions:
//
//   - simulation: by Pinsker, SD <= sqrt(KL/2) <= sqrt(M)*B/(2 sigma) <= 2^-40, so
//     sigma >= sqrt(M)*B*2^39;
//   - key recovery: R2 = exp(M*B^2/sigma^2) <= 2, so sigma >= B*sqrt(M/ln 2).
func requiredSigma(g Guarantee, logN, contributors, members, budget int) (float64, error) {
	b := noiseNormBound(logN, contributors, members)
	m := float64(budget)
	switch g {
	case GuaranteeSimulation:
		return math.Sqrt(m) * b * math.Exp2(SimulationBits-1), nil
	case GuaranteeKeyRecovery:
		return b * math.Sqrt(m/math.Ln2), nil
	}
	return 0, fmt.Errorf("%w: guarantee %q, want %q or %q", ErrInvalidParams, g, GuaranteeSimulation, GuaranteeKeyRecovery)
}

// Security states what a parameter set guarantees, for model cards, summaries and the README.
type Security struct {
	// Guarantee is the kind of guarantee.
	Guarantee Guarantee `json:"guarantee"`
	// Bits is its level: for simulation, -log2 of the statistical distance bound over the
	// whole decryption budget; for key recovery, -log2 of the bound on the probability that
	// any attack recovers the key, assuming 128-bit RLWE.
	Bits float64 `json:"bits"`
	// LogSigma is log2 of the flooding noise's standard deviation.
	LogSigma float64 `json:"log2_flooding_sigma"`
	// MaxContributors, MaxCommittee and DecryptionBudget are the bound the noise is sized
	// for; members refuse anything outside it.
	MaxContributors  int `json:"max_contributors"`
	MaxCommittee     int `json:"max_committee"`
	DecryptionBudget int `json:"decryption_budget"`
}

// security computes the guarantee the literal's (validated) sigma gives.
func (lit ParamsLiteral) security() Security {
	b := noiseNormBound(lit.LogN, lit.MaxContributors, lit.MaxCommittee)
	m := float64(lit.DecryptionBudget)
	s := Security{
		Guarantee:        lit.Guarantee,
		LogSigma:         math.Log2(lit.SmudgingSigma),
		MaxContributors:  lit.MaxContributors,
		MaxCommittee:     lit.MaxCommittee,
		DecryptionBudget: lit.DecryptionBudget,
	}
	switch lit.Guarantee {
	case GuaranteeSimulation:
		s.Bits = math.Log2(2 * lit.SmudgingSigma / (math.Sqrt(m) * b))
	case GuaranteeKeyRecovery:
		log2R2 := m * b * b / (lit.SmudgingSigma * lit.SmudgingSigma) / math.Ln2
		s.Bits = (rlweBits - log2R2) / 2
	}
	return s
}

// String says it in one line.
func (s Security) String() string {
	switch s.Guarantee {
	case GuaranteeSimulation:
		return fmt.Sprintf("simulation-secure decryption: statistical distance <= 2^-%.0f over %d ciphertext decryptions of up to %d contributions (committee <= %d, flooding sigma 2^%.1f)",
			math.Floor(s.Bits), s.DecryptionBudget, s.MaxContributors, s.MaxCommittee, s.LogSigma)
	case GuaranteeKeyRecovery:
		return fmt.Sprintf("key-recovery-secure decryption: key recovery probability <= 2^-%.0f over %d ciphertext decryptions of up to %d contributions (committee <= %d, flooding sigma 2^%.1f); no simulation guarantee",
			math.Floor(s.Bits), s.DecryptionBudget, s.MaxContributors, s.MaxCommittee, s.LogSigma)
	}
	return "unknown guarantee"
}
