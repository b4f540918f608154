package privacy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// Budget is the (epsilon, delta) target a run declares; a round that would take the run's
// epsilon above Epsilon at Delta is refused. Conversion says how epsilon is computed (PLD, the
// zero value, by default).
type Budget struct {
	// Epsilon is the most the run may spend.
	Epsilon float64
	// Delta is the delta at which epsilon is measured.
	Delta float64
	// Conversion turns the accountant's composition into epsilon.
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
	if !b.Conversion.valid() {
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
// rates and noise multipliers (rounds of DP-FedAvg, steps of DP-SGD, evaluation releases;
// adaptive clipping's count query is folded into its sum's noise multiplier, see
// SumNoiseMultiplier). It keeps two things: the RDP curve, which adds up at each order, and
// the history of what was composed (one entry per distinct (q, sigma), with its steps), from
// which the PLD conversion composes privacy loss distributions. With PLD the epsilon is the
// smaller of the two accountants' bounds.
//
// The exported fields are the whole persistent state: encode them with encoding/json (the RDP
// values stay finite as long as every composed mechanism had noise, which Compose enforces) or
// with MarshalBinary. State written before the accountant kept its history decodes with
// HistoryComplete false; its epsilon is then RDP's, which is still an upper bound. One-step RDP
// curves are cached per (q, sigma), so composing a round with a mechanism seen before costs one
// addition per order. An Accountant is not safe for concurrent use.
type Accountant struct {
	// Orders are the Renyi orders tracked.
	Orders []float64
	// RDP is the composed Renyi divergence at each of Orders.
	RDP []float64
	// History is every mechanism composed, merged by (q, sigma), in the order first seen.
	History []SampledGaussian `json:",omitempty"`
	// HistoryComplete says History holds everything RDP does (true from NewAccountant; false
	// for state written before the history was kept, whose PLD epsilon cannot be computed).
	HistoryComplete bool `json:",omitempty"`

	cache map[mechanism][]float64
}

// maxHistory bounds the distinct (q, sigma) an accountant keeps, and so the work of decoding
// stored state. A run meets new ones only through noise shortfalls, at most one per possible
// contributor count.
const maxHistory = 1 << 16

// NewAccountant returns an accountant with nothing composed, tracking the given orders (copied;
// nil or empty means DefaultOrders). Invalid orders are reported by the first Compose.
func NewAccountant(orders []float64) *Accountant {
	if len(orders) == 0 {
		orders = DefaultOrders()
	}
	return &Accountant{Orders: slices.Clone(orders), RDP: make([]float64, len(orders)), HistoryComplete: true}
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
	if len(a.History) > maxHistory {
		return fmt.Errorf("accountant history of %d mechanisms, at most %d: %w", len(a.History), maxHistory, ErrInvalidArgument)
	}
	for i, m := range a.History {
		if err := m.validate(); err != nil || m.Q == 0 || m.Sigma == 0 || m.Steps == 0 {
			return fmt.Errorf("accountant history entry %d (q=%v sigma=%v steps=%d), want q in (0, 1], finite sigma > 0, steps >= 1: %w",
				i, m.Q, m.Sigma, m.Steps, ErrInvalidArgument)
		}
	}
	return nil
}

// complete reports whether History accounts for everything in RDP: it was kept from the start,
// or nothing has been composed yet.
func (a *Accountant) complete() bool {
	if a.HistoryComplete {
		return true
	}
	return len(a.History) == 0 && !slices.ContainsFunc(a.RDP, func(r float64) bool { return r != 0 })
}

// withHistory returns history with steps steps of (q, sigma) added (a new slice).
func withHistory(history []SampledGaussian, q, sigma float64, steps int) []SampledGaussian {
	out := slices.Clone(history)
	if q == 0 || steps == 0 {
		return out
	}
	if i := slices.IndexFunc(out, func(m SampledGaussian) bool { return m.Q == q && m.Sigma == sigma }); i >= 0 {
		out[i].Steps += steps
		return out
	}
	return append(out, SampledGaussian{Q: q, Sigma: sigma, Steps: steps})
}

// epsilonOf converts a composition (its RDP curve and, when complete, its history) to epsilon.
func (a *Accountant) epsilonOf(rdp []float64, history []SampledGaussian, complete bool, delta float64, conv Conversion) (float64, float64, error) {
	if conv == PLD {
		if complete {
			return pldOrRDP(history, a.Orders, rdp, delta)
		}
		conv = Tight
	}
	return EpsilonFromRDP(a.Orders, rdp, delta, conv)
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
// noise multiplier sigma, to the RDP curve and to the history. A mechanism without noise
// (sigma = 0, q > 0) has no finite guarantee and is refused, so the state stays finite; on any
// error the accountant is unchanged.
func (a *Accountant) Compose(q, sigma float64, steps int) error {
	if sigma == 0 && q > 0 && steps > 0 {
		return fmt.Errorf("compose q=%v with sigma=0: no noise means no finite privacy guarantee: %w", q, ErrInvalidArgument)
	}
	total, err := a.composed(q, sigma, steps)
	if err != nil {
		return fmt.Errorf("compose q=%v sigma=%v steps=%d: %w", q, sigma, steps, err)
	}
	history := withHistory(a.History, q, sigma, steps)
	if len(history) > maxHistory {
		return fmt.Errorf("compose q=%v sigma=%v: more than %d distinct mechanisms: %w", q, sigma, maxHistory, ErrInvalidArgument)
	}
	a.HistoryComplete = a.complete()
	a.RDP, a.History = total, history
	return nil
}

// Epsilon is the epsilon spent so far at delta, and the order that attains it (0 when the PLD
// bound is the smaller, see PLD). With PLD and a history that is not complete, it is Tight's.
func (a *Accountant) Epsilon(delta float64, conv Conversion) (eps, order float64, err error) {
	if err := a.check(); err != nil {
		return 0, 0, err
	}
	return a.epsilonOf(a.RDP, a.History, a.complete(), delta, conv)
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
	if sigma == 0 && q > 0 && steps > 0 {
		return true, math.Inf(1), nil
	}
	eps, _, err := a.epsilonOf(total, withHistory(a.History, q, sigma, steps), a.complete(), budget.Delta, budget.Conversion)
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

// SigmaWithin is the smallest noise multiplier (to SigmaTolerance, or PLDSigmaTolerance with
// PLD, erring high) with which steps more steps of (q, sigma) keep this accountant's
// composition within budget: how much noise a release needs after what was already spent (or
// reserved). The accountant is not changed.
func (a *Accountant) SigmaWithin(q float64, steps int, budget Budget) (float64, error) {
	if budget.Conversion == PLD {
		return a.sigmaWithinPLD(q, steps, budget)
	}
	sigma, err := bisectSigma(func(sigma float64) (bool, error) {
		exceed, _, err := a.WouldExceed(q, sigma, steps, budget)
		return !exceed, err
	})
	if errors.Is(err, ErrTargetUnreachable) {
		return 0, fmt.Errorf("no noise multiplier up to %v keeps %d more steps at q=%v within epsilon %v: %w", MaxSigma, steps, q, budget.Epsilon, ErrTargetUnreachable)
	}
	return sigma, err
}

// sigmaWithinPLD is SigmaWithin under PLD: RDP's answer (which PLD can only improve on)
// bounds the search, and results are cached for the same history, orders and target.
func (a *Accountant) sigmaWithinPLD(q float64, steps int, budget Budget) (float64, error) {
	rdpBudget := budget
	rdpBudget.Conversion = Tight
	hi, err := a.SigmaWithin(q, steps, rdpBudget)
	if errors.Is(err, ErrTargetUnreachable) {
		hi = MaxSigma
	} else if err != nil || !a.complete() {
		return hi, err
	}
	parts, _, err := pldParts(a.History)
	if err != nil {
		return 0, err
	}
	key := sigmaKey{spent: partsKey(parts) + ordersKey(a.Orders), q: q, steps: steps, delta: budget.Delta, epsilon: budget.Epsilon}
	if sigma, ok := pldCaches.sigma.get(key); ok {
		return sigma, nil
	}
	sigma, err := refineSigma(func(sigma float64) (float64, error) {
		_, eps, err := a.WouldExceed(q, sigma, steps, budget)
		return eps, err
	}, budget.Epsilon, hi)
	if errors.Is(err, ErrTargetUnreachable) {
		return 0, fmt.Errorf("no noise multiplier up to %v keeps %d more steps at q=%v within epsilon %v: %w", MaxSigma, steps, q, budget.Epsilon, ErrTargetUnreachable)
	}
	if err != nil {
		return 0, err
	}
	pldCaches.sigma.put(key, sigma)
	return sigma, nil
}

// Clone returns an independent copy of the accountant's state. The copy starts with the
// one-step RDP curves the original has cached (the map is copied; the curves are read only),
// so that a budget check on a clone every round does not compute them again.
func (a *Accountant) Clone() *Accountant {
	return &Accountant{Orders: slices.Clone(a.Orders), RDP: slices.Clone(a.RDP), History: slices.Clone(a.History), HistoryComplete: a.HistoryComplete,
		cache: maps.Clone(a.cache)}
}

// Versions of MarshalBinary's encoding, its first byte: 1 is the RDP state alone (what was
// written before the history was kept, and still what a state without history encodes to);
// 2 adds the history.
const (
	accountantBinaryVersion        = 1
	accountantBinaryVersionHistory = 2
)

// MarshalBinary encodes the state bit for bit: a version byte, the number of orders as a
// uvarint, then each order and each RDP value as little-endian IEEE-754 float64. Version 2
// follows with HistoryComplete as one byte (0 or 1), the number of history entries as a
// uvarint and each entry as q and sigma (float64) and steps (uvarint). A state with neither
// history nor HistoryComplete is written as version 1, so that each state has one encoding.
func (a *Accountant) MarshalBinary() ([]byte, error) {
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("marshal accountant: %w", err)
	}
	withHistory := a.HistoryComplete || len(a.History) > 0
	buf := make([]byte, 0, 2+2*binary.MaxVarintLen64+16*len(a.Orders)+26*len(a.History))
	if withHistory {
		buf = append(buf, accountantBinaryVersionHistory)
	} else {
		buf = append(buf, accountantBinaryVersion)
	}
	buf = binary.AppendUvarint(buf, uint64(len(a.Orders)))
	for _, v := range a.Orders {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
	}
	for _, v := range a.RDP {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
	}
	if !withHistory {
		return buf, nil
	}
	flag := byte(0)
	if a.HistoryComplete {
		flag = 1
	}
	buf = append(buf, flag)
	buf = binary.AppendUvarint(buf, uint64(len(a.History)))
	for _, m := range a.History {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(m.Q))
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(m.Sigma))
		buf = binary.AppendUvarint(buf, uint64(m.Steps))
	}
	return buf, nil
}

// uvarint decodes a canonical (shortest) uvarint: each state has exactly one encoding.
func uvarint(data []byte) (uint64, int, error) {
	n, used := binary.Uvarint(data)
	if used <= 0 || used != len(binary.AppendUvarint(nil, n)) {
		return 0, 0, fmt.Errorf("bad length: %w", ErrInvalidArgument)
	}
	return n, used, nil
}

// UnmarshalBinary decodes what MarshalBinary produced (either version), rejecting malformed or
// invalid state.
func (a *Accountant) UnmarshalBinary(data []byte) error {
	if len(data) == 0 || (data[0] != accountantBinaryVersion && data[0] != accountantBinaryVersionHistory) {
		return fmt.Errorf("unmarshal accountant: unknown encoding version: %w", ErrInvalidArgument)
	}
	version := data[0]
	n, used, err := uvarint(data[1:])
	if err != nil {
		return fmt.Errorf("unmarshal accountant: %w", err)
	}
	rest := data[1+used:]
	if n == 0 || n > uint64(len(rest))/16 || (version == accountantBinaryVersion && uint64(len(rest)) != 16*n) {
		return fmt.Errorf("unmarshal accountant: %d bytes for %d orders: %w", len(rest), n, ErrInvalidArgument)
	}
	decoded := Accountant{Orders: make([]float64, n), RDP: make([]float64, n)}
	for i := range decoded.Orders {
		decoded.Orders[i] = math.Float64frombits(binary.LittleEndian.Uint64(rest[8*i:]))
		decoded.RDP[i] = math.Float64frombits(binary.LittleEndian.Uint64(rest[8*(int(n)+i):]))
	}
	rest = rest[16*n:]
	if version == accountantBinaryVersionHistory {
		if err := decoded.unmarshalHistory(rest); err != nil {
			return fmt.Errorf("unmarshal accountant: %w", err)
		}
	}
	if err := decoded.check(); err != nil {
		return fmt.Errorf("unmarshal accountant: %w", err)
	}
	*a = decoded
	return nil
}

// unmarshalHistory decodes version 2's tail: the flag, the count and the entries.
func (a *Accountant) unmarshalHistory(data []byte) error {
	if len(data) == 0 || data[0] > 1 {
		return fmt.Errorf("bad history flag: %w", ErrInvalidArgument)
	}
	a.HistoryComplete = data[0] == 1
	m, used, err := uvarint(data[1:])
	if err != nil {
		return err
	}
	data = data[1+used:]
	if m > maxHistory || m > uint64(len(data))/17 || (m == 0 && !a.HistoryComplete) {
		// Neither history nor flag is version 1's encoding, and an entry takes at least 17 bytes.
		return fmt.Errorf("%d history entries in %d bytes: %w", m, len(data), ErrInvalidArgument)
	}
	if m > 0 {
		a.History = make([]SampledGaussian, m)
	}
	for i := range a.History {
		a.History[i].Q = math.Float64frombits(binary.LittleEndian.Uint64(data))
		a.History[i].Sigma = math.Float64frombits(binary.LittleEndian.Uint64(data[8:]))
		steps, used, err := uvarint(data[16:])
		if err != nil {
			return err
		}
		if steps > math.MaxInt {
			return fmt.Errorf("history entry %d: %d steps: %w", i, steps, ErrInvalidArgument)
		}
		a.History[i].Steps = int(steps)
		data = data[16+used:]
		if i+1 < len(a.History) && len(data) < 17 {
			return fmt.Errorf("history truncated at entry %d: %w", i+1, ErrInvalidArgument)
		}
	}
	if len(data) != 0 {
		return fmt.Errorf("%d trailing bytes: %w", len(data), ErrInvalidArgument)
	}
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
