package coordinator

import (
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/release/modelfile"
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
	// Records is, at record level with sampling_rate unset, the number of training records over
	// all clients the run plans DP-SGD for: a public figure the operator declares, as the
	// schema's bounds are, not a count taken from the clients (the simulator fills it from its
	// data). privacy.PlanDPSGD then derives sampling_rate, steps_per_round, the noise, the
	// learning rate (run.train.learning_rate is ignored) and ReferenceRecords from it, the
	// budget, min_clients, rounds and the schema.
	Records int `yaml:"records" json:"records,omitempty"`
	// Batch is the planned expected number of records in a step at a client of average size
	// (0: privacy.DefaultDPSGDBatch); a larger one spends the budget in fewer, larger steps
	// where the learning rate allows.
	Batch float64 `yaml:"batch" json:"batch,omitempty"`
	// ReferenceRecords is record-level DP-SGD's public step denominator (see
	// logreg.DPSGDParams.ReferenceRecords): set by the plan, or by hand with an explicit
	// sampling_rate; 0 makes each client divide by its own expected batch.
	ReferenceRecords int `yaml:"reference_records" json:"reference_records,omitempty"`
	// AdaptiveClipping follows Andrew et al. 2021: the norm tracks the TargetQuantile of the
	// update norms, moving by ClipLearningRate (client).
	AdaptiveClipping bool    `yaml:"adaptive_clipping" json:"adaptive_clipping,omitempty"`
	TargetQuantile   float64 `yaml:"target_quantile" json:"target_quantile,omitempty"`
	ClipLearningRate float64 `yaml:"clip_learning_rate" json:"clip_learning_rate,omitempty"`
	// Conversion is how the composition becomes (epsilon, delta): "pld" (privacy loss
	// distributions, the default, never above RDP's), or RDP converted by "tight" (Balle et
	// al. 2020) or "classic". The budget stop and the derived noise use it; a run keeps the
	// conversion it started with.
	Conversion string `yaml:"conversion" json:"conversion"`
	// EvaluationNoiseMultiplier is z of every federated evaluation release: Gaussian noise of
	// z times what one record (client level: one client) can add to each value. 0 derives it
	// from EvaluationShare.
	EvaluationNoiseMultiplier float64 `yaml:"evaluation_noise_multiplier" json:"evaluation_noise_multiplier,omitempty"`
	// EvaluationShare is the part of the run's epsilon planned for its evaluations (default
	// DefaultEvaluationShare): their noise is the smallest with which all of them together
	// spend no more than this share of the budget (of the training's planned epsilon divided
	// by 1-share, without a budget). A budget-derived training noise is then fitted to what
	// the evaluations leave, in the same accountant.
	EvaluationShare float64 `yaml:"evaluation_share" json:"evaluation_share,omitempty"`
}

// DefaultEvaluationShare is PrivacyConfig.EvaluationShare when unset. The evaluations of a run
// are known in advance (one every eval_every rounds and the last) and each reads every
// evaluation record once, so they are costly per release; a tenth of the budget keeps the
// training's noise within a few per cent of what it would be without them (composition
// adds less than the shares' sum), at the price of noisy federated evaluation figures, whose
// noise the model card states.
const DefaultEvaluationShare = 0.1

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
		c.Conversion = privacy.PLD.String()
	}
	if c.Mechanism == DPClient && c.SamplingRate == 0 {
		c.SamplingRate = 1
	}
	if c.Mechanism == DPRecord && c.StepsPerRound == 0 && !c.planned() {
		c.StepsPerRound = 100
	}
	if c.EvaluationShare == 0 && c.EvaluationNoiseMultiplier == 0 {
		c.EvaluationShare = DefaultEvaluationShare
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
	switch {
	case c.planned():
		errs = append(errs, c.validatePlanned()...)
	case c.SamplingRate <= 0 || c.SamplingRate > 1:
		bad("sampling_rate", "must be in (0, 1], got %v", c.SamplingRate)
	}
	if c.Mechanism == DPRecord && c.StepsPerRound < 1 && !c.planned() {
		bad("steps_per_round", "must be at least 1, got %d", c.StepsPerRound)
	}
	if c.ReferenceRecords < 0 || (c.ReferenceRecords > 0 && c.Mechanism != DPRecord) {
		bad("reference_records", "must be 0, or positive at record level, got %d", c.ReferenceRecords)
	}
	if !c.planned() && (c.Records != 0 || c.Batch != 0) {
		bad("records", "and batch plan DP-SGD at record level, with sampling_rate unset")
	}
	if c.AdaptiveClipping && c.Mechanism != DPClient {
		bad("adaptive_clipping", "applies to client-level DP only")
	}
	if _, err := privacy.ParseConversion(c.Conversion); err != nil {
		bad("conversion", "%v", err)
	}
	if z := c.EvaluationNoiseMultiplier; math.IsNaN(z) || math.IsInf(z, 0) || z < 0 {
		bad("evaluation_noise_multiplier", "must be a finite number >= 0, got %v", z)
	}
	if f := c.EvaluationShare; c.EvaluationNoiseMultiplier == 0 && !(f > 0 && f < 1) {
		bad("evaluation_share", "must be in (0, 1), got %v (or set evaluation_noise_multiplier)", f)
	}
	return errs
}

// planned reports whether record-level DP-SGD is to be planned by privacy.PlanDPSGD: a record
// mechanism with sampling_rate unset.
func (c PrivacyConfig) planned() bool { return c.Mechanism == DPRecord && c.SamplingRate == 0 }

// validatePlanned checks a planned record-level configuration: the plan derives the noise from
// an epsilon budget and the steps with the sampling rate, so neither may be set by hand.
func (c PrivacyConfig) validatePlanned() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("run.privacy.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Epsilon == 0 {
		bad("epsilon", "planning DP-SGD (sampling_rate unset) needs an epsilon budget; or set sampling_rate, steps_per_round and noise_multiplier")
	}
	if c.NoiseMultiplier != 0 || c.StepsPerRound != 0 || c.ReferenceRecords != 0 {
		bad("sampling_rate", "unset plans DP-SGD, which derives noise_multiplier, steps_per_round and reference_records: set all of them or none")
	}
	if c.Records < 0 {
		bad("records", "must not be negative, got %d", c.Records)
	}
	if b := c.Batch; math.IsNaN(b) || math.IsInf(b, 0) || b < 0 {
		bad("batch", "must be a finite number >= 0, got %v", b)
	}
	return errs
}

// evaluationReserve is the noise of the run's evaluation releases and an accountant holding
// them: evaluation_noise_multiplier, or the smallest that keeps all evaluations within
// evaluation_share of the epsilon (of what the planned training spends, without a budget).
func (c RunConfig) evaluationReserve(conv privacy.Conversion) (float64, *privacy.Accountant, error) {
	pc := c.Privacy
	q, steps := c.trainSteps()
	zEval, n := pc.EvaluationNoiseMultiplier, c.evaluations()
	if zEval == 0 {
		target := pc.EvaluationShare * pc.Epsilon
		if pc.Epsilon == 0 {
			// No budget: the evaluations get the same share of what the run plans to spend.
			train, _, err := privacy.Epsilon(q, pc.NoiseMultiplier, steps, pc.Delta, nil, conv)
			if err != nil {
				return 0, nil, fmt.Errorf("run.privacy: epsilon of the planned training: %w", err)
			}
			target = train * pc.EvaluationShare / (1 - pc.EvaluationShare)
		}
		var err error
		if zEval, err = privacy.SigmaFor(1, n, pc.Delta, target, nil, conv); err != nil {
			return 0, nil, fmt.Errorf("run.privacy.evaluation_share: noise for %d evaluations within epsilon %.4g: %w", n, target, err)
		}
	}
	evals := privacy.NewAccountant(nil)
	if err := evals.Compose(1, zEval, n); err != nil {
		return 0, nil, fmt.Errorf("run.privacy: %w", err)
	}
	return zEval, evals, nil
}

// planDPSGD resolves a planned record-level configuration with privacy.PlanDPSGD: the
// evaluations' noise is reserved first, as privacyPlan does, then q, steps_per_round, the
// training noise, the clip, the reference records and the learning rate are derived from the
// budget, records, min_clients, rounds and the schema's feature counts. It is a no-op for any
// other configuration, and for one already planned.
func (c *RunConfig) planDPSGD(schema *dataset.Schema) error {
	pc := &c.Privacy
	if !pc.planned() {
		return nil
	}
	if pc.Records < 1 {
		return fmt.Errorf("run.privacy.records: planning DP-SGD (sampling_rate unset) needs the number of training records over all clients, a declared figure; got %d", pc.Records)
	}
	conv, err := privacy.ParseConversion(pc.Conversion)
	if err != nil {
		return err
	}
	zEval, reserved, err := c.evaluationReserve(conv)
	if err != nil {
		return err
	}
	r2, err := privacy.RowNormSquaredBound(len(schema.Numeric), len(schema.Categorical))
	if err != nil {
		return fmt.Errorf("run.privacy: %w", err)
	}
	plan, err := privacy.PlanDPSGD(privacy.DPSGDPlanInput{
		Budget:   privacy.Budget{Epsilon: pc.Epsilon, Delta: pc.Delta, Conversion: conv},
		Reserved: reserved, Records: pc.Records, Clients: max(c.MinClients, 1), Rounds: c.Rounds,
		RowNormSquared: r2, ClipNorm: pc.ClipNorm, Batch: pc.Batch,
	})
	if err != nil {
		return fmt.Errorf("run.privacy: %w", err)
	}
	pc.SamplingRate, pc.StepsPerRound, pc.NoiseMultiplier, pc.ClipNorm = plan.SamplingRate, plan.StepsPerRound, plan.NoiseMultiplier, plan.ClipNorm
	pc.ReferenceRecords, pc.EvaluationNoiseMultiplier = plan.ReferenceRecords, zEval
	c.Train.LearningRate = plan.LearningRate
	return nil
}

// keepPlan gives a resumed run the DP-SGD plan it started with: a planned configuration is
// resolved from the stored one, not planned again, so that the noise the accountant holds stays
// the noise the tasks carry.
func (c *RunConfig) keepPlan(stored RunConfig) {
	if !c.Privacy.planned() || stored.Privacy.planned() || stored.Privacy.Mechanism != DPRecord {
		return
	}
	s := stored.Privacy
	pc := &c.Privacy
	pc.SamplingRate, pc.StepsPerRound, pc.NoiseMultiplier, pc.ClipNorm = s.SamplingRate, s.StepsPerRound, s.NoiseMultiplier, s.ClipNorm
	pc.ReferenceRecords, pc.EvaluationNoiseMultiplier = s.ReferenceRecords, s.EvaluationNoiseMultiplier
	c.Train.LearningRate = stored.Train.LearningRate
}

// evaluations is the number of federated evaluations a run of all its rounds makes: every
// eval_every rounds, and the last round.
func (c RunConfig) evaluations() int {
	every := max(c.EvalEvery, 1)
	return (c.Rounds + every - 1) / every
}

// evaluated reports whether round's candidate is evaluated before it commits.
func (c RunConfig) evaluated(round int) bool {
	return round%max(c.EvalEvery, 1) == 0 || round == c.Rounds
}

// trainSteps is the planned composition of the training: its sampling rate and its steps over
// all rounds (rounds at client level, rounds x steps_per_round of DP-SGD at record level).
func (c RunConfig) trainSteps() (q float64, steps int) {
	pc := c.Privacy
	steps = c.Rounds
	if pc.Mechanism == DPRecord {
		steps *= pc.StepsPerRound
	}
	if c.Trees() {
		steps++ // the label sums and sketch before the first tree
	}
	return pc.SamplingRate, steps
}

// privacyPlan is the noise a DP run's configuration fixes before any task: z of the training,
// z of each evaluation release, and the number of evaluations planned.
type privacyPlan struct {
	z, zEval    float64
	evaluations int
}

// privacyPlan resolves the run's noise. The evaluations are known in advance, so their cost is
// reserved first: their z is configured, or the smallest that keeps all of them within
// evaluation_share of the epsilon; then the training's z is configured, or the smallest that
// keeps training and evaluations, composed in one accountant, within the budget.
func (c RunConfig) privacyPlan() (privacyPlan, error) {
	pc := c.Privacy
	conv, err := privacy.ParseConversion(pc.Conversion)
	if err != nil {
		return privacyPlan{}, err
	}
	plan := privacyPlan{z: pc.NoiseMultiplier, evaluations: c.evaluations()}
	q, steps := c.trainSteps()
	zEval, evals, err := c.evaluationReserve(conv)
	if err != nil {
		return privacyPlan{}, err
	}
	plan.zEval = zEval
	if plan.z == 0 {
		budget := privacy.Budget{Epsilon: pc.Epsilon, Delta: pc.Delta, Conversion: conv}
		if plan.z, err = evals.SigmaWithin(q, steps, budget); err != nil {
			return privacyPlan{}, fmt.Errorf("run.privacy: noise for epsilon %v over %d steps after %d evaluations at z=%.4g: %w",
				pc.Epsilon, steps, plan.evaluations, plan.zEval, err)
		}
	}
	return plan, nil
}

// checkAdaptiveNoise refuses, before any task, an adaptive-clipping run whose noise cannot be
// split between the update sum and the clipping count with as few contributors as the run may
// have (min_clients sampled at sampling_rate): such a round could only go out without noise.
func (c RunConfig) checkAdaptiveNoise() error {
	pc := c.Privacy
	if pc.Mechanism != DPClient || !pc.AdaptiveClipping {
		return nil
	}
	plan, err := c.privacyPlan()
	if err != nil {
		return err
	}
	z := plan.z
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
	// Steps composed: rounds (client) or the worst client's DP-SGD steps (record); in a tree
	// run, the levels and the sketch released, TreeSteps of them since the last release
	// recorded (a tree's steps are recorded as one release when it is grown).
	Steps     int `json:"steps"`
	TreeSteps int `json:"tree_steps,omitempty"`
	// TreeMinNoise is the smallest noise multiplier of those TreeSteps (lower than planned
	// where fewer noise shares arrived than expected, in he mode).
	TreeMinNoise float64 `json:"tree_min_noise,omitempty"`
	// Accountant composes the client-level rounds and every evaluation release; record level
	// accounts its DP-SGD steps per client from Participation and adds the worst client's to
	// it.
	Accountant    *privacy.Accountant `json:"accountant,omitempty"`
	Participation map[string]int      `json:"participation,omitempty"`
	// EvaluationNoiseMultiplier is z of every evaluation release.
	EvaluationNoiseMultiplier float64 `json:"evaluation_noise_multiplier,omitempty"`
	// Epsilon is the composition of everything released so far (Releases).
	Epsilon    float64 `json:"epsilon"`
	Delta      float64 `json:"delta"`
	Conversion string  `json:"conversion"`
	// Releases lists every release in order with the epsilon it added. It only grows: a
	// snapshot may share its backing array.
	Releases []modelfile.Release `json:"releases,omitempty"`

	// trainCohort is the cohort of the round's train phase: the clients its evaluation asks
	// (the others have not trained from the model and decline it). Not persisted: a resumed
	// run starts a new round.
	trainCohort []string
}

// initPrivacy resolves the noise of a new run. A differentially private run standardises from
// the schema's public bounds (see standardizeFromBounds), so a schema that lacks them for a
// numeric feature is refused here, before any task.
func (c *Core) initPrivacy() error {
	pc := c.cfg.Privacy
	if pc.Mechanism == DPNone {
		return nil
	}
	if _, err := c.schema.PublicStandardization(); err != nil {
		return fmt.Errorf("run %s: run.privacy.mechanism %s: the feature statistics would be released outside the guarantee, so a differentially private run standardises from public bounds: schema %q: %w",
			c.cfg.ID, pc.Mechanism, c.schema.Name, err)
	}
	plan, err := c.cfg.privacyPlan()
	if err != nil {
		return err
	}
	c.run.Privacy = &PrivacyState{Mechanism: pc.Mechanism, NoiseMultiplier: plan.z, ClipNorm: pc.ClipNorm, SamplingRate: pc.SamplingRate,
		Accountant: privacy.NewAccountant(nil), Participation: map[string]int{}, EvaluationNoiseMultiplier: plan.zEval,
		Delta: pc.Delta, Conversion: pc.Conversion}
	c.warnTreeRegularisation(plan.z)
	return nil
}

// warnTreeRegularisation tells the operator of a DP tree run whose lambda or min_child_weight
// is far below the noise on a node's hessian sum that its leaves and splits will follow the
// noise: the noise lands on every bin, a node's sum over a feature's bins carries about
// z x sensitivity x sqrt(bins) of it (once in he mode, once per client in plaintext), and a
// regularisation far below it lets a leaf's value be mostly noise. It only warns: the
// operator may know better, and configs/sim-bank-gbdt-dp.yaml shows settings that work.
func (c *Core) warnTreeRegularisation(z float64) {
	if !c.cfg.Trees() || c.cfg.Privacy.Mechanism != DPRecord {
		return
	}
	p := c.cfg.TreeParams()
	features := len(c.schema.Numeric) + len(c.schema.Categorical)
	noise := z * task.GBDTSensitivity(task.GBDTHistograms, len(c.schema.Numeric), features) * math.Sqrt(float64(p.Bins))
	if !c.he() {
		noise *= math.Sqrt(float64(max(c.cfg.MinClients, 1)))
	}
	if p.Lambda < noise/4 || p.MinChildWeight < noise/4 {
		c.note(slog.LevelWarn, "differentially private trees: run.model.gbdt.lambda and min_child_weight are far below the noise of a node's hessian sum; leaves and splits will follow the noise (set them near it, with fewer bins, levels and trees: see configs/sim-bank-gbdt-dp.yaml)",
			slog.Float64("lambda", p.Lambda), slog.Float64("min_child_weight", p.MinChildWeight), slog.Float64("hessian_noise_std", math.Round(noise)),
			slog.Float64("noise_multiplier", z), slog.Int("bins", p.Bins))
	}
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
			NoiseMultiplier: ps.NoiseMultiplier, Delta: ps.Delta, ReferenceRecords: c.cfg.Privacy.ReferenceRecords}, nil
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

// budgetAllowsRound reports whether one more round, with its evaluation when it has one, fits
// the budget, and why not.
func (c *Core) budgetAllowsRound() (bool, string) {
	ps, pc := c.run.Privacy, c.cfg.Privacy
	if ps == nil || pc.Epsilon == 0 {
		return true, ""
	}
	if err := c.ensureEvaluationNoise(); err != nil {
		return false, err.Error()
	}
	// The run's own conversion, as composedEpsilon uses: a run keeps the one it started with,
	// even when the configuration's default has changed since.
	conv, err := privacy.ParseConversion(ps.Conversion)
	if err != nil {
		return false, err.Error()
	}
	budget := privacy.Budget{Epsilon: pc.Epsilon, Delta: pc.Delta, Conversion: conv}
	next := ps.Accountant.Clone()
	q, z, steps := ps.SamplingRate, ps.NoiseMultiplier, 1
	switch {
	case c.cfg.Trees():
		// The tree's levels, each composed as it is released (treeTrain.account), and the
		// sketch before the first.
		steps = pc.StepsPerRound
		if c.trees == nil {
			steps++
		}
	case ps.Mechanism == DPRecord:
		steps = (worstParticipation(ps) + 1) * pc.StepsPerRound
	}
	if c.cfg.evaluated(c.round) {
		// Training first, then the evaluation, in the one accountant.
		if err := next.Compose(q, z, steps); err != nil {
			return false, err.Error()
		}
		q, z, steps = 1, ps.EvaluationNoiseMultiplier, 1
	}
	exceed, eps, err := next.WouldExceed(q, z, steps, budget)
	if err != nil {
		return false, err.Error()
	}
	if exceed {
		return false, fmt.Sprintf("round %d would raise epsilon to %.4g, above the budget of %g at delta %g", c.round, eps, pc.Epsilon, pc.Delta)
	}
	return true, ""
}

// worstParticipation is the most rounds any one client took part in (record level).
func worstParticipation(ps *PrivacyState) int {
	worst := 0
	for _, n := range ps.Participation {
		worst = max(worst, n)
	}
	return worst
}

// composedEpsilon is the epsilon of everything released so far: the accountant's composition
// and, at record level, the worst client's DP-SGD steps.
func (c *Core) composedEpsilon() (float64, error) {
	ps := c.run.Privacy
	conv, err := privacy.ParseConversion(ps.Conversion)
	if err != nil {
		return 0, err
	}
	acc := ps.Accountant
	if ps.Mechanism == DPRecord && ps.Steps > 0 && !c.cfg.Trees() {
		acc = acc.Clone()
		if err := acc.Compose(ps.SamplingRate, ps.NoiseMultiplier, ps.Steps); err != nil {
			return 0, err
		}
	}
	eps, _, err := acc.Epsilon(ps.Delta, conv)
	return eps, err
}

// recordRelease sets the run's epsilon to the composition after r and appends r to the
// releases with the epsilon it added.
func (c *Core) recordRelease(r modelfile.Release) error {
	ps := c.run.Privacy
	eps, err := c.composedEpsilon()
	if err != nil {
		return err
	}
	before := 0.0
	if n := len(ps.Releases); n > 0 {
		before = ps.Releases[n-1].Cumulative
	}
	r.Cumulative, r.Epsilon = eps, max(eps-before, 0)
	ps.Releases = append(ps.Releases, r)
	ps.Epsilon = eps
	return nil
}

// addNoise adds Gaussian noise of standard deviation std*scales[i] to v[i] (std alone where
// scales is nil), drawn from the coordinator's noise source: every noise the coordinator adds
// in plaintext mode (training rounds, clipping counts, evaluations) is drawn here.
func (c *Core) addNoise(v []float64, std float64, scales []float64) error {
	if scales == nil {
		return privacy.AddGaussianNoise(v, std, c.noise)
	}
	return privacy.AddScaledGaussianNoise(v, std, scales, c.noise)
}

// privatize is the DP decorator's half of a train round's finalize: from the phase's sum it
// returns the update sum to release and the weight to divide it by. It adds the coordinator's
// noise (plaintext client level; in he mode the clients did), takes the expected contributors
// as the weight (client level; each client's DP-SGD output counts once at record level), moves
// the adaptive clipping norm and composes the round into the accountant, all before any mean
// is taken.
func (c *Core) privatize(sum []float64, contributors int, submitters []string) (delta []float64, weight float64, err error) {
	ps, pc := c.run.Privacy, c.cfg.Privacy
	dim := len(c.global)
	delta = sum[task.TrainDeltaStart : task.TrainDeltaStart+dim]
	ps.ClipSchedule = append(ps.ClipSchedule, ps.ClipNorm)
	switch ps.Mechanism {
	case DPRecord:
		// Each client's DP-SGD output counts once: weighting by record counts would release
		// them outside the DP-SGD guarantee.
		if len(submitters) == 0 {
			// In he mode the coordinator does not learn who contributed to the decrypted sum:
			// count every client asked, which can only over-state what was spent.
			submitters = ps.trainCohort
		}
		for _, id := range submitters {
			ps.Participation[id]++
		}
		ps.Steps = worstParticipation(ps) * pc.StepsPerRound
		err = c.recordRelease(modelfile.Release{Kind: modelfile.ReleaseTrain, Round: c.round, Mechanism: modelfile.MechanismDPSGD,
			NoiseMultiplier: ps.NoiseMultiplier, SamplingRate: ps.SamplingRate, Steps: pc.StepsPerRound})
		if err != nil {
			return nil, 0, err
		}
		return delta, float64(contributors), nil
	case DPClient:
		m := c.expected
		zSum, sigmaB, err := c.adaptiveNoise(m)
		if err != nil {
			return nil, 0, err
		}
		indicator := sum[len(sum)-1]
		achieved := ps.NoiseMultiplier
		if c.he() {
			if achieved, err = privacy.AchievedNoiseMultiplier(ps.NoiseMultiplier, m, contributors); err != nil {
				return nil, 0, err
			}
			if contributors < m {
				c.note(slog.LevelWarn, "fewer contributors than expected: the noise present was lower; accounting with it",
					slog.Int("round", c.round), slog.Int("expected", m), slog.Int("arrived", contributors),
					slog.Float64("planned_z", ps.NoiseMultiplier), slog.Float64("achieved_z", achieved))
			}
		} else {
			noised := append([]float64(nil), delta...)
			if err := c.addNoise(noised, zSum*ps.ClipNorm, nil); err != nil {
				return nil, 0, err
			}
			delta = noised
			if sigmaB > 0 {
				ind := []float64{indicator}
				if err := c.addNoise(ind, sigmaB, nil); err != nil {
					return nil, 0, err
				}
				indicator = ind[0]
			}
		}
		if pc.AdaptiveClipping {
			next, err := privacy.NextClipNorm(ps.ClipNorm, indicator, m, pc.TargetQuantile, pc.ClipLearningRate)
			if err != nil {
				return nil, 0, err
			}
			ps.ClipNorm = next
		}
		if !(achieved > 0) {
			return nil, 0, errors.New("no noise was present in this round: it cannot be accounted")
		}
		// A round that lost contributors (and so noise shares) is accounted on a grid of 1/64
		// octave, rounded down (less noise than was present, so the epsilon stays an upper
		// bound): such rounds then share a few noise multipliers, and the accountant composes
		// the history from a few cached parts instead of one per round.
		accounted := achieved
		if achieved < ps.NoiseMultiplier {
			accounted = privacy.NoiseGridFloor(achieved)
		}
		if err := ps.Accountant.Compose(ps.SamplingRate, accounted, 1); err != nil {
			return nil, 0, err
		}
		ps.Steps++
		err = c.recordRelease(modelfile.Release{Kind: modelfile.ReleaseTrain, Round: c.round, Mechanism: modelfile.MechanismGaussian,
			NoiseMultiplier: accounted, SamplingRate: ps.SamplingRate, Steps: 1})
		if err != nil {
			return nil, 0, err
		}
		return delta, float64(m), nil
	}
	return nil, 0, fmt.Errorf("unknown privacy mechanism %q", ps.Mechanism)
}

// PrivacyReport is the guarantee of a committed version, as the model document and the model
// card state it.
type PrivacyReport = modelfile.Privacy

func (c *Core) privacyReport() *PrivacyReport {
	ps := c.run.Privacy
	if ps == nil {
		return nil
	}
	clip := ps.ClipNorm
	if n := len(ps.ClipSchedule); n > 0 {
		clip = ps.ClipSchedule[n-1]
	}
	return &PrivacyReport{Mechanism: ps.Mechanism, NoiseMultiplier: ps.NoiseMultiplier, ClipNorm: clip,
		ClipSchedule: slices.Clone(ps.ClipSchedule), AdaptiveClip: c.cfg.Privacy.AdaptiveClipping, SamplingRate: ps.SamplingRate,
		Steps: ps.Steps, EvaluationNoiseMultiplier: ps.EvaluationNoiseMultiplier, EvaluationNoiseStd: c.evalCountNoiseStd(), Epsilon: ps.Epsilon, Delta: ps.Delta,
		Conversion: ps.Conversion, Budget: c.cfg.Privacy.Epsilon, Releases: slices.Clone(ps.Releases)}
}

// standardizeFromBounds pins a differentially private run's standardisation from the schema's
// public bounds instead of a statistics phase: no task goes out, no record is read and no
// epsilon is spent, and the release list says so. The run then trains.
func (c *Core) standardizeFromBounds() {
	std, err := c.schema.PublicStandardization()
	if err == nil {
		err = c.pinEncoding(std)
	}
	if err != nil {
		c.fail(fmt.Sprintf("standardisation from public bounds: %v", err))
		return
	}
	if c.global == nil {
		c.global = make([]float64, c.encoder.Dim()+1)
	}
	if ps := c.run.Privacy; len(ps.Releases) == 0 {
		if err := c.recordRelease(modelfile.Release{Kind: modelfile.ReleaseStatistics, Mechanism: modelfile.MechanismPublicBounds}); err != nil {
			c.fail(fmt.Sprintf("standardisation from public bounds: %v", err))
			return
		}
	}
	c.pending.Run = c.snapshot()
	c.note(slog.LevelInfo, "standardisation pinned from the schema's public bounds: no statistics were asked of the clients",
		slog.String("mechanism", c.dp()), slog.Any("mean", std.Mean), slog.Any("std", std.Std))
	c.startPhase(phaseTrain, c.run.LastRound+1)
}

// evalBins is the score histogram resolution of the run's evaluations: the configured bins,
// at most metrics.DefaultDPBins under differential privacy (see there).
func (c *Core) evalBins() int {
	if c.dp() != DPNone {
		return min(c.cfg.HistogramBins, metrics.DefaultDPBins)
	}
	return c.cfg.HistogramBins
}

// evalLayout is the layout of the fairness sums evaluate tasks return (nil without sensitive
// attributes): the run's, with at most metrics.DefaultDPBins per group under differential
// privacy.
func (c *Core) evalLayout() *fairness.Layout {
	if c.fairness == nil || c.dp() == DPNone {
		return c.fairness
	}
	l := *c.fairness
	l.Bins = min(l.Bins, metrics.DefaultDPBins)
	return &l
}

// evalImportance reports whether evaluate tasks return importance sums (see importanceLen):
// logistic regression's contribution sums, or a tree model's |TreeSHAP| sums. Not under
// differential privacy: a record's part in each feature's sums would need clipping and a share
// of every evaluation's noise budget, for a figure the model card can leave out (a tree model's
// gain importance, which needs no client data, stays).
func (c *Core) evalImportance() bool { return c.dp() == DPNone }

// evalNoiseScales are the noise scales of a DP evaluation vector.
func (c *Core) evalNoiseScales() []float64 {
	return fairness.EvaluationNoiseScales(c.evalBins(), c.evalLayout())
}

// startEvaluationRelease fixes, when the evaluate phase of a DP run starts, the m its noise
// shares are divided by: the clients asked (he mode).
func (c *Core) startEvaluationRelease(cohort []string) {
	c.expected = len(cohort)
	if err := c.ensureEvaluationNoise(); err != nil {
		c.note(slog.LevelError, "no noise for the evaluation: its tasks go out without it and clients decline them", slog.String("err", err.Error()))
	}
}

// ensureEvaluationNoise fills the evaluations' noise multiplier of a run recorded before
// evaluations were noised, from the configuration, so that no evaluation goes out without it.
func (c *Core) ensureEvaluationNoise() error {
	ps := c.run.Privacy
	if ps == nil || ps.EvaluationNoiseMultiplier > 0 {
		return nil
	}
	plan, err := c.cfg.privacyPlan()
	if err != nil {
		return err
	}
	ps.EvaluationNoiseMultiplier = plan.zEval
	return nil
}

// releaseNoise is the differential privacy of the evaluate phase's tasks: nil without DP.
func (c *Core) releaseNoise() *task.ReleaseNoise {
	ps := c.run.Privacy
	if ps == nil {
		return nil
	}
	// At client level each client weighs its records by 1/n, so that its whole evaluation adds
	// no more than one record would and the release is client-level DP like the training it
	// composes with.
	n := &task.ReleaseNoise{NoiseMultiplier: ps.EvaluationNoiseMultiplier, Delta: ps.Delta, Level: DPRecord}
	if ps.Mechanism == DPClient {
		n.Level = DPClient
	}
	if c.he() {
		n.ExpectedContributors = max(c.expected, 1)
	}
	return n
}

// privatizeEvaluation makes a DP evaluation sum a release: in plaintext mode the coordinator
// adds the Gaussian noise (in he mode the clients did), then the release is composed into the
// accountant with the noise actually present.
func (c *Core) privatizeEvaluation(sum []float64, contributors int) error {
	ps := c.run.Privacy
	z := ps.EvaluationNoiseMultiplier
	if !(z > 0) {
		return errors.New("the evaluation has no noise multiplier: it cannot be released")
	}
	if c.he() {
		achieved, err := privacy.AchievedNoiseMultiplier(z, max(c.expected, 1), contributors)
		if err != nil {
			return err
		}
		if achieved < z {
			c.note(slog.LevelWarn, "fewer evaluation contributors than expected: the noise present was lower; accounting with it",
				slog.Int("round", c.round), slog.Int("expected", c.expected), slog.Int("arrived", contributors),
				slog.Float64("planned_z", z), slog.Float64("achieved_z", achieved))
		}
		z = achieved
	} else if err := c.addNoise(sum, z, c.evalNoiseScales()); err != nil {
		return err
	}
	if err := ps.Accountant.Compose(1, z, 1); err != nil {
		return err
	}
	return c.recordRelease(modelfile.Release{Kind: modelfile.ReleaseEvaluate, Round: c.round, Mechanism: modelfile.MechanismGaussian,
		NoiseMultiplier: z, SamplingRate: 1, Steps: 1})
}

// evalCountNoiseStd is the standard deviation of the noise on each count of the round's
// evaluation release (0 without DP), for the reports that read it.
func (c *Core) evalCountNoiseStd() float64 {
	ps := c.run.Privacy
	if ps == nil {
		return 0
	}
	// Every count has bound 1, so its scale is sqrt(K), the first value's (N's).
	return ps.EvaluationNoiseMultiplier * c.evalNoiseScales()[0]
}
