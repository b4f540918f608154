package privacy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Budget is the (epsilon, delta) target a run declares; a round that would take the run's
// epsilon above Epsilon at Delta is refused. Conversion says how RDP is converted (Tight, the
// zero value, by default).
type Budget struct {
	// Epsilon is the most the run may spend.
	Epsilon float64
	// Delta is the delta at which epsilon is measured.
	Delta float64
	// Conversion turns the accountant's RDP into epsilon.
	Conversion Conversion
}

// Validate checks that the budget is usable: a finite epsilon > 0 and 0 < delta < 1.
func (b Budget) Validate() error {
	if math.IsNaN(b.Epsilon) || math.IsInf(b.Epsilon, 0) || b.Epsilon <= 0 {
		return fmt.Errorf("budget epsilon=%v, want finite and > 0: %w", b.Epsilon, ErrInvalidArgument)
	}
	if math.IsNaN(b.Delta) || b.Delta <= 0 || b.Delta >= 1 {
		return fmt.Errorf("budget delta=%v, want 0 < delta < 1: %w", b.Delta, ErrInvalidArgument)
	}
	if b.Conversion != Tight && b.Conversion != Classic {
		return fmt.Errorf("budget conversion %v: %w", b.Conversion, ErrInvalidArgument)
	}
	return nil
}

// maxCachedMechanisms bounds the accountant's per-(q, sigma) cache. A run normally uses a
// handful of mechanisms; rounds with a noise shortfall add one per distinct shortfall, at most
// the expected contributor count.
const maxCachedMechanisms = 256

// mechanism identifies one Poisson-subsampled Gaussian step.
type mechanism struct{ q, sigma float64 }

// Accountant composes Poisson-subsampled Gaussian mechanisms with possibly different sampling
// rates and noise multipliers (rounds of DP-FedAvg, steps of DP-SGD; adaptive clipping's count
// query is folded into its sum's noise multiplier, see SumNoiseMultiplier). RDP adds up at each
// order, so the state is the running total per order.
//
// The exported fields are the whole persistent state: encode them with encoding/json (the RDP
// values stay finite as long as every composed mechanism had noise, which Compose enforces) or
// with MarshalBinary. One-step RDP curves are cached per (q, sigma), so composing a round with a
// mechanism seen before costs one addition per order. An Accountant is not safe for concurrent
// use.
type Accountant struct {
	// Orders are the Renyi orders tracked.
	Orders []float64
	// RDP is the composed Renyi divergence at each of Orders.
	RDP []float64

	cache map[mechanism][]float64
}

// NewAccountant returns an accountant with nothing composed, tracking the given orders (copied;
// nil or empty means DefaultOrders). Invalid orders are reported by the first Compose.
func NewAccountant(orders []float64) *Accountant {
	if len(orders) == 0 {
		orders = DefaultOrders()
	}
	return &Accountant{Orders: slices.Clone(orders), RDP: make([]float64, len(orders))}
}

// check verifies the state, which may have been decoded from storage.
func (a *Accountant) check() error {
	if len(a.Orders) != len(a.RDP) {
		return fmt.Errorf("accountant has %d orders but %d RDP values: %w", len(a.Orders), len(a.RDP), ErrInvalidArgument)
	}
	if err := validateOrders(a.Orders); err != nil {
		return fmt.Errorf("accountant: %w", err)
	}
	for i, r := range a.RDP {
		if math.IsNaN(r) || r < 0 {
			return fmt.Errorf("accountant RDP %v at order %v: %w", r, a.Orders[i], ErrInvalidArgument)
		}
	}
	return nil
}

// stepRDP returns the (cached) one-step RDP curve of (q, sigma). The slice is shared: read only.
func (a *Accountant) stepRDP(q, sigma float64) ([]float64, error) {
	key := mechanism{q, sigma}
	if r, ok := a.cache[key]; ok {
		return r, nil
	}
	r, err := sampledGaussianRDPStep(q, sigma, a.Orders)
	if err != nil {
		return nil, err
	}
	if a.cache == nil || len(a.cache) >= maxCachedMechanisms {
		a.cache = make(map[mechanism][]float64)
	}
	a.cache[key] = r
	return r, nil
}

// composed returns the RDP the accountant would hold after composing steps steps of (q, sigma),
// without changing it.
func (a *Accountant) composed(q, sigma float64, steps int) ([]float64, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	if err := validateMechanism(q, sigma, steps); err != nil {
		return nil, err
	}
	total := slices.Clone(a.RDP)
	if steps == 0 || q == 0 {
		return total, nil
	}
	if sigma == 0 {
		for i := range total {
			total[i] = math.Inf(1)
		}
		return total, nil
	}
	step, err := a.stepRDP(q, sigma)
	if err != nil {
		return nil, err
	}
	for i := range total {
		total[i] += float64(steps) * step[i]
	}
	return total, nil
}

// Compose adds steps steps of the Poisson-subsampled Gaussian mechanism with sampling rate q and
// noise multiplier sigma. A mechanism without noise (sigma = 0, q > 0) has no finite guarantee
// and is refused, so the state stays finite; on any error the accountant is unchanged.
func (a *Accountant) Compose(q, sigma float64, steps int) error {
	if sigma == 0 && q > 0 && steps > 0 {
		return fmt.Errorf("compose q=%v with sigma=0: no noise means no finite privacy guarantee: %w", q, ErrInvalidArgument)
	}
	total, err := a.composed(q, sigma, steps)
	if err != nil {
		return fmt.Errorf("compose q=%v sigma=%v steps=%d: %w", q, sigma, steps, err)
	}
	a.RDP = total
	return nil
}

// Epsilon is the epsilon spent so far at delta, and the order that attains it.
func (a *Accountant) Epsilon(delta float64, conv Conversion) (eps, order float64, err error) {
	if err := a.check(); err != nil {
		return 0, 0, err
	}
	return EpsilonFromRDP(a.Orders, a.RDP, delta, conv)
}

// WouldExceed reports whether composing steps more steps of (q, sigma) would take epsilon above
// the budget, and the epsilon it would reach. The accountant is not changed.
func (a *Accountant) WouldExceed(q, sigma float64, steps int, budget Budget) (bool, float64, error) {
	if err := budget.Validate(); err != nil {
		return false, 0, err
	}
	total, err := a.composed(q, sigma, steps)
	if err != nil {
		return false, 0, fmt.Errorf("would exceed q=%v sigma=%v steps=%d: %w", q, sigma, steps, err)
	}
	eps, _, err := EpsilonFromRDP(a.Orders, total, budget.Delta, budget.Conversion)
	if err != nil {
		return false, 0, err
	}
	return eps > budget.Epsilon, eps, nil
}

// ComposeWithin composes steps steps of (q, sigma) only if that keeps epsilon within the budget,
// and returns the epsilon reached. When it would not, the accountant is unchanged and the error
// wraps ErrBudgetExceeded and states both epsilons, so the caller can end the run saying so.
func (a *Accountant) ComposeWithin(q, sigma float64, steps int, budget Budget) (float64, error) {
	exceed, eps, err := a.WouldExceed(q, sigma, steps, budget)
	if err != nil {
		return 0, err
	}
	if exceed {
		return eps, fmt.Errorf("composing q=%v sigma=%v steps=%d would reach epsilon %.6g > budget %.6g at delta %g: %w",
			q, sigma, steps, eps, budget.Epsilon, budget.Delta, ErrBudgetExceeded)
	}
	if err := a.Compose(q, sigma, steps); err != nil {
		return 0, err
	}
	return eps, nil
}

// SigmaWithin is the smallest noise multiplier (to SigmaTolerance, erring high) with which
// steps more steps of (q, sigma) keep this accountant's composition within budget: how much
// noise a release needs after what was already spent (or reserved). The accountant is not
// changed.
func (a *Accountant) SigmaWithin(q float64, steps int, budget Budget) (float64, error) {
	sigma, err := bisectSigma(func(sigma float64) (bool, error) {
		exceed, _, err := a.WouldExceed(q, sigma, steps, budget)
		return !exceed, err
	})
	if errors.Is(err, ErrTargetUnreachable) {
		return 0, fmt.Errorf("no noise multiplier up to %v keeps %d more steps at q=%v within epsilon %v: %w", MaxSigma, steps, q, budget.Epsilon, ErrTargetUnreachable)
	}
	return sigma, err
}

// Clone returns an independent copy of the accountant's state (the cache is not shared).
func (a *Accountant) Clone() *Accountant {
	return &Accountant{Orders: slices.Clone(a.Orders), RDP: slices.Clone(a.RDP)}
}

// accountantBinaryVersion is the first byte of MarshalBinary's encoding.
const accountantBinaryVersion = 1

// MarshalBinary encodes the state bit for bit: a version byte, the number of orders as a
// uvarint, then each order and each RDP value as little-endian IEEE-754 float64.
func (a *Accountant) MarshalBinary() ([]byte, error) {
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("marshal accountant: %w", err)
	}
	buf := make([]byte, 0, 1+binary.MaxVarintLen64+16*len(a.Orders))
	buf = append(buf, accountantBinaryVersion)
	buf = binary.AppendUvarint(buf, uint64(len(a.Orders)))
	for _, v := range a.Orders {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
	}
	for _, v := range a.RDP {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
	}
	return buf, nil
}

// UnmarshalBinary decodes what MarshalBinary produced, rejecting malformed or invalid state.
func (a *Accountant) UnmarshalBinary(data []byte) error {
	if len(data) == 0 || data[0] != accountantBinaryVersion {
		return fmt.Errorf("unmarshal accountant: unknown encoding version: %w", ErrInvalidArgument)
	}
	n, used := binary.Uvarint(data[1:])
	if used <= 0 || used != len(binary.AppendUvarint(nil, n)) {
		// Only the canonical (shortest) encoding is accepted, so each state has one encoding.
		return fmt.Errorf("unmarshal accountant: bad length: %w", ErrInvalidArgument)
	}
	rest := data[1+used:]
	if n == 0 || n > uint64(len(rest))/16 || uint64(len(rest)) != 16*n {
		return fmt.Errorf("unmarshal accountant: %d bytes for %d orders: %w", len(rest), n, ErrInvalidArgument)
	}
	decoded := Accountant{Orders: make([]float64, n), RDP: make([]float64, n)}
	for i := range decoded.Orders {
		decoded.Orders[i] = math.Float64frombits(binary.LittleEndian.Uint64(rest[8*i:]))
		decoded.RDP[i] = math.Float64frombits(binary.LittleEndian.Uint64(rest[8*(int(n)+i):]))
	}
	if err := decoded.check(); err != nil {
		return fmt.Errorf("unmarshal accountant: %w", err)
	}
	*a = decoded
	return nil
}

// WorstEpsilon returns the largest epsilon at delta among the accountants (for DP-SGD, one per
// branch: each accounts for its own steps, and the model card states the worst) and the index
// of the accountant that has it.
func WorstEpsilon(delta float64, conv Conversion, accountants ...*Accountant) (eps float64, index int, err error) {
	if len(accountants) == 0 {
		return 0, 0, fmt.Errorf("worst epsilon of no accountants: %w", ErrInvalidArgument)
	}
	worst, at := math.Inf(-1), 0
	for i, acc := range accountants {
		if acc == nil {
			return 0, 0, fmt.Errorf("accountant %d is nil: %w", i, ErrInvalidArgument)
		}
		e, _, err := acc.Epsilon(delta, conv)
		if err != nil {
			return 0, 0, fmt.Errorf("accountant %d: %w", i, err)
		}
		if e > worst {
			worst, at = e, i
		}
	}
	return worst, at, nil
}
