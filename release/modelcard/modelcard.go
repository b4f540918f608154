// Package modelcard is the model card of a committed model version: what the model is for, what
// it was trained on (in aggregate only), how well it performs and how well it is calibrated, how
// it treats the groups of its sensitive attributes, what privacy guarantee and secure-aggregation
// protection it was trained under, where it comes from, and who approved it.
//
// Build makes a Card from plain inputs (the coordinator fills an Input from its committed model
// version, run state and evaluation results); the Card is JSON as it stands and renders as
// Markdown (Card.Markdown) for a bank's model-risk file.
package modelcard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/release/modelfile"
)

// Format identifies the JSON layout of a card; Decode refuses others.
const Format = "fedprop.modelcard/v1"

// DefaultCalibrationBins is the number of equal-count score bands of the calibration table.
const DefaultCalibrationBins = 10

// ErrInvalid marks inputs a card cannot be built from, or a card document that cannot be read.
var ErrInvalid = errors.New("invalid model card")

// Approval statuses.
const (
	StatusCandidate = "candidate"
	StatusApproved  = "approved"
	StatusRejected  = "rejected"
)

// Card is the model card of one model version.
type Card struct {
	Format            string            `json:"format"`
	Model             Model             `json:"model"`
	IntendedUse       IntendedUse       `json:"intended_use"`
	TrainingData      TrainingData      `json:"training_data"`
	Features          []Feature         `json:"features"`
	ImportanceMethod  string            `json:"importance_method,omitempty"`
	GainMethod        string            `json:"gain_method,omitempty"` // what Feature.Gain is: a tree model's; empty otherwise
	Performance       Performance       `json:"performance"`
	Fairness          *Fairness         `json:"fairness,omitempty"`
	Privacy           Privacy           `json:"privacy"`
	SecureAggregation SecureAggregation `json:"secure_aggregation"`
	Lineage           Lineage           `json:"lineage"`
	Approval          Approval          `json:"approval"`
	Generated         time.Time         `json:"generated"`
	// PrivacyAudit is an empirical privacy audit of the model, when one was run (the
	// simulator's `sim audit`); the coordinator's cards carry none.
	PrivacyAudit *PrivacyAudit `json:"privacy_audit,omitempty"`
}

// Model identifies the model and what it predicts.
type Model struct {
	// Name is the schema's name, which names the use case.
	Name    string    `json:"name"`
	Version uint64    `json:"version"`
	RunID   string    `json:"run_id"`
	Round   int       `json:"round"`
	Created time.Time `json:"created"`
	// Algorithm is the model's description of itself (model.Model.Describe): "logistic
	// regression", or the trees' shape and parameters.
	Algorithm string `json:"algorithm"`
	// Target is the predicted event, "column = positive value".
	Target string `json:"target"`
	// Inputs is the number of model inputs after encoding (a tree model's features);
	// Intercept the model's intercept (a tree model's base score).
	Inputs    int     `json:"inputs"`
	Intercept float64 `json:"intercept"`
}

// IntendedUse says what the model is for and what not.
type IntendedUse struct {
	Purpose     string   `json:"purpose"`
	Users       []string `json:"users"`
	OutOfScope  []string `json:"out_of_scope"`
	Limitations []string `json:"limitations"`
}

// TrainingData describes the training and evaluation data in aggregate only: no record, and no
// single client's figures.
type TrainingData struct {
	Schema     string `json:"schema"`
	SchemaHash string `json:"schema_hash,omitempty"`
	// Clients contributed to training (the largest cohort of the run); Records is the number of
	// training records they held (the federated statistics' count).
	Clients int     `json:"clients"`
	Records float64 `json:"records"`
	// ExcludedNoConsent counts records left out because their consent does not grant the
	// purpose; meaningful only when ConsentTracked.
	ExcludedNoConsent float64 `json:"excluded_no_consent"`
	ConsentTracked    bool    `json:"consent_tracked"`
	ConsentPurpose    string  `json:"consent_purpose"`
	// EvaluationClients and EvaluationRecords describe the final federated evaluation.
	EvaluationClients int     `json:"evaluation_clients"`
	EvaluationRecords float64 `json:"evaluation_records"`
}

// Feature is one feature column of the model.
type Feature struct {
	Name string       `json:"name"`
	Kind explain.Kind `json:"kind"`
	// Mean and Std are the pinned standardisation of a numeric feature.
	Mean float64 `json:"mean,omitempty"`
	Std  float64 `json:"std,omitempty"`
	// Values is the vocabulary of a categorical feature; Unseen its policy for other values.
	Values []string `json:"values,omitempty"`
	Unseen string   `json:"unseen,omitempty"`
	// Sensitive marks a sensitive attribute that is also a model input; Groups are its audit
	// groups (bands of a numeric attribute).
	Sensitive bool     `json:"sensitive"`
	Groups    []string `json:"groups,omitempty"`
	// Importance and Share are the feature's global importance (see Card.ImportanceMethod);
	// Importance is nil when none was measured.
	Importance *float64 `json:"importance,omitempty"`
	Share      *float64 `json:"share,omitempty"`
	// Gain and GainShare are a tree model's importance from its trees (see Card.GainMethod): the
	// total gain of its splits on the feature and its share of the total over all features.
	Gain      *float64 `json:"gain,omitempty"`
	GainShare *float64 `json:"gain_share,omitempty"`
}

// Performance holds the federated evaluations of the run's rounds and of this version.
type Performance struct {
	Rounds []RoundMetrics `json:"rounds"`
	Final  *FinalMetrics  `json:"final,omitempty"`
}

// RoundMetrics are one round's training aggregate and, when it was evaluated, its federated
// evaluation.
type RoundMetrics struct {
	Round        int              `json:"round"`
	Contributors int              `json:"contributors"`
	Examples     float64          `json:"examples"`
	TrainLoss    float64          `json:"train_loss"`
	Evaluation   *metrics.Summary `json:"evaluation,omitempty"`
	EvalClients  int              `json:"eval_clients,omitempty"`
}

// FinalMetrics are this version's federated evaluation on the clients' held-out rows.
type FinalMetrics struct {
	Summary metrics.Summary `json:"summary"`
	// AUCErrorBound bounds |AUC - exact AUC| (the AUC comes from score histograms); nil when
	// the histograms are not available.
	AUCErrorBound *float64 `json:"auc_error_bound,omitempty"`
	// AUCNoiseStd is the standard deviation differential-privacy noise gives the AUC (nil
	// when the counts are exact).
	AUCNoiseStd *float64 `json:"auc_noise_std,omitempty"`
	// Positives is the number of positive held-out rows (nil when not available).
	Positives *float64 `json:"positives,omitempty"`
	// Calibration is the table of equal-count score bands, and ExpectedCalibrationError the
	// row-weighted mean of |mean predicted - observed rate| over them (nil without a table).
	Calibration              []CalibrationBin `json:"calibration,omitempty"`
	ExpectedCalibrationError *float64         `json:"expected_calibration_error,omitempty"`
}

// Fairness is the fairness audit of this version and, when the run has a policy, its verdict.
type Fairness struct {
	Report  fairness.Report   `json:"report"`
	Verdict *fairness.Verdict `json:"verdict,omitempty"`
}

// Privacy is the differential-privacy guarantee of the training.
type Privacy struct {
	// Mechanism is "none" or the mechanism, e.g. "Gaussian mechanism, DP-FedAvg".
	Mechanism string `json:"mechanism"`
	// Level is what a guarantee protects: "client" (a whole client's data) or "record".
	Level string `json:"level,omitempty"`
	// Epsilon and Delta are the (epsilon, delta) guarantee spent by the run.
	Epsilon float64 `json:"epsilon,omitempty"`
	Delta   float64 `json:"delta,omitempty"`
	// ClipNorm and NoiseMultiplier are the clipping bound and the noise's standard deviation
	// over it.
	ClipNorm        float64 `json:"clip_norm,omitempty"`
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"`
	// Accountant names the accounting method, e.g. "Rényi DP, sampled Gaussian mechanism".
	Accountant string `json:"accountant,omitempty"`
	// Releases lists everything the run released with the epsilon each added (Build takes
	// them from the model document when not given).
	Releases []modelfile.Release `json:"releases,omitempty"`
	// EvaluationNoiseStd is the standard deviation of the noise on each count of an
	// evaluation release (0: exact counts).
	EvaluationNoiseStd float64 `json:"evaluation_noise_std,omitempty"`
}

// None reports whether training had no differential privacy.
func (p Privacy) None() bool { return p.Mechanism == "" || strings.EqualFold(p.Mechanism, "none") }

// PrivacyAudit is an empirical privacy audit: membership-inference attacks against the model on
// target records known to be in and out of its training data, and the lower bound on epsilon
// their success implies. It complements the accountant's epsilon, an upper bound: a sound
// guarantee never lies below what an attack shows.
type PrivacyAudit struct {
	// Method says how the model was attacked, in a sentence.
	Method string `json:"method"`
	// Targets were attacked, Members of them in the training data; Shadows is the number of
	// shadow models the likelihood-ratio attack was fitted on.
	Targets int           `json:"targets"`
	Members int           `json:"members"`
	Shadows int           `json:"shadows"`
	Attacks []AuditAttack `json:"attacks"`
	// EpsilonLowerBound is the largest lower bound of any attack, at Delta, holding with
	// probability Confidence.
	EpsilonLowerBound float64 `json:"epsilon_lower_bound"`
	Delta             float64 `json:"delta"`
	Confidence        float64 `json:"confidence"`
}

// AuditAttack is one attack's success: its AUC, its true-positive rate at low false-positive
// rates, and the largest epsilon lower bound it gives.
type AuditAttack struct {
	Name              string      `json:"name"`
	AUC               float64     `json:"auc"`
	Rates             []AuditRate `json:"rates"`
	EpsilonLowerBound float64     `json:"epsilon_lower_bound"`
}

// AuditRate is a true-positive rate at a false-positive rate.
type AuditRate struct {
	FPR float64 `json:"fpr"`
	TPR float64 `json:"tpr"`
}

// SecureAggregation is how the clients' sums were protected from the coordinator.
type SecureAggregation struct {
	// Mode is "none" (plaintext sums) or "he" (threshold homomorphic encryption).
	Mode string `json:"mode"`
	// Scheme describes the cryptosystem, e.g. "threshold CKKS (lattigo v5)".
	Scheme string `json:"scheme,omitempty"`
	// Parameters are its parameters, in display order.
	Parameters []Parameter `json:"parameters,omitempty"`
}

// Parameter is one named parameter value.
type Parameter struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Lineage says where the version comes from.
type Lineage struct {
	RunID          string `json:"run_id"`
	ConfigHash     string `json:"config_hash"`
	SchemaHash     string `json:"schema_hash,omitempty"`
	FedpropVersion string `json:"fedprop_version"`
	// ParentVersion is the version this one was trained from (0: none, the initial model).
	ParentVersion uint64 `json:"parent_version"`
	Strategy      string `json:"strategy,omitempty"`
	Rounds        int    `json:"rounds,omitempty"`
	Seed          uint64 `json:"seed"`
}

// Approval is the human decision on the version.
type Approval struct {
	// Status is StatusCandidate, StatusApproved or StatusRejected.
	Status string    `json:"status"`
	Actor  string    `json:"actor,omitempty"`
	Role   string    `json:"role,omitempty"`
	Time   time.Time `json:"time,omitzero"`
	Reason string    `json:"reason,omitempty"`
	// Override is true when the version was approved although the fairness policy flagged it.
	Override bool `json:"override,omitempty"`
	// AuditSeq and AuditHash identify the decision's entry in the audit log.
	AuditSeq  uint64 `json:"audit_seq,omitempty"`
	AuditHash string `json:"audit_hash,omitempty"`
}

// Input is what a card is built from. Model is required; everything else is optional and shown
// as not available when missing.
type Input struct {
	// Model is the version's model document.
	Model *modelfile.Document
	// IntendedUse defaults to DefaultIntendedUse(Model.Schema) when Purpose is empty.
	IntendedUse IntendedUse
	// Training describes the training data; Schema, ConsentTracked and ConsentPurpose default
	// from the model document when Schema is empty.
	Training TrainingData
	// Rounds are the run's rounds up to this version.
	Rounds []RoundMetrics
	// FinalEvaluation is the summed federated evaluation of this version; without it the card
	// uses the document's metrics, with no calibration.
	FinalEvaluation *metrics.EvalSums
	// CalibrationBins is the number of score bands; < 1 means DefaultCalibrationBins.
	CalibrationBins int
	// Fairness is the fairness audit of this version; Policy, when set, judges it.
	Fairness *fairness.Report
	Policy   *fairness.Policy
	// Importance is the features' global importance over the evaluation records (package
	// explain): for logistic regression the standard deviation of each feature's contribution,
	// for a tree model its mean |TreeSHAP value|. A tree model's gain importance comes from the
	// document's trees.
	Importance []explain.Importance
	// Privacy, SecureAggregation, Lineage and Approval are copied; an empty approval status means
	// StatusCandidate, an empty mechanism "none", an empty mode "none".
	Privacy           Privacy
	SecureAggregation SecureAggregation
	Lineage           Lineage
	Approval          Approval
	// Generated is when the card is made; zero means the model's creation time.
	Generated time.Time
	// PrivacyAudit is copied when set.
	PrivacyAudit *PrivacyAudit
}

// DefaultIntendedUse is the intended use of a fedprop propensity model over schema.
func DefaultIntendedUse(s *dataset.Schema) IntendedUse {
	target := s.Label.Column + " = " + s.Label.Positive
	return IntendedUse{
		Purpose: fmt.Sprintf("Rank existing customers by their estimated propensity (%s) so that marketing and "+
			"relationship teams can prioritise whom to contact for the product. The score is a probability "+
			"estimate for a customer population like the training data's; it supports a human decision about "+
			"whom to offer the product to and is not a decision in itself.", target),
		Users: []string{
			"Marketing and CRM analysts planning outreach campaigns",
			"Branch relationship managers prioritising contacts",
			"Model owners and model-risk reviewers monitoring the model",
		},
		OutOfScope: []string{
			"Credit, lending, pricing, insurance or employment decisions, or any decision with legal or similarly significant effect on a person",
			"Fully automated decisions without human review",
			"Customers or channels unlike the training population (other countries, products or time periods) without re-validation",
			"Scoring customers whose consent does not cover " + s.Consent.Purpose,
		},
		Limitations: []string{
			"A linear model on the encoded features: interactions between features are not captured.",
			"Scores are calibrated to the training population's base rate; a campaign population with another base rate needs recalibration before scores are read as probabilities.",
			"Group figures in the fairness audit are estimates: small groups give wide uncertainty.",
		},
	}
}

// Build makes the card of in.Model from the inputs.
func Build(in Input) (*Card, error) {
	doc := in.Model
	if doc == nil {
		return nil, fmt.Errorf("build model card: %w: no model document", ErrInvalid)
	}
	if err := doc.Validate(); err != nil {
		return nil, fmt.Errorf("build model card: %w: %w", ErrInvalid, err)
	}
	m, err := doc.Model()
	if err != nil {
		return nil, fmt.Errorf("build model card: %w: %w", ErrInvalid, err)
	}
	desc := m.Describe()
	s := doc.Schema
	c := &Card{
		Format: Format,
		Model: Model{
			Name: s.Name, Version: doc.Version, RunID: doc.RunID, Round: doc.Round, Created: doc.Created.UTC(),
			Algorithm: desc.Algorithm, Target: s.Label.Column + " = " + s.Label.Positive,
			Inputs: desc.Inputs, Intercept: desc.Intercept,
		},
		IntendedUse:       in.IntendedUse,
		TrainingData:      in.Training,
		Privacy:           in.Privacy,
		SecureAggregation: in.SecureAggregation,
		Lineage:           in.Lineage,
		Approval:          in.Approval,
		Generated:         in.Generated.UTC(),
		PrivacyAudit:      clonePrivacyAudit(in.PrivacyAudit),
	}
	if c.IntendedUse.Purpose == "" {
		c.IntendedUse = DefaultIntendedUse(s)
	}
	if c.TrainingData.Schema == "" {
		c.TrainingData.Schema = s.Name
		c.TrainingData.ConsentTracked = doc.ConsentTracked || s.Consent.Tracked
		c.TrainingData.ConsentPurpose = s.Consent.Purpose
		if c.TrainingData.Records == 0 {
			c.TrainingData.Records = doc.Examples
		}
		if c.TrainingData.ExcludedNoConsent == 0 {
			c.TrainingData.ExcludedNoConsent = doc.ExcludedNoConsent
		}
		if c.TrainingData.Clients == 0 {
			c.TrainingData.Clients = doc.Contributors
		}
	}
	if c.Generated.IsZero() {
		c.Generated = c.Model.Created
	}
	if c.Privacy.Mechanism == "" {
		c.Privacy.Mechanism = "none"
	}
	if p := doc.Privacy; p != nil && !c.Privacy.None() {
		if c.Privacy.Releases == nil {
			c.Privacy.Releases = slices.Clone(p.Releases)
		}
		if c.Privacy.EvaluationNoiseStd == 0 {
			c.Privacy.EvaluationNoiseStd = p.EvaluationNoiseStd
		}
	}
	if c.TrainingData.Clients == 0 {
		c.TrainingData.Clients = doc.Contributors
	}
	if c.SecureAggregation.Mode == "" {
		c.SecureAggregation.Mode = "none"
	}
	if c.Lineage.RunID == "" {
		c.Lineage.RunID = doc.RunID
	}
	switch c.Approval.Status {
	case "":
		c.Approval.Status = StatusCandidate
	case StatusCandidate, StatusApproved, StatusRejected:
	default:
		return nil, fmt.Errorf("build model card: %w: approval status %q is not %s, %s or %s", ErrInvalid, c.Approval.Status, StatusCandidate, StatusApproved, StatusRejected)
	}

	c.Features = features(s, doc.Standardization)
	if len(in.Importance) > 0 {
		c.ImportanceMethod = "standard deviation of the feature's contribution to the log-odds over the evaluation records"
		if m.Kind() == model.GBDT {
			c.ImportanceMethod = MeanAbsSHAPMethod
		}
		for _, m := range in.Importance {
			i := slices.IndexFunc(c.Features, func(f Feature) bool { return f.Name == m.Feature })
			if i < 0 {
				return nil, fmt.Errorf("build model card: %w: importance given for %q, which is not a feature", ErrInvalid, m.Feature)
			}
			c.Features[i].Importance, c.Features[i].Share = ptr(m.Importance), ptr(m.Share)
		}
	}
	if err := c.gainImportance(m); err != nil {
		return nil, fmt.Errorf("build model card: %w", err)
	}

	c.Performance.Rounds = slices.Clone(in.Rounds)
	slices.SortStableFunc(c.Performance.Rounds, func(a, b RoundMetrics) int { return a.Round - b.Round })
	switch {
	case in.FinalEvaluation != nil:
		bins := in.CalibrationBins
		if bins < 1 {
			bins = DefaultCalibrationBins
		}
		cal, err := Calibration(*in.FinalEvaluation, bins)
		if err != nil {
			return nil, fmt.Errorf("build model card: %w", err)
		}
		c.Performance.Final = &FinalMetrics{
			Summary: in.FinalEvaluation.Summary(), AUCErrorBound: ptr(in.FinalEvaluation.AUCErrorBound()),
			Positives: ptr(in.FinalEvaluation.Positives), Calibration: cal, ExpectedCalibrationError: ptr(expectedCalibrationError(cal)),
		}
		if sd := c.Privacy.EvaluationNoiseStd; sd > 0 {
			c.Performance.Final.AUCNoiseStd = ptr(in.FinalEvaluation.AUCNoiseStd(sd))
		}
		if c.TrainingData.EvaluationRecords == 0 {
			c.TrainingData.EvaluationRecords = in.FinalEvaluation.N
		}
	case doc.Metrics != nil:
		c.Performance.Final = &FinalMetrics{Summary: *doc.Metrics}
	}

	if in.Fairness != nil {
		c.Fairness = &Fairness{Report: *in.Fairness}
		if in.Policy != nil {
			v, err := in.Policy.Check(*in.Fairness)
			if err != nil {
				return nil, fmt.Errorf("build model card: %w", err)
			}
			c.Fairness.Verdict = &v
		}
	}
	if c.Approval.Override && (c.Fairness == nil || c.Fairness.Verdict == nil || !c.Fairness.Verdict.Flagged) {
		return nil, fmt.Errorf("build model card: %w: an override approves a flagged version, and this one is not flagged", ErrInvalid)
	}
	return c, nil
}

// MeanAbsSHAPMethod is a tree model's Card.ImportanceMethod.
const MeanAbsSHAPMethod = "mean |TreeSHAP value| over the evaluation records, from the clients' summed sums"

// GainMethod is Card.GainMethod of a tree model.
const GainMethod = "total split gain over the model's trees (the loss reduction of every split on the feature), from the trees themselves"

// gainImportancer is a model that states each column's total split gain, in Columns order:
// a tree model (*gbdt.Model).
type gainImportancer interface {
	model.Model
	GainImportance() []float64
}

// gainImportance fills each feature's gain and gain share from m when m states them (a tree
// model); a card of another model has none.
func (c *Card) gainImportance(m model.Model) error {
	g, ok := m.(gainImportancer)
	if !ok {
		return nil
	}
	gain, cols := g.GainImportance(), g.Columns()
	ranked := make([]explain.Importance, len(cols))
	for k, col := range cols {
		ranked[k] = explain.Importance{Feature: col.Name, Importance: gain[k]}
	}
	explain.Rank(ranked)
	c.GainMethod = GainMethod
	for _, r := range ranked {
		i := slices.IndexFunc(c.Features, func(f Feature) bool { return f.Name == r.Feature })
		if i < 0 {
			return fmt.Errorf("%w: the trees split on %q, which is not a feature of the schema", ErrInvalid, r.Feature)
		}
		c.Features[i].Gain, c.Features[i].GainShare = ptr(r.Importance), ptr(r.Share)
	}
	return nil
}

func features(s *dataset.Schema, std dataset.Standardization) []Feature {
	sensitive := map[string]dataset.SensitiveSpec{}
	for _, sa := range s.Sensitive {
		sensitive[sa.Column] = sa
	}
	var out []Feature
	for i, name := range s.Numeric {
		f := Feature{Name: name, Kind: explain.Numeric, Mean: std.Mean[i], Std: std.Std[i]}
		if sa, ok := sensitive[name]; ok {
			f.Sensitive, f.Groups = true, sa.BandLabels()
		}
		out = append(out, f)
	}
	for _, cs := range s.Categorical {
		f := Feature{Name: cs.Column, Kind: explain.Categorical, Values: slices.Clone(cs.Values), Unseen: string(cs.Policy())}
		if _, ok := sensitive[cs.Column]; ok {
			f.Sensitive, f.Groups = true, slices.Clone(cs.Values)
		}
		out = append(out, f)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func clonePrivacyAudit(a *PrivacyAudit) *PrivacyAudit {
	if a == nil {
		return nil
	}
	out := *a
	out.Attacks = slices.Clone(a.Attacks)
	for i := range out.Attacks {
		out.Attacks[i].Rates = slices.Clone(out.Attacks[i].Rates)
	}
	return &out
}

// Write writes the card as indented JSON.
func (c *Card) Write(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("write model card: %w", err)
	}
	return nil
}

// Decode reads a card written by Write.
func Decode(r io.Reader) (*Card, error) {
	var c Card
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("read model card: %w: %w", ErrInvalid, err)
	}
	if c.Format != Format {
		return nil, fmt.Errorf("read model card: %w: format %q is not %q", ErrInvalid, c.Format, Format)
	}
	return &c, nil
}
