package privacy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Levels a Floor can require, weakest first: any differential privacy, record level (DP-SGD;
// client level also satisfies it, since bounding a whole client's influence bounds each of
// its records'), client level (DP-FedAvg: a client's whole data set is protected).
const (
	RequireNone   = ""
	RequireRecord = "record"
	RequireClient = "client"
)

// DefaultMaxExpectedContributors is the largest m a client divides its share of the round's
// noise by, unless its floor says otherwise: a coordinator that claims m = 10^6 contributors
// cannot shrink a client's noise share below z*C/sqrt(1000).
const DefaultMaxExpectedContributors = 1000

// ErrBelowFloor is wrapped by every refusal of a release weaker than the party's own floor.
var ErrBelowFloor = errors.New("below this party's privacy floor")

// Floor is the weakest differential privacy a party accepts for what it releases: a client's
// own setting, never the coordinator's, checked against every task before anything is
// computed. The zero value accepts everything (a research setting); WithDefaults fills the
// contributor cap.
type Floor struct {
	// Require is RequireNone, RequireRecord or RequireClient.
	Require string `yaml:"require" json:"require,omitempty"`
	// MinNoiseMultiplier is the smallest z accepted (0: any positive z).
	MinNoiseMultiplier float64 `yaml:"min_noise_multiplier" json:"min_noise_multiplier,omitempty"`
	// MaxClipNorm is the largest clipping norm accepted (0: any).
	MaxClipNorm float64 `yaml:"max_clip_norm" json:"max_clip_norm,omitempty"`
	// MaxEpsilon is the most this party spends over everything it releases, at Delta (0: no
	// limit of its own).
	MaxEpsilon float64 `yaml:"max_epsilon" json:"max_epsilon,omitempty"`
	// Delta is the delta MaxEpsilon is measured at (default 1e-5).
	Delta float64 `yaml:"delta" json:"delta,omitempty"`
	// MaxExpectedContributors caps the m a client divides its noise share by
	// (default DefaultMaxExpectedContributors).
	MaxExpectedContributors int `yaml:"max_expected_contributors" json:"max_expected_contributors,omitempty"`
	// MinRecordsPlaintext is the fewest records a client must hold to answer a task without
	// secure aggregation: a small client's plaintext sums are close to its customers' records.
	// Unset means DefaultMinRecordsPlaintext; 0 is the research opt-out.
	MinRecordsPlaintext *int `yaml:"min_records_plaintext" json:"min_records_plaintext,omitempty"`
}

// DefaultMinRecordsPlaintext is Floor.MinRecordsPlaintext when unset.
const DefaultMinRecordsPlaintext = 100

// MinRecords is the effective MinRecordsPlaintext.
func (f Floor) MinRecords() int {
	if f.MinRecordsPlaintext == nil {
		return DefaultMinRecordsPlaintext
	}
	return *f.MinRecordsPlaintext
}

// WithDefaults returns f with its unset defaults filled.
func (f Floor) WithDefaults() Floor {
	if f.Delta == 0 {
		f.Delta = 1e-5
	}
	if f.MaxExpectedContributors == 0 {
		f.MaxExpectedContributors = DefaultMaxExpectedContributors
	}
	return f
}

// Validate names the first setting that cannot work, by its key under prefix (for example
// "privacy.").
func (f Floor) Validate(prefix string) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}
	switch f.Require {
	case RequireNone, RequireRecord, RequireClient:
	default:
		bad("require", "%q is not none, record or client", f.Require)
	}
	finiteNonNeg := func(key string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			bad(key, "must be a finite number >= 0, got %v", v)
		}
	}
	finiteNonNeg("min_noise_multiplier", f.MinNoiseMultiplier)
	finiteNonNeg("max_clip_norm", f.MaxClipNorm)
	finiteNonNeg("max_epsilon", f.MaxEpsilon)
	if math.IsNaN(f.Delta) || f.Delta < 0 || f.Delta >= 1 {
		bad("delta", "must be in (0, 1), got %v", f.Delta)
	}
	if f.MinRecordsPlaintext != nil && *f.MinRecordsPlaintext < 0 {
		bad("min_records_plaintext", "must be at least 0 (0 opts out), got %d", *f.MinRecordsPlaintext)
	}
	if f.MaxExpectedContributors < 0 {
		bad("max_expected_contributors", "must be at least 1, got %d", f.MaxExpectedContributors)
	}
	return errors.Join(errs...)
}

// Enforced reports whether the floor requires differential privacy at all.
func (f Floor) Enforced() bool { return f.Require != RequireNone }

// Accepts checks one Gaussian mechanism's parameters against the floor: mechanism is
// RequireRecord or RequireClient (the level the release protects), z its noise multiplier and
// clip its sensitivity bound (0 when the release is scaled to sensitivity 1).
func (f Floor) Accepts(mechanism string, z, clip float64) error {
	if math.IsNaN(z) || math.IsInf(z, 0) || z < 0 {
		return fmt.Errorf("%w: noise multiplier %v is not a finite number >= 0", ErrBelowFloor, z)
	}
	if math.IsNaN(clip) || math.IsInf(clip, 0) || clip < 0 {
		return fmt.Errorf("%w: clipping norm %v is not a finite number >= 0", ErrBelowFloor, clip)
	}
	if !f.Enforced() {
		return nil
	}
	if f.Require == RequireClient && mechanism != RequireClient {
		return fmt.Errorf("%w: the task asks for %s-level differential privacy and this client requires client level", ErrBelowFloor, orNone(mechanism))
	}
	if mechanism != RequireClient && mechanism != RequireRecord {
		return fmt.Errorf("%w: the task asks for no differential privacy and this client requires %s level", ErrBelowFloor, f.Require)
	}
	if z <= 0 || z < f.MinNoiseMultiplier {
		return fmt.Errorf("%w: noise multiplier %v is below min_noise_multiplier %v", ErrBelowFloor, z, f.MinNoiseMultiplier)
	}
	if f.MaxClipNorm > 0 && clip > f.MaxClipNorm {
		return fmt.Errorf("%w: clipping norm %v is above max_clip_norm %v", ErrBelowFloor, clip, f.MaxClipNorm)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no"
	}
	return s
}

// CapContributors returns the m a client divides its noise share by: the task's m, at most
// the floor's MaxExpectedContributors. It refuses m < 1.
func (f Floor) CapContributors(m int) (int, error) {
	if m < 1 {
		return 0, fmt.Errorf("%w: expected contributors %d, want at least 1", ErrBelowFloor, m)
	}
	limit := f.MaxExpectedContributors
	if limit <= 0 {
		limit = DefaultMaxExpectedContributors
	}
	return min(m, limit), nil
}

// Ledger is one party's own accounting of everything it released: every Gaussian mechanism it
// applied, in one accountant, so that changing z from one task to the next cannot
// under-report. Its epsilon is the default conversion's (PLD, with Renyi DP as the ceiling);
// it refuses a release that would take it past its floor's MaxEpsilon.
type Ledger struct {
	floor Floor
	acc   *Accountant
	// Releases counts the mechanisms composed.
	Releases int
}

// NewLedger starts an empty ledger under floor.
func NewLedger(floor Floor) *Ledger {
	return &Ledger{floor: floor.WithDefaults(), acc: NewAccountant(nil)}
}

// Admit composes one release of steps Poisson-subsampled Gaussian steps (q, z) if it keeps the
// ledger within MaxEpsilon, and returns the epsilon reached at the floor's delta; without a
// MaxEpsilon it composes without converting and returns 0 (Epsilon says it on demand): a
// conversion costs a PLD composition, and a simulator holds 100,000 ledgers. Nothing is
// composed when it returns an error.
func (l *Ledger) Admit(q, z float64, steps int) (float64, error) {
	next := l.acc.Clone()
	if err := next.Compose(q, z, steps); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBelowFloor, err)
	}
	eps := 0.0
	if l.floor.MaxEpsilon > 0 {
		var err error
		if eps, _, err = next.Epsilon(l.floor.Delta, PLD); err != nil {
			return 0, err
		}
		if eps > l.floor.MaxEpsilon {
			return eps, fmt.Errorf("%w: this release would take the epsilon spent to %.4g, above max_epsilon %v at delta %g",
				ErrBelowFloor, eps, l.floor.MaxEpsilon, l.floor.Delta)
		}
	}
	l.acc = next
	l.Releases++
	return eps, nil
}

// ledgerState is a Ledger's persistent form.
type ledgerState struct {
	Accountant *Accountant `json:"accountant"`
	Releases   int         `json:"releases"`
}

// MarshalJSON writes what the ledger has composed (not the floor, which is configuration).
func (l *Ledger) MarshalJSON() ([]byte, error) {
	return json.Marshal(ledgerState{Accountant: l.acc, Releases: l.Releases})
}

// Restore replaces the ledger's composition by one MarshalJSON wrote, keeping its floor.
func (l *Ledger) Restore(b []byte) error {
	var st ledgerState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("privacy ledger: %w", err)
	}
	if st.Accountant == nil || st.Releases < 0 {
		return fmt.Errorf("privacy ledger: %w: no accountant", ErrInvalidArgument)
	}
	if err := st.Accountant.check(); err != nil {
		return fmt.Errorf("privacy ledger: %w", err)
	}
	l.acc, l.Releases = st.Accountant, st.Releases
	return nil
}

// Clone returns an independent copy, to try a release before committing to it.
func (l *Ledger) Clone() *Ledger {
	c := *l
	c.acc = l.acc.Clone()
	return &c
}

// Epsilon is what the ledger has spent so far at the floor's delta (0 before any release).
func (l *Ledger) Epsilon() float64 {
	if l.Releases == 0 {
		return 0
	}
	eps, _, err := l.acc.Epsilon(l.floor.Delta, PLD)
	if err != nil {
		return math.Inf(1)
	}
	return eps
}

// Delta is the delta Epsilon is measured at.
func (l *Ledger) Delta() float64 { return l.floor.Delta }
