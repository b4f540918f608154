package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/internal/confcheck"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/task"
)

// RunConfig is what one federated training run does. It is a literal: WithDefaults fills the
// zero values and Validate names the first bad key.
type RunConfig struct {
	// ID names the run; a coordinator restarted with the same ID resumes it.
	ID string `yaml:"id" json:"id"`
	// Schema is the path of the data schema every client must use.
	Schema string `yaml:"schema" json:"schema"`
	// Rounds is the number of training rounds, each committing one model version.
	Rounds int `yaml:"rounds" json:"rounds"`
	// MinClients must have registered before the run starts.
	MinClients int `yaml:"min_clients" json:"min_clients"`
	// CohortFraction of the live clients train in each round, at least MinCohort of them.
	CohortFraction float64 `yaml:"cohort_fraction" json:"cohort_fraction"`
	MinCohort      int     `yaml:"min_cohort" json:"min_cohort"`
	// Quorum is the fewest results a round (or the stats or evaluation phase) needs to count;
	// a phase that misses it by its deadline is retried, never committed half-done.
	Quorum int `yaml:"quorum" json:"quorum"`
	// RoundDeadline bounds each phase; results arriving later are refused.
	RoundDeadline time.Duration `yaml:"round_deadline" json:"round_deadline"`
	// MaxAttempts is how often one phase may be retried before the run fails.
	MaxAttempts int `yaml:"max_attempts" json:"max_attempts"`
	// EvalEvery k rounds the global model is evaluated federatedly; the last round always is.
	EvalEvery int `yaml:"eval_every" json:"eval_every"`
	// HistogramBins is the resolution of the federated score histograms behind AUC.
	HistogramBins int `yaml:"histogram_bins" json:"histogram_bins"`
	// Train holds the local training hyperparameters sent with every train task.
	Train logreg.Params `yaml:"train" json:"train"`
	// Strategy turns the aggregated update into the next global model.
	Strategy strategy.Config `yaml:"strategy" json:"strategy"`
	// Seed drives cohort selection and the clients' local randomness.
	Seed uint64 `yaml:"seed" json:"seed"`
	// SecureAggregation protects every sum from the coordinator ("he") or not ("none").
	SecureAggregation SecureAggregationConfig `yaml:"secure_aggregation" json:"secure_aggregation"`
	// Privacy is the run's differential privacy and its budget.
	Privacy PrivacyConfig `yaml:"privacy" json:"privacy"`
	// Robust replaces the weighted mean of the updates by a Byzantine-robust aggregator
	// (median, trimmed mean, Krum, Multi-Krum, norm bounding). It needs the individual
	// updates, so only plaintext runs without differential privacy can use it.
	Robust strategy.RobustConfig `yaml:"robust" json:"robust"`
	// Fairness audits the model on the schema's sensitive attributes in every federated
	// evaluation; a version beyond the policy's gaps is flagged and cannot be approved without
	// an explicit override.
	Fairness FairnessConfig `yaml:"fairness" json:"fairness"`
	// MinRecordsPlaintext is the fewest consenting training records a client must announce to
	// register for a run that aggregates in plaintext (secure_aggregation.mode none): the sums
	// a small client sends (its feature sums and squares, its update, its evaluation counts
	// over a few held-out records) are close to its customers' own records. Unset means
	// DefaultMinRecordsPlaintext; 0 is the explicit research opt-out, which the coordinator's
	// log and the simulator's summary flag. In he mode it does not apply: the coordinator then
	// decrypts only sums over many clients.
	MinRecordsPlaintext *int `yaml:"min_records_plaintext" json:"min_records_plaintext"`
	// MaxUpdateNorm bounds one client's unweighted update in a run without differential
	// privacy: honest clients clip to it, the coordinator refuses a plaintext result above it
	// and discards an he-mode round whose sum is above it times its examples (default
	// DefaultMaxUpdateNorm). Under differential privacy the clipping norm is the bound.
	MaxUpdateNorm float64 `yaml:"max_update_norm" json:"max_update_norm,omitempty"`
	// EarlyStopping ends the run when that many federated evaluations in a row have not
	// lowered the lowest evaluation log loss so far (0: off). The versions committed stay; the
	// best is the one evaluated EarlyStopping evaluations before the last.
	EarlyStopping int `yaml:"early_stopping" json:"early_stopping,omitempty"`
	// Model chooses the model kind: logistic regression (the default) or gradient-boosted
	// trees.
	Model ModelConfig `yaml:"model" json:"model,omitzero"`
}

// Model kinds, run.model.kind.
const (
	ModelLogistic = "logistic"
	ModelGBDT     = "gbdt"
)

// ModelConfig is run.model: the model kind and, for trees, their parameters.
type ModelConfig struct {
	// Kind is logistic (the default; also when empty) or gbdt.
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty"`
	// GBDT are the trees' parameters (gbdt.DefaultParams for the keys left out). Each round
	// grows one tree: run.rounds is the number of trees, and gbdt.trees is set to it.
	GBDT *gbdt.Params `yaml:"gbdt,omitempty" json:"gbdt,omitempty"`
}

// UnmarshalYAML reads run.model with the trees' defaults under the keys it sets: a zero
// subsample or colsample is a value (refused), so keys left out cannot read as zeros.
func (m *ModelConfig) UnmarshalYAML(value *yaml.Node) error {
	var raw struct {
		Kind string    `yaml:"kind"`
		GBDT yaml.Node `yaml:"gbdt"`
	}
	if err := value.Decode(&raw); err != nil {
		return err
	}
	m.Kind, m.GBDT = raw.Kind, nil
	if !raw.GBDT.IsZero() && raw.GBDT.ShortTag() != "!!null" {
		p := gbdt.DefaultParams()
		if err := raw.GBDT.Decode(&p); err != nil {
			return err
		}
		m.GBDT = &p
	}
	return nil
}

// Trees reports whether the run trains gradient-boosted trees.
func (c RunConfig) Trees() bool { return c.Model.Kind == ModelGBDT }

// TreeParams are the run's tree parameters: the defaults under what the run sets, one tree a
// round, seeded by the run.
func (c RunConfig) TreeParams() gbdt.Params {
	p := gbdt.DefaultParams()
	if c.Model.GBDT != nil {
		p = *c.Model.GBDT
	}
	p.Trees = c.Rounds
	if p.Seed == 0 {
		p.Seed = c.Seed
	}
	return p
}

// DefaultMinRecordsPlaintext is run.min_records_plaintext when unset.
const DefaultMinRecordsPlaintext = task.DefaultMinRecordsPlaintext

// ErrTooFewRecords: a client's registration was refused because it holds fewer records than a
// plaintext run's min_records_plaintext; secure aggregation is the fix. It is task's sentinel,
// so that the client sees it through the transport too.
var ErrTooFewRecords = task.ErrTooFewRecords

// MinRecords is the effective min_records_plaintext: the configured value, or the default
// when unset (a RunConfig that skipped WithDefaults fails closed too).
func (c RunConfig) MinRecords() int {
	if c.MinRecordsPlaintext == nil {
		return DefaultMinRecordsPlaintext
	}
	return *c.MinRecordsPlaintext
}

// SmallClientsInPlaintext reports whether the run opted out of the plaintext minimum
// (min_records_plaintext 0 with secure_aggregation.mode none): the coordinator may then
// receive the own sums of clients that hold only a handful of records.
func (c RunConfig) SmallClientsInPlaintext() bool {
	return c.SecureAggregation.Mode != SecAggHE && c.MinRecords() == 0
}

// FairnessConfig is the fairness audit of a run: the layout of the per-group sums (decision
// thresholds, histogram bins for group AUC, the groups of attributes that have neither bands
// nor a vocabulary) and the policy that flags a model.
type FairnessConfig struct {
	fairness.LayoutConfig `yaml:",inline" json:",inline"`
	Policy                *fairness.Policy `yaml:"policy" json:"policy,omitempty"`
}

// WithDefaults returns c with every unset field at its documented default.
func (c RunConfig) WithDefaults() RunConfig {
	if c.ID == "" {
		c.ID = "run-1"
	}
	if c.Rounds == 0 {
		c.Rounds = 10
	}
	if c.MinClients == 0 {
		c.MinClients = 2
	}
	if c.CohortFraction == 0 {
		c.CohortFraction = 1
	}
	if c.MinCohort == 0 {
		c.MinCohort = min(c.MinClients, 2)
	}
	if c.Quorum == 0 {
		c.Quorum = max(1, min(c.MinCohort, c.MinClients))
	}
	if c.RoundDeadline == 0 {
		c.RoundDeadline = 60 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.EvalEvery == 0 {
		c.EvalEvery = 1
	}
	if c.HistogramBins == 0 {
		c.HistogramBins = defaultHistogramBins
	}
	if c.MinRecordsPlaintext == nil {
		n := DefaultMinRecordsPlaintext
		c.MinRecordsPlaintext = &n
	}
	// An empty kind is logistic regression, left empty so that a logistic run's recorded
	// configuration (and its hash on the model card) stays what it was before trees.
	if c.Model.Kind == ModelGBDT && c.Model.GBDT == nil {
		p := gbdt.DefaultParams()
		c.Model.GBDT = &p
	}
	c.SecureAggregation = c.SecureAggregation.withDefaults()
	if c.Trees() && c.Privacy.Mechanism == DPRecord {
		// A tree's every level is one Gaussian release of every record's gradient, hessian
		// and count (no sampling): steps_per_round counts the levels a tree may take.
		if c.Privacy.SamplingRate == 0 {
			c.Privacy.SamplingRate = 1
		}
		if c.Privacy.StepsPerRound == 0 {
			c.Privacy.StepsPerRound = c.TreeParams().MaxDepth
		}
	}
	c.Privacy = c.Privacy.withDefaults()
	c.Train = c.Train.WithDefaults()
	c.Strategy = c.Strategy.WithDefaults()
	return c
}

// Validate reports the first setting that cannot work, naming its key.
func (c RunConfig) Validate() error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("run.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	// Every float of the run, under any key (train, strategy, privacy, fairness...), is
	// finite: NaN passes each range check below, and a stored NaN cannot even be encoded.
	errs = append(errs, confcheck.Floats("run", c)...)
	if c.Rounds < 1 {
		bad("rounds", "must be at least 1, got %d", c.Rounds)
	}
	if c.MinClients < 1 {
		bad("min_clients", "must be at least 1, got %d", c.MinClients)
	}
	if c.CohortFraction <= 0 || c.CohortFraction > 1 {
		bad("cohort_fraction", "must be in (0, 1], got %v", c.CohortFraction)
	}
	if c.MinCohort < 1 {
		bad("min_cohort", "must be at least 1, got %d", c.MinCohort)
	}
	if c.Quorum < 1 {
		bad("quorum", "must be at least 1, got %d", c.Quorum)
	}
	if c.Quorum > c.MinCohort && c.CohortFraction == 1 && c.Quorum > c.MinClients {
		bad("quorum", "%d can never be reached with min_clients %d", c.Quorum, c.MinClients)
	}
	if c.RoundDeadline <= 0 {
		bad("round_deadline", "must be positive, got %v", c.RoundDeadline)
	}
	switch c.Model.Kind {
	case ModelLogistic, "":
		if c.Model.GBDT != nil {
			bad("model.gbdt", "is for run.model.kind gbdt, and the kind is %s", ModelLogistic)
		}
	case ModelGBDT:
		p := c.TreeParams()
		var pe *gbdt.ParamError
		if err := p.Validate(); errors.As(err, &pe) {
			bad("model.gbdt."+pe.Key, "%v", err)
		} else if err != nil {
			bad("model.gbdt", "%v", err)
		}
		if pc := c.Privacy; pc.Mechanism == DPClient {
			bad("privacy.mechanism", "gbdt protects records (mechanism record: every client noises its own histograms); client-level DP does not apply to summed histograms")
		} else if pc.Mechanism == DPRecord {
			if pc.SamplingRate != 1 {
				bad("privacy.sampling_rate", "a gbdt run releases every record's histograms at every level: sampling_rate must be 1 (or unset), got %v", pc.SamplingRate)
			}
			if pc.StepsPerRound != c.TreeParams().MaxDepth {
				bad("privacy.steps_per_round", "is a gbdt run's model.gbdt.max_depth (%d levels a tree): leave it unset, got %d", c.TreeParams().MaxDepth, pc.StepsPerRound)
			}
			if pc.Records != 0 || pc.Batch != 0 || pc.ReferenceRecords != 0 {
				bad("privacy.records", "records, batch and reference_records plan DP-SGD for logistic regression; a gbdt run has no DP-SGD steps")
			}
		}
		if c.Robust.Enabled() {
			bad("model.kind", "gbdt sums histograms: run.robust.name %s does not apply", c.Robust.Name)
		}
	default:
		bad("model.kind", "%q is not %s or %s", c.Model.Kind, ModelLogistic, ModelGBDT)
	}
	if c.EarlyStopping < 0 {
		bad("early_stopping", "must be 0 (off) or a number of evaluations, got %d", c.EarlyStopping)
	}
	if c.MaxAttempts < 1 {
		bad("max_attempts", "must be at least 1, got %d", c.MaxAttempts)
	}
	if c.EvalEvery < 1 {
		bad("eval_every", "must be at least 1, got %d", c.EvalEvery)
	}
	if c.MaxUpdateNorm < 0 || math.IsNaN(c.MaxUpdateNorm) || math.IsInf(c.MaxUpdateNorm, 0) {
		bad("max_update_norm", "must be a positive number (0: the default %v), got %v", DefaultMaxUpdateNorm, c.MaxUpdateNorm)
	}
	if c.HistogramBins < 2 {
		bad("histogram_bins", "must be at least 2, got %d", c.HistogramBins)
	}
	if n := c.MinRecords(); n < 0 {
		bad("min_records_plaintext", "must not be negative, got %d (0 is the research opt-out)", n)
	}
	errs = append(errs, c.SecureAggregation.validate(c.Quorum)...)
	privacyErrs := c.Privacy.validate()
	errs = append(errs, privacyErrs...)
	if len(privacyErrs) == 0 {
		if err := c.checkAdaptiveNoise(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Fairness.Policy != nil {
		if err := c.Fairness.Policy.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("run.fairness.policy: %w", err))
		}
	}
	if c.Robust.Enabled() {
		if err := c.Robust.Validate(); err != nil {
			errs = append(errs, err)
		}
		if c.SecureAggregation.Mode == SecAggHE {
			errs = append(errs, fmt.Errorf("run.robust.name: %q needs the individual client updates, and secure_aggregation he hides them from the coordinator by design: use robust aggregation only in plaintext runs", c.Robust.Name))
		}
		if c.Privacy.Mechanism != DPNone {
			errs = append(errs, fmt.Errorf("run.robust.name: %q is not accounted by the differential-privacy mechanism: use one or the other", c.Robust.Name))
		}
	}
	if err := c.Train.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("run.train: %w", err))
	}
	if err := c.Strategy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("run.strategy: %w", err))
	}
	return errors.Join(errs...)
}

// MarshalJSON writes the round deadline as a duration string ("1m0s"), so that a stored or
// summarised configuration reads as it was written and decodes as YAML too.
func (c RunConfig) MarshalJSON() ([]byte, error) {
	type plain RunConfig
	return json.Marshal(struct {
		plain
		RoundDeadline string `json:"round_deadline"`
	}{plain(c), c.RoundDeadline.String()})
}

// UnmarshalJSON reads what MarshalJSON writes (and a deadline in nanoseconds).
func (c *RunConfig) UnmarshalJSON(b []byte) error {
	type plain RunConfig
	var v struct {
		plain
		RoundDeadline json.RawMessage `json:"round_deadline"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*c = RunConfig(v.plain)
	if len(v.RoundDeadline) == 0 || string(v.RoundDeadline) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(v.RoundDeadline, &s); err == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("round_deadline: %w", err)
		}
		c.RoundDeadline = d
		return nil
	}
	var ns int64
	if err := json.Unmarshal(v.RoundDeadline, &ns); err != nil {
		return fmt.Errorf("round_deadline: %w", err)
	}
	c.RoundDeadline = time.Duration(ns)
	return nil
}
