package privacy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Conversion selects how a composition of Gaussian mechanisms is turned into (epsilon,
// delta)-DP: by privacy loss distributions (PLD, the default), or from the Renyi-DP curve by
// one of two bounds (Tight, Classic). All three are upper bounds on the exact epsilon; PLD is
// the closest (for 10 steps at q = 0.01, sigma = 0.8, delta = 1e-5: 0.90 against Tight's 1.78).
type Conversion int

const (
	// PLD composes privacy loss distributions (see PLDEpsilon), within about 1e-4 of the exact
	// epsilon, and reports the smaller of that and Tight's epsilon: both are upper bounds, so
	// the smaller one is too, and the PLD never reports more than RDP. It needs the composition
	// itself, not only its RDP curve: an Accountant keeps its history for it. It is the zero
	// value, so it is the default.
	PLD Conversion = iota
	// Tight is the bound of Balle et al. 2020 (also Asoodeh et al. 2020, eq. 20):
	// epsilon = min over orders a of RDP(a) + log((a-1)/a) - (log delta + log a)/(a-1).
	Tight
	// Classic is Mironov 2017, Proposition 3: epsilon = min over a of RDP(a) - log(delta)/(a-1).
	Classic
)

// String returns the name ParseConversion accepts: "pld", "tight" or "classic".
func (c Conversion) String() string {
	switch c {
	case PLD:
		return "pld"
	case Tight:
		return "tight"
	case Classic:
		return "classic"
	default:
		return "Conversion(" + strconv.Itoa(int(c)) + ")"
	}
}

// Accountant names the accountant behind the conversion: "pld" or "rdp".
func (c Conversion) Accountant() string {
	if c == PLD {
		return "pld"
	}
	return "rdp"
}

// valid reports whether c is one of the three conversions.
func (c Conversion) valid() bool { return c == PLD || c == Tight || c == Classic }

// ParseConversion parses "pld", "tight" or "classic" (case-insensitive, surrounding spaces
// ignored).
func ParseConversion(s string) (Conversion, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "pld":
		return PLD, nil
	case "tight":
		return Tight, nil
	case "classic":
		return Classic, nil
	default:
		return 0, fmt.Errorf("conversion %q, want pld, tight or classic: %w", s, ErrInvalidArgument)
	}
}

// MarshalText implements encoding.TextMarshaler, so configuration files can name a Conversion.
func (c Conversion) MarshalText() ([]byte, error) {
	if !c.valid() {
		return nil, fmt.Errorf("marshal %v: %w", c, ErrInvalidArgument)
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseConversion.
func (c *Conversion) UnmarshalText(text []byte) error {
	parsed, err := ParseConversion(string(text))
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// maxParsedOrders bounds how many orders ParseOrders accepts, which with MaxOrder bounds the
// accountant's work for a command line.
const maxParsedOrders = 4096

// ParseOrders parses a comma-separated list of Renyi orders such as "1.5,2,4,8,16" (spaces
// around entries allowed). Each order must be a finite number in (1, MaxOrder].
func ParseOrders(s string) ([]float64, error) {
	fields := strings.Split(s, ",")
	if len(fields) > maxParsedOrders {
		return nil, fmt.Errorf("%d orders, at most %d allowed: %w", len(fields), maxParsedOrders, ErrInvalidArgument)
	}
	orders := make([]float64, 0, len(fields))
	for i, f := range fields {
		f = strings.TrimSpace(f)
		a, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("order %d %q: %w: %w", i+1, f, ErrInvalidArgument, err)
		}
		orders = append(orders, a)
	}
	if err := validateOrders(orders); err != nil {
		return nil, err
	}
	return orders, nil
}

// EpsilonFromRDP returns the smallest epsilon over the orders at which the mechanism with the
// given RDP curve is (epsilon, delta)-DP, and the order that attains it. Edge cases follow the
// reference: delta = 0 gives epsilon 0 when every RDP value is 0 and +Inf otherwise (order 0);
// an order where delta^2 > 1 - exp(-RDP) gives epsilon 0 (the KL bound); orders too close to 1
// for the tight bound (a <= 1.01) give +Inf; epsilon is never below 0. Orders below 1, negative
// or NaN RDP values, and a delta outside [0, 1] are errors, and so is PLD, which needs the
// composition rather than its RDP curve.
func EpsilonFromRDP(orders, rdp []float64, delta float64, conv Conversion) (eps, order float64, err error) {
	if math.IsNaN(delta) || delta < 0 || delta > 1 {
		return 0, 0, fmt.Errorf("delta=%v, want 0 <= delta <= 1: %w", delta, ErrInvalidArgument)
	}
	if conv != Tight && conv != Classic {
		return 0, 0, fmt.Errorf("conversion %v of an RDP curve, want tight or classic: %w", conv, ErrInvalidArgument)
	}
	if len(orders) != len(rdp) {
		return 0, 0, fmt.Errorf("%d orders but %d RDP values: %w", len(orders), len(rdp), ErrInvalidArgument)
	}
	if len(orders) == 0 {
		return 0, 0, fmt.Errorf("no Renyi orders: %w", ErrInvalidArgument)
	}
	for i := range orders {
		if math.IsNaN(orders[i]) || orders[i] < 1 {
			return 0, 0, fmt.Errorf("RDP order %v, want >= 1: %w", orders[i], ErrInvalidArgument)
		}
		if math.IsNaN(rdp[i]) || rdp[i] < 0 {
			return 0, 0, fmt.Errorf("RDP %v at order %v, want >= 0: %w", rdp[i], orders[i], ErrInvalidArgument)
		}
	}
	if delta == 0 {
		for _, r := range rdp {
			if r != 0 {
				return math.Inf(1), 0, nil
			}
		}
		return 0, 0, nil
	}

	best := -1
	bestEps := math.Inf(1)
	for i, a := range orders {
		e := orderEpsilon(a, rdp[i], delta, conv)
		if best < 0 || e < bestEps {
			best, bestEps = i, e
		}
	}
	return math.Max(0, bestEps), orders[best], nil
}

// orderEpsilon is the epsilon one order gives.
func orderEpsilon(a, r, delta float64, conv Conversion) float64 {
	if conv == Classic {
		if a == 1 {
			return math.Inf(1)
		}
		return r - math.Log(delta)/(a-1)
	}
	switch {
	case delta*delta+math.Expm1(-r) > 0:
		// delta <= sqrt(1 - exp(-KL)) already: the mechanism is (0, delta)-DP.
		return 0
	case a > 1.01:
		// The bound is numerically unstable as a -> 1 and useless there anyway.
		return r + math.Log1p(-1/a) - math.Log(delta*a)/(a-1)
	default:
		return math.Inf(1)
	}
}

// Epsilon is the epsilon (and the order attaining it) of the Poisson-subsampled Gaussian
// mechanism with sampling rate q and noise multiplier sigma run for steps steps, at delta.
// nil orders means DefaultOrders. With PLD, order is 0 when the PLD bound is the smaller and
// the RDP order when Tight's is (see PLD).
func Epsilon(q, sigma float64, steps int, delta float64, orders []float64, conv Conversion) (eps, order float64, err error) {
	if orders == nil {
		orders = DefaultOrders()
	}
	rdp, err := SampledGaussianRDP(q, sigma, steps, orders)
	if err != nil {
		return 0, 0, err
	}
	if conv == PLD {
		return pldOrRDP([]SampledGaussian{{Q: q, Sigma: sigma, Steps: steps}}, orders, rdp, delta)
	}
	return EpsilonFromRDP(orders, rdp, delta, conv)
}

// pldOrRDP is PLD's epsilon of a composition whose RDP curve is rdp: the smaller of the PLD
// bound and Tight's, with Tight's order when it is the smaller and 0 otherwise.
func pldOrRDP(history []SampledGaussian, orders, rdp []float64, delta float64) (eps, order float64, err error) {
	rdpEps, order, err := EpsilonFromRDP(orders, rdp, delta, Tight)
	if err != nil || rdpEps == 0 {
		return rdpEps, order, err
	}
	pldEps, err := PLDEpsilon(history, delta)
	if err != nil {
		return 0, 0, err
	}
	if pldEps < rdpEps {
		return pldEps, 0, nil
	}
	return rdpEps, order, nil
}

// MaxSigma is the largest noise multiplier SigmaFor tries before reporting ErrTargetUnreachable.
const MaxSigma = 1e6

// SigmaTolerance is SigmaFor's relative tolerance: the result meets the target and is at most
// this fraction above the smallest noise multiplier that does.
const SigmaTolerance = 1e-9

// SigmaFor returns, by bisection on the accountant, the smallest noise multiplier with which
// the Poisson-subsampled Gaussian mechanism (rate q, steps steps) is (epsilon, delta)-DP, to the
// relative tolerance SigmaTolerance (PLDSigmaTolerance with PLD); the value returned always
// meets the target. Epsilon is non-increasing in sigma at every order, which is what makes
// bisection sound. nil orders means DefaultOrders (with PLD, the orders of its RDP
// cross-check).
func SigmaFor(q float64, steps int, delta, epsilon float64, orders []float64, conv Conversion) (float64, error) {
	if math.IsNaN(q) || q <= 0 || q > 1 {
		return 0, fmt.Errorf("sampling rate q=%v, want 0 < q <= 1: %w", q, ErrInvalidArgument)
	}
	if steps < 1 {
		return 0, fmt.Errorf("steps=%d, want >= 1: %w", steps, ErrInvalidArgument)
	}
	if math.IsNaN(epsilon) || math.IsInf(epsilon, 0) || epsilon <= 0 {
		return 0, fmt.Errorf("target epsilon=%v, want finite and > 0: %w", epsilon, ErrInvalidArgument)
	}
	if math.IsNaN(delta) || delta <= 0 || delta >= 1 {
		return 0, fmt.Errorf("delta=%v, want 0 < delta < 1: %w", delta, ErrInvalidArgument)
	}
	if orders == nil {
		orders = DefaultOrders()
	}
	if err := validateOrders(orders); err != nil {
		return 0, err
	}
	if conv == PLD {
		return sigmaForPLD(q, steps, delta, epsilon, orders)
	}
	meets := func(sigma float64) (bool, error) {
		eps, _, err := Epsilon(q, sigma, steps, delta, orders, conv)
		if err != nil {
			return false, fmt.Errorf("epsilon at sigma=%v: %w", sigma, err)
		}
		return eps <= epsilon, nil
	}
	sigma, err := bisectSigma(meets)
	if errors.Is(err, ErrTargetUnreachable) {
		return 0, fmt.Errorf("epsilon %v at delta %v with q=%v over %d steps needs sigma > %v: %w",
			epsilon, delta, q, steps, MaxSigma, ErrTargetUnreachable)
	}
	return sigma, err
}

// bisectSigma returns the smallest sigma (to relative tolerance SigmaTolerance, erring high)
// that meets a target which, once met, stays met for every larger sigma. sigma = 0 never meets
// a finite target with q > 0 (its RDP is infinite), so the search starts there.
func bisectSigma(meets func(sigma float64) (bool, error)) (float64, error) {
	lo, hi := 0.0, 1.0
	for {
		ok, err := meets(hi)
		if err != nil {
			return 0, err
		}
		if ok {
			break
		}
		lo = hi
		hi *= 2
		if hi > MaxSigma {
			return 0, fmt.Errorf("no sigma up to %v: %w", MaxSigma, ErrTargetUnreachable)
		}
	}
	for hi-lo > SigmaTolerance*hi {
		mid := lo + (hi-lo)/2
		ok, err := meets(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}
