package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fedprop/fedprop/task"
)

// FailureConfig is how simulated clients fail, as researchers model it.
type FailureConfig struct {
	// Dropout is the probability that a client drops a task: it never answers.
	Dropout float64 `yaml:"dropout" json:"dropout,omitempty"`
	// Straggler draws each answer's latency, in ticks, from a lognormal distribution with
	// this median and shape; answers later than the round deadline are refused.
	Straggler StragglerConfig `yaml:"straggler" json:"straggler,omitempty"`
	// JoinLate clients register only when the run reaches Round.
	JoinLate Cohort `yaml:"join_late" json:"join_late,omitempty"`
	// Leave clients stop answering for good after Round.
	Leave Cohort `yaml:"leave" json:"leave,omitempty"`
	// DeadlineTicks is the round deadline in simulated ticks (default 2: without stragglers
	// every answer arrives within the tick it was asked).
	DeadlineTicks int `yaml:"deadline_ticks" json:"deadline_ticks,omitempty"`
}

// StragglerConfig is a lognormal answer latency in ticks.
type StragglerConfig struct {
	MedianTicks float64 `yaml:"median_ticks" json:"median_ticks,omitempty"`
	Sigma       float64 `yaml:"sigma" json:"sigma,omitempty"`
}

// Cohort is a fraction of the clients and the round at which something happens to them.
type Cohort struct {
	Fraction float64 `yaml:"fraction" json:"fraction,omitempty"`
	Round    int     `yaml:"round" json:"round,omitempty"`
}

func (c FailureConfig) validate() error {
	var errs []error
	if c.Dropout < 0 || c.Dropout >= 1 {
		errs = append(errs, fmt.Errorf("failures.dropout: must be in [0, 1), got %v", c.Dropout))
	}
	if c.Straggler.MedianTicks < 0 || c.Straggler.Sigma < 0 {
		errs = append(errs, errors.New("failures.straggler: median_ticks and sigma must not be negative"))
	}
	for key, co := range map[string]Cohort{"join_late": c.JoinLate, "leave": c.Leave} {
		if co.Fraction < 0 || co.Fraction > 1 || co.Round < 0 {
			errs = append(errs, fmt.Errorf("failures.%s: fraction must be in [0, 1] and round not negative", key))
		}
	}
	if c.DeadlineTicks < 0 {
		errs = append(errs, fmt.Errorf("failures.deadline_ticks: must not be negative, got %d", c.DeadlineTicks))
	}
	return errors.Join(errs...)
}

// failureModel decides every failure from seeds, so a run repeats exactly.
type failureModel struct {
	cfg       FailureConfig
	seed      uint64
	lateJoin  []bool
	leaves    []bool
	reliable  []bool // branch clients of a cross-device federation: they never fail
	straggler bool
}

// newFailureModel draws who joins late and who leaves; reliable[i] exempts client i from
// every failure.
func newFailureModel(cfg Config, reliable []bool) *failureModel {
	n := len(reliable)
	f := &failureModel{cfg: cfg.Failures, seed: cfg.Seed, lateJoin: make([]bool, n), leaves: make([]bool, n), reliable: reliable,
		straggler: cfg.Failures.Straggler.MedianTicks > 0}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xfa11))
	for i := range n {
		late, leaves := rng.Float64() < cfg.Failures.JoinLate.Fraction, rng.Float64() < cfg.Failures.Leave.Fraction
		f.lateJoin[i], f.leaves[i] = late && !reliable[i], leaves && !reliable[i]
	}
	return f
}

// joins reports whether client i has joined by round.
func (f *failureModel) joins(i, round int) bool {
	return !f.lateJoin[i] || round >= f.cfg.JoinLate.Round
}

// gone reports whether client i has left for good by round.
func (f *failureModel) gone(i, round int) bool { return f.leaves[i] && round > f.cfg.Leave.Round }

type fate struct {
	drop  bool
	delay int64
}

// fate decides what happens to client i's answer to t.
func (f *failureModel) fate(i int, t task.Task) fate {
	if f.cfg.Dropout == 0 && !f.straggler || f.reliable[i] {
		return fate{}
	}
	seed := t.Seed
	if g := t.GBDT; g != nil && len(g.Levels) > 0 {
		// A tree's later levels are tasks of their own: a client may answer one level and
		// miss the next.
		seed ^= uint64(len(g.Levels)) * 0x9e3779b97f4a7c15
	}
	rng := rand.New(rand.NewPCG(f.seed^seed, uint64(i)))
	if rng.Float64() < f.cfg.Dropout {
		return fate{drop: true}
	}
	if !f.straggler {
		return fate{}
	}
	latency := f.cfg.Straggler.MedianTicks * math.Exp(f.cfg.Straggler.Sigma*rng.NormFloat64())
	return fate{delay: int64(math.Round(latency))}
}
