package coordinator

import (
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"

	"github.com/fedprop/fedprop/modelfile"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/task"
)

// PrivacyConfig is a run's differential privacy.
type PrivacyConfig struct {
	// Mechanism is "none", "client" (DP-FedAvg: each client's update clipped to ClipNorm,
	// Gaussian noise on the sum, clients sampled by Poisson with SamplingRate) or "record"
	// (DP-SGD at every client: per-example clipping and noise in local training).
	Mechanism string `yaml:"mechanism" json:"mechanism"`
	// Epsilon and Delta are the run's budget: no round starts that would exceed it. Epsilon 0
	// means no budget (NoiseMultiplier is then required).
	Epsilon float64 `yaml:"epsilon" json:"epsilon"`
	Delta   float64 `yaml:"delta" json:"delta"`
	// NoiseMultiplier is z; 0 with an epsilon means the smallest z that fits every configured
	// round into the budget.
	NoiseMultiplier float64 `yaml:"noise_multiplier" json:"noise_multiplier"`
	// ClipNorm is C: the L2 bound of a client's update (client) or of a per-example gradient
	// (record); with adaptive clipping, its starting value.
	ClipNorm float64 `yaml:"clip_norm" json:"clip_norm"`
	// SamplingRate is q: per round, the Poisson rate of client sampling (client); per step,
	// the Poisson rate of record sampling (record).
	SamplingRate float64 `yaml:"sampling_rate" json:"sampling_rate"`
	// StepsPerRound is the number of DP-SGD steps of a client per round (record).
	StepsPerRound int `yaml:"steps_per_round" json:"steps_per_round,omitempty"`
	// AdaptiveClipping follows Andrew et al. 2021: the norm tracks the TargetQuantile of the
	// update norms, moving by ClipLearningRate (client).
	AdaptiveClipping bool    `yaml:"adaptive_clipping" json:"adaptive_clipping,omitempty"`
	TargetQuantile   float64 `yaml:"target_quantile" json:"target_quantile,omitempty"`
	ClipLearningRate float64 `yaml:"clip_learning_rate" json:"clip_learning_rate,omitempty"`
	// Conversion from RDP to (epsilon, delta): "tight" (Balle et al. 2020) or "classic".
	Conversion string `yaml:"conversion" json:"conversion"`
}

// Privacy mechanisms of PrivacyConfig.Mechanism.
const (
	DPNone   = "none"
	DPClient = task.DPClient
	DPRecord = task.DPRecord
)

func (c PrivacyConfig) withDefaults() PrivacyConfig {
	if c.Mechanism == "" {
		c.Mechanism = DPNone
	}
	if c.Mechanism == DPNone {
		return c
	}
	if c.Delta == 0 {
		c.Delta = 1e-5
	}
	if c.ClipNorm == 0 {
		c.ClipNorm = 1
	}
	if c.Conversion == "" {
		c.Conversion = "tight"
	}
	if c.Mechanism == DPClient && c.SamplingRate == 0 {
		c.SamplingRate = 1
	}
	if c.Mechanism == DPRecord && c.StepsPerRound == 0 {
		c.StepsPerRound = 100
	}
	if c.AdaptiveClipping {
		if c.TargetQuantile == 0 {
			c.TargetQuantile = 0.5
		}
		if c.ClipLearningRate == 0 {
			c.ClipLearningRate = 0.2
		}
	}
	return c
}

func (c PrivacyConfig) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("run.privacy.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch c.Mechanism {
	case DPNone:
		return nil
	case DPClient, DPRecord:
	default:
		return []error{fmt.Errorf("run.privacy.mechanism: %q is not none, client or record", c.Mechanism)}
	}
	if c.Epsilon < 0 || math.IsNaN(c.Epsilon) {
		bad("epsilon", "must not be negative, got %v", c.Epsilon)
	}
	if c.Delta <= 0 || c.Delta >= 1 {
		bad("delta", "must be in (0, 1), got %v", c.Delta)
	}
	if c.NoiseMultiplier < 0 {
		bad("noise_multiplier", "must not be negative, got %v", c.NoiseMultiplier)
	}
	if c.Epsilon == 0 && c.NoiseMultiplier == 0 {
		bad("noise_multiplier", "set it, or an epsilon budget to derive it from")
	}
	if c.ClipNorm <= 0 {
		bad("clip_norm", "must be positive, got %v", c.ClipNorm)
	}
	if c.SamplingRate <= 0 || c.SamplingRate > 1 {
		bad("sampling_rate", "must be in (0, 1], got %v", c.SamplingRate)
	}
	if c.Mechanism == DPRecord && c.StepsPerRound < 1 {
		bad("steps_per_round", "must be at least 1, got %d", c.StepsPerRound)
	}
	if c.AdaptiveClipping && c.Mechanism != DPClient {
		bad("adaptive_clipping", "applies to client-level DP only")
	}
	if _, err := privacy.ParseConversion(c.Conversion); err != nil {
		bad("conversion", "%v", err)
	}
	return errs
}

// noiseMultiplier is the run's z: configured, or the smallest that fits every configured
// round into the budget.
func (c RunConfig) noiseMultiplier() (float64, error) {
	pc := c.Privacy
	if pc.NoiseMultiplier > 0 {
		return pc.NoiseMultiplier, nil
	}
	conv, err := privacy.ParseConversion(pc.Conversion)
	if err != nil {
		return 0, err
	}
	steps := c.Rounds
	if pc.Mechanism == DPRecord {
		steps *= pc.StepsPerRound
	}
	z, err := privacy.SigmaFor(pc.SamplingRate, steps, pc.Delta, pc.Epsilon, nil, conv)
	if err != nil {
		return 0, fmt.Errorf("run.privacy: noise for epsilon %v over %d steps: %w", pc.Epsilon, steps, err)
	}
	return z, nil
}

// checkAdaptiveNoise refuses, before any task, an adaptive-clipping run whose noise cannot be
// split between the update sum and the clipping count with as few contributors as the run may
// have (min_clients sampled at sampling_rate): such a round could only go out without noise.
func (c RunConfig) checkAdaptiveNoise() error {
	pc := c.Privacy
	if pc.Mechanism != DPClient || !pc.AdaptiveClipping {
		return nil
	}
	z, err := c.noiseMultiplier()
	if err != nil {
		return err
	}
	m, err := privacy.ExpectedContributors(pc.SamplingRate, c.MinClients)
	if err != nil {
		return fmt.Errorf("run.privacy.sampling_rate: %w", err)
	}
	sigmaB := privacy.AdaptiveClipConfig{}.WithDefaults(m).CountNoiseStd
	if _, err := privacy.SumNoiseMultiplier(z, sigmaB); err != nil {
		return fmt.Errorf("run.privacy.adaptive_clipping: with noise multiplier %.4g and as few as %d expected contributors (min_clients %d at sampling_rate %v), the clipping count's noise (sigma_b = %.4g) leaves no noise for the update sum (it needs z < m/10): raise min_clients or sampling_rate, lower the noise, or turn adaptive clipping off: %w",
			z, m, c.MinClients, pc.SamplingRate, sigmaB, err)
	}
	return nil
}

// PrivacyState is a run's privacy accounting, persisted with every committed version.
type PrivacyState struct {
	Mechanism       string  `json:"mechanism"`
	NoiseMultiplier float64 `json:"noise_multiplier"`
	// ClipNorm is the clipping norm of the next round (it moves under adaptive clipping);
	// ClipSchedule is the norm each committed round used.
	ClipNorm     float64   `json:"clip_norm"`
	ClipSchedule []float64 `json:"clip_schedule,omitempty"`
	SamplingRate float64   `json:"sampling_rate"`
	// Steps composed: rounds (client) or the worst client's DP-SGD steps (record).
	Steps int `json:"steps"`
	// Accountant composes the client-level rounds; record level accounts per client from
	// Participation.
	Accountant    *privacy.Accountant `json:"accountant,omitempty"`
	Participation map[string]int      `json:"participation,omitempty"`
	Epsilon       float64             `json:"epsilon"`
	Delta         float64             `json:"delta"`
	Conversion    string              `json:"conversion"`
}

// initPrivacy resolves the noise multiplier of a new run.
func (c *Core) initPrivacy() error {
	pc := c.cfg.Privacy
	if pc.Mechanism == DPNone {
		return nil
	}
	z, err := c.cfg.noiseMultiplier()
	if err != nil {
		return err
	}
	c.run.Privacy = &PrivacyState{Mechanism: pc.Mechanism, NoiseMultiplier: z, ClipNorm: pc.ClipNorm, SamplingRate: pc.SamplingRate,
		Accountant: privacy.NewAccountant(nil), Participation: map[string]int{}, Delta: pc.Delta, Conversion: pc.Conversion}
	return nil
}

// SetNoiseSource sets where the coordinator's Gaussian noise comes from. The default is seeded
// from crypto/rand; the simulator passes a seeded source so that runs repeat. A predictable
// source in production would let whoever knows it subtract the noise.
func (c *Core) SetNoiseSource(src rand.Source) { c.noise = rand.New(src) }

func cryptoSource() rand.Source {
	var seed [32]byte
	_, _ = cryptorand.Read(seed[:]) // crypto/rand.Read never fails on supported platforms
	return rand.NewChaCha8(seed)
}

func (c *Core) dp() string {
	if c.run.Privacy == nil {
		return DPNone
	}
	return c.run.Privacy.Mechanism
}

// expectedContributors is m: the number of clients a round expects, fixed before sampling.
func (c *Core) expectedContributors() int {
	m, err := privacy.ExpectedContributors(c.run.Privacy.SamplingRate, len(c.liveClients()))
	if err != nil {
		return 1
	}
	return m
}

// adaptiveNoise returns the noise multiplier of the sum and the noise std of the clipping
// count (zero without adaptive clipping), so that together they cost what z costs.
func (c *Core) adaptiveNoise(m int) (zSum, sigmaB float64, err error) {
	z := c.run.Privacy.NoiseMultiplier
	if !c.cfg.Privacy.AdaptiveClipping {
		return z, 0, nil
	}
	sigmaB = privacy.AdaptiveClipConfig{}.WithDefaults(m).CountNoiseStd
	zSum, err = privacy.SumNoiseMultiplier(z, sigmaB)
	return zSum, sigmaB, err
}

// dpSpec is the DP part of a train task. A task never leaves without its noise parameters: an
// error here stops the run before any task of the round is issued.
func (c *Core) dpSpec() (*task.DPSpec, error) {
	ps := c.run.Privacy
	switch ps.Mechanism {
	case DPRecord:
		return &task.DPSpec{Mechanism: DPRecord, ClipNorm: ps.ClipNorm, SamplingRate: ps.SamplingRate, Steps: c.cfg.Privacy.StepsPerRound,
			NoiseMultiplier: ps.NoiseMultiplier, Delta: ps.Delta}, nil
	case DPClient:
		spec := &task.DPSpec{Mechanism: DPClient, ClipNorm: ps.ClipNorm, Delta: ps.Delta}
		zSum, sigmaB, err := c.adaptiveNoise(c.expected)
		if err != nil {
			return nil, err
		}
		spec.NoiseMultiplier, spec.IndicatorNoiseStd = zSum, sigmaB
		if c.he() {
			// Each client adds its share of the noise, so the coordinator only ever decrypts a
			// noised sum.
			spec.ExpectedContributors = c.expected
		}
		return spec, nil
	}
	return nil, fmt.Errorf("unknown privacy mechanism %q", ps.Mechanism)
}

// budgetAllowsRound reports whether one more round fits the budget, and why not.
func (c *Core) budgetAllowsRound() (bool, string) {
	ps, pc := c.run.Privacy, c.cfg.Privacy
	if ps == nil || pc.Epsilon == 0 {
		return true, ""
	}
	conv, _ := privacy.ParseConversion(pc.Conversion)
	var eps float64
	switch ps.Mechanism {
	case DPClient:
		next := ps.Accountant.Clone()
		if err := next.Compose(ps.SamplingRate, ps.NoiseMultiplier, 1); err != nil {
			return false, err.Error()
		}
		var err error
		if eps, _, err = next.Epsilon(pc.Delta, conv); err != nil {
			return false, err.Error()
		}
	case DPRecord:
		worst := 0
		for _, n := range ps.Participation {
			worst = max(worst, n)
		}
		var err error
		eps, _, err = privacy.Epsilon(ps.SamplingRate, ps.NoiseMultiplier, (worst+1)*pc.StepsPerRound, pc.Delta, nil, conv)
		if err != nil {
			return false, err.Error()
		}
	}
	if eps > pc.Epsilon {
		return false, fmt.Sprintf("round %d would raise epsilon to %.4g, above the budget of %g at delta %g", c.round, eps, pc.Epsilon, pc.Delta)
	}
	return true, ""
}

// privatize turns a train sum into the mean update under the run's DP mechanism: it adds the
// coordinator's noise (plaintext client level), divides by the expected contributors, moves
// the adaptive clipping norm and composes the round into the accountant.
func (c *Core) privatize(sum []float64, contributors int, submitters []string) ([]float64, error) {
	ps, pc := c.run.Privacy, c.cfg.Privacy
	dim := len(c.global)
	delta := sum[task.TrainDeltaStart : task.TrainDeltaStart+dim]
	conv, _ := privacy.ParseConversion(pc.Conversion)
	ps.ClipSchedule = append(ps.ClipSchedule, ps.ClipNorm)
	mean := make([]float64, dim)
	switch ps.Mechanism {
	case DPRecord:
		// Each client's DP-SGD output counts once: weighting by record counts would release
		// them outside the DP-SGD guarantee.
		for i := range mean {
			mean[i] = delta[i] / float64(contributors)
		}
		for _, id := range submitters {
			ps.Participation[id]++
		}
		worst := 0
		for _, n := range ps.Participation {
			worst = max(worst, n)
		}
		ps.Steps = worst * pc.StepsPerRound
		eps, _, err := privacy.Epsilon(ps.SamplingRate, ps.NoiseMultiplier, ps.Steps, pc.Delta, nil, conv)
		if err != nil {
			return nil, err
		}
		ps.Epsilon = eps
		return mean, nil
	case DPClient:
		m := c.expected
		zSum, sigmaB, err := c.adaptiveNoise(m)
		if err != nil {
			return nil, err
		}
		indicator := sum[len(sum)-1]
		achieved := ps.NoiseMultiplier
		if c.he() {
			if achieved, err = privacy.AchievedNoiseMultiplier(ps.NoiseMultiplier, m, contributors); err != nil {
				return nil, err
			}
			if contributors < m {
				c.note(slog.LevelWarn, "fewer contributors than expected: the noise present was lower; accounting with it",
					slog.Int("round", c.round), slog.Int("expected", m), slog.Int("arrived", contributors),
					slog.Float64("planned_z", ps.NoiseMultiplier), slog.Float64("achieved_z", achieved))
			}
		} else {
			noised := append([]float64(nil), delta...)
			if err := privacy.AddGaussianNoise(noised, zSum*ps.ClipNorm, c.noise); err != nil {
				return nil, err
			}
			delta = noised
			if sigmaB > 0 {
				indicator += c.noise.NormFloat64() * sigmaB
			}
		}
		for i := range mean {
			mean[i] = delta[i] / float64(m)
		}
		if pc.AdaptiveClipping {
			next, err := privacy.NextClipNorm(ps.ClipNorm, indicator, m, pc.TargetQuantile, pc.ClipLearningRate)
			if err != nil {
				return nil, err
			}
			ps.ClipNorm = next
		}
		if achieved > 0 {
			if err := ps.Accountant.Compose(ps.SamplingRate, achieved, 1); err != nil {
				return nil, err
			}
		} else {
			return nil, errors.New("no noise was present in this round: it cannot be accounted")
		}
		ps.Steps++
		eps, _, err := ps.Accountant.Epsilon(pc.Delta, conv)
		if err != nil {
			return nil, err
		}
		ps.Epsilon = eps
		return mean, nil
	}
	return nil, fmt.Errorf("unknown privacy mechanism %q", ps.Mechanism)
}

// PrivacyReport is the guarantee of a committed version, as the model document and the model
// card state it.
type PrivacyReport = modelfile.Privacy

func (c *Core) privacyReport() *PrivacyReport {
	ps := c.run.Privacy
	if ps == nil {
		return nil
	}
	return &PrivacyReport{Mechanism: ps.Mechanism, NoiseMultiplier: ps.NoiseMultiplier, ClipNorm: ps.ClipSchedule[len(ps.ClipSchedule)-1],
		ClipSchedule: append([]float64(nil), ps.ClipSchedule...), AdaptiveClip: c.cfg.Privacy.AdaptiveClipping, SamplingRate: ps.SamplingRate,
		Steps: ps.Steps, Epsilon: ps.Epsilon, Delta: ps.Delta, Conversion: ps.Conversion, Budget: c.cfg.Privacy.Epsilon}
}
