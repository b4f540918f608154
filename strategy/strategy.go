// Package strategy turns the summed client updates of a round into the next global model. It is
// shared by the coordinator and the simulator, so both apply the very same server step.
//
// Everything clients send is a sum: the coordinator learns sum_i n_i*delta_i and sum_i n_i, where
// delta_i = local_i - global. MeanUpdate divides the two; a Strategy folds that mean update into
// the global weights with a server optimiser: FedAvg and FedProx (x + eta*Delta), or FedAdam,
// FedYogi and FedAdagrad as in Algorithm 2 of Reddi et al., "Adaptive Federated Optimization"
// (ICLR 2021). The optimiser's State is returned, never kept, so that the coordinator persists it
// with every committed model version and a restarted coordinator continues exactly.
package strategy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/floats"

	"github.com/fedprop/fedprop/model/logreg"
)

// Strategy names accepted by Config.Name.
const (
	FedAvg     = "fedavg"
	FedProx    = "fedprox"
	FedAdam    = "fedadam"
	FedYogi    = "fedyogi"
	FedAdagrad = "fedadagrad"
)

// Names returns the valid strategy names.
func Names() []string { return []string{FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad} }

// Defaults applied by Config.WithDefaults.
const (
	// DefaultServerLearningRate is eta for FedAvg and FedProx: 1 makes the new global model the
	// sample-weighted mean of the local models (McMahan et al.).
	DefaultServerLearningRate = 1.0
	// DefaultAdaptiveServerLearningRate is eta for FedAdam, FedYogi and FedAdagrad. Their step
	// is about eta per coordinate whatever the update's scale (m/sqrt(v) is of order 1), so eta
	// bounds how far one round moves a weight; Reddi et al. tune it on a grid, and 0.01 is a
	// cautious start for standardised logistic-regression inputs.
	DefaultAdaptiveServerLearningRate = 0.01
	DefaultBeta1                      = 0.9  // Reddi et al. 2021
	DefaultBeta2                      = 0.99 // Reddi et al. 2021
	DefaultTau                        = 1e-3 // adaptivity: the floor of the per-coordinate denominator
	DefaultProxMu                     = 0.01 // FedProx proximal coefficient (Li et al. 2020 use 0.001 to 1)
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrUnknownStrategy marks a Config.Name that is not one of Names().
	ErrUnknownStrategy = errors.New("unknown strategy")
	// ErrInvalidConfig marks an out-of-range or misplaced setting.
	ErrInvalidConfig = errors.New("invalid strategy config")
	// ErrDimension marks weights, update and state of different lengths.
	ErrDimension = errors.New("dimension mismatch")
	// ErrNonFinite marks a NaN or infinite value in an update, or a non-positive sample count.
	ErrNonFinite = errors.New("non-finite update")
)

// Config selects and tunes a server strategy. Zero fields take defaults (WithDefaults), which
// means a zero Beta1 (no momentum) cannot be expressed; no published setting needs it.
type Config struct {
	// Name is one of Names(); empty means "fedavg". Case and surrounding space are ignored.
	Name string `yaml:"name" json:"name"`
	// ServerLearningRate is eta: default 1.0 for fedavg/fedprox, 0.01 for the adaptive ones.
	ServerLearningRate float64 `yaml:"server_learning_rate" json:"server_learning_rate"`
	// Beta1 and Beta2 are the moment decay rates of the adaptive strategies (fedadagrad uses
	// only Beta1); defaults 0.9 and 0.99.
	Beta1 float64 `yaml:"beta1" json:"beta1"`
	Beta2 float64 `yaml:"beta2" json:"beta2"`
	// Tau is the adaptivity of the adaptive strategies; default 1e-3.
	Tau float64 `yaml:"tau" json:"tau"`
	// ProxMu is the FedProx proximal coefficient sent to clients; fedprox only, default 0.01.
	ProxMu float64 `yaml:"prox_mu" json:"prox_mu"`
}

// WithDefaults returns c with its name normalised and every zero setting the named strategy uses
// replaced by its default. Settings the strategy does not use are left alone, so that Validate
// can reject them instead of silently ignoring them.
func (c Config) WithDefaults() Config {
	c.Name = strings.ToLower(strings.TrimSpace(c.Name))
	if c.Name == "" {
		c.Name = FedAvg
	}
	switch c.Name {
	case FedAvg, FedProx:
		if c.ServerLearningRate == 0 {
			c.ServerLearningRate = DefaultServerLearningRate
		}
		if c.Name == FedProx && c.ProxMu == 0 {
			c.ProxMu = DefaultProxMu
		}
	case FedAdam, FedYogi, FedAdagrad:
		if c.ServerLearningRate == 0 {
			c.ServerLearningRate = DefaultAdaptiveServerLearningRate
		}
		if c.Beta1 == 0 {
			c.Beta1 = DefaultBeta1
		}
		if c.Beta2 == 0 && c.Name != FedAdagrad {
			c.Beta2 = DefaultBeta2
		}
		if c.Tau == 0 {
			c.Tau = DefaultTau
		}
	}
	return c
}

// Validate reports whether c, as given (call WithDefaults first), names a known strategy with
// settings in range, and no setting the strategy would ignore.
func (c Config) Validate() error {
	if !slices.Contains(Names(), c.Name) {
		return fmt.Errorf("%w %q: valid names are %s", ErrUnknownStrategy, c.Name, strings.Join(Names(), ", "))
	}
	if !positiveFinite(c.ServerLearningRate) {
		return fmt.Errorf("%w: %s server learning rate %v is not a positive finite number", ErrInvalidConfig, c.Name, c.ServerLearningRate)
	}
	adaptive := c.Name == FedAdam || c.Name == FedYogi || c.Name == FedAdagrad
	if adaptive {
		if !(c.Beta1 >= 0 && c.Beta1 < 1) {
			return fmt.Errorf("%w: %s beta1 %v is not in [0, 1)", ErrInvalidConfig, c.Name, c.Beta1)
		}
		if c.Name != FedAdagrad && !(c.Beta2 >= 0 && c.Beta2 < 1) {
			return fmt.Errorf("%w: %s beta2 %v is not in [0, 1)", ErrInvalidConfig, c.Name, c.Beta2)
		}
		if !positiveFinite(c.Tau) {
			return fmt.Errorf("%w: %s tau %v is not a positive finite number", ErrInvalidConfig, c.Name, c.Tau)
		}
	}
	if c.Name == FedProx && (!(c.ProxMu >= 0) || math.IsInf(c.ProxMu, 0)) {
		return fmt.Errorf("%w: fedprox mu %v is not a non-negative finite number", ErrInvalidConfig, c.ProxMu)
	}
	unused := func(setting string, v float64) error {
		return fmt.Errorf("%w: %s does not use %s (set to %v)", ErrInvalidConfig, c.Name, setting, v)
	}
	switch {
	case c.Name != FedProx && c.ProxMu != 0:
		return unused("prox mu", c.ProxMu)
	case !adaptive && c.Beta1 != 0:
		return unused("beta1", c.Beta1)
	case (!adaptive || c.Name == FedAdagrad) && c.Beta2 != 0:
		return unused("beta2", c.Beta2)
	case !adaptive && c.Tau != 0:
		return unused("tau", c.Tau)
	}
	return nil
}

// State is the server optimiser's state; it is persisted with every committed model version so a
// restarted coordinator continues exactly. M and V are the first and second moment estimates of
// the adaptive strategies (nil before their first step and for FedAvg/FedProx); Steps counts the
// updates applied.
type State struct {
	M     []float64 `json:"m,omitempty"`
	V     []float64 `json:"v,omitempty"`
	Steps int       `json:"steps"`
}

// Strategy is a server strategy. Implementations are stateless values (all state is in State),
// safe for concurrent use.
type Strategy interface {
	// Name returns the strategy's name, one of Names().
	Name() string
	// ClientParams adjusts the local training parameters (FedProx sets ProxMu).
	ClientParams(p logreg.Params) logreg.Params
	// Apply folds the mean client update (sum n_i*delta_i / sum n_i) into the global weights and
	// returns the next global weights and state. It does not modify its arguments.
	Apply(global, meanUpdate []float64, state State) ([]float64, State, error)
}

// New returns the strategy c describes, after WithDefaults and Validate.
func New(c Config) (Strategy, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("new strategy: %w", err)
	}
	switch c.Name {
	case FedAvg, FedProx:
		return averaging{cfg: c}, nil
	default:
		return adaptive{cfg: c}, nil
	}
}

// MeanUpdate returns sum_i n_i*delta_i / sum_i n_i, the mean client update Apply takes, from the
// two sums the coordinator aggregates. It rejects a non-positive or non-finite count and
// non-finite sums.
func MeanUpdate(weightedSum []float64, totalWeight float64) ([]float64, error) {
	if !positiveFinite(totalWeight) {
		return nil, fmt.Errorf("mean update: %w: total sample weight %v", ErrNonFinite, totalWeight)
	}
	if err := checkFinite("weighted update sum", weightedSum); err != nil {
		return nil, fmt.Errorf("mean update: %w", err)
	}
	mean := make([]float64, len(weightedSum))
	for i, x := range weightedSum {
		mean[i] = x / totalWeight // divided, not scaled by 1/total: exact to the last bit
	}
	return mean, nil
}

// averaging is FedAvg and FedProx: x + eta*Delta. They differ only in the clients' objective.
type averaging struct{ cfg Config }

func (a averaging) Name() string { return a.cfg.Name }

func (a averaging) ClientParams(p logreg.Params) logreg.Params {
	if a.cfg.Name == FedProx {
		p.ProxMu = a.cfg.ProxMu
	}
	return p
}

func (a averaging) Apply(global, meanUpdate []float64, state State) ([]float64, State, error) {
	if err := checkInputs(global, meanUpdate); err != nil {
		return nil, State{}, fmt.Errorf("%s apply: %w", a.cfg.Name, err)
	}
	next := slices.Clone(global)
	floats.AddScaled(next, a.cfg.ServerLearningRate, meanUpdate)
	if err := checkFinite("next global weights", next); err != nil {
		return nil, State{}, fmt.Errorf("%s apply: %w", a.cfg.Name, err)
	}
	return next, State{Steps: state.Steps + 1}, nil
}

// adaptive is FedAdagrad, FedAdam and FedYogi (Reddi et al. 2021, Algorithm 2). As in the paper
// there is no bias correction, and v starts at tau^2 (the paper requires v_{-1} >= tau^2), so
// the first step is eta*(1-b1)*Delta/(sqrt(v)+tau) with v mixing tau^2 and Delta^2.
type adaptive struct{ cfg Config }

func (a adaptive) Name() string { return a.cfg.Name }

func (a adaptive) ClientParams(p logreg.Params) logreg.Params { return p }

func (a adaptive) Apply(global, meanUpdate []float64, state State) ([]float64, State, error) {
	if err := checkInputs(global, meanUpdate); err != nil {
		return nil, State{}, fmt.Errorf("%s apply: %w", a.cfg.Name, err)
	}
	dim := len(global)
	m, v := slices.Clone(state.M), slices.Clone(state.V)
	if m == nil && v == nil {
		m, v = make([]float64, dim), make([]float64, dim)
		for j := range v {
			v[j] = a.cfg.Tau * a.cfg.Tau
		}
	}
	if len(m) != dim || len(v) != dim {
		return nil, State{}, fmt.Errorf("%s apply: %w: state moments of lengths %d and %d for %d weights", a.cfg.Name, ErrDimension, len(m), len(v), dim)
	}
	b1, b2, eta, tau := a.cfg.Beta1, a.cfg.Beta2, a.cfg.ServerLearningRate, a.cfg.Tau
	next := slices.Clone(global)
	for j, delta := range meanUpdate {
		m[j] = b1*m[j] + (1-b1)*delta
		d2 := delta * delta
		switch a.cfg.Name {
		case FedAdagrad:
			v[j] += d2
		case FedAdam:
			v[j] = b2*v[j] + (1-b2)*d2
		case FedYogi:
			v[j] -= (1 - b2) * d2 * sign(v[j]-d2)
		}
		next[j] += eta * m[j] / (math.Sqrt(v[j]) + tau)
	}
	if err := checkFinite("next global weights", next); err != nil {
		return nil, State{}, fmt.Errorf("%s apply: %w", a.cfg.Name, err)
	}
	return next, State{M: m, V: v, Steps: state.Steps + 1}, nil
}

func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

func positiveFinite(x float64) bool { return x > 0 && !math.IsInf(x, 0) }

func checkInputs(global, meanUpdate []float64) error {
	if len(global) != len(meanUpdate) {
		return fmt.Errorf("%w: %d weights, %d update values", ErrDimension, len(global), len(meanUpdate))
	}
	if err := checkFinite("global weights", global); err != nil {
		return err
	}
	return checkFinite("mean update", meanUpdate)
}

func checkFinite(what string, v []float64) error {
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: %s value %d is %v", ErrNonFinite, what, i, x)
		}
	}
	return nil
}
