// Package modelfile is the model document a model owner pulls: the global weights with their
// feature names, and everything needed to score a record exactly as training encoded it (the
// schema and the pinned standardisation), plus the version's metrics and provenance.
package modelfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
)

// Format identifies the document layout; readers refuse formats they do not know.
const Format = "fedprop.model/v1"

// Document is a pulled model.
type Document struct {
	Format  string    `json:"format"`
	Version uint64    `json:"version"`
	RunID   string    `json:"run_id"`
	Round   int       `json:"round"`
	Created time.Time `json:"created"`

	// Intercept and Coefficients (one per feature, in Features order) of the logistic model.
	Intercept    float64   `json:"intercept"`
	Coefficients []float64 `json:"coefficients"`
	Features     []string  `json:"features"`
	// Trees is a gradient-boosted-trees model: the document then scores with it, and has no
	// coefficients. Its features and their standardisation are its own (the same as the
	// document's Standardization).
	Trees *gbdt.Model `json:"trees,omitempty"`

	Schema          *dataset.Schema         `json:"schema"`
	Standardization dataset.Standardization `json:"standardization"`

	Metrics      *metrics.Summary `json:"metrics,omitempty"`
	TrainLoss    float64          `json:"train_loss"`
	Contributors int              `json:"contributors"`
	Examples     float64          `json:"examples"`

	ConsentTracked    bool    `json:"consent_tracked"`
	ExcludedNoConsent float64 `json:"excluded_no_consent"`

	// Privacy is the differential-privacy guarantee (nil: the run used none).
	Privacy *Privacy `json:"privacy,omitempty"`
	// SecureAggregation says how the clients' sums were protected from the coordinator.
	SecureAggregation SecureAggregation `json:"secure_aggregation"`
}

// Privacy is a model's differential-privacy guarantee: the mechanism, its parameters, every
// release of the run up to this version with what it cost, and the (epsilon, delta) they spent
// together.
type Privacy struct {
	// Mechanism is "client" (DP-FedAvg) or "record" (DP-SGD).
	Mechanism       string    `json:"mechanism"`
	NoiseMultiplier float64   `json:"noise_multiplier"`
	ClipNorm        float64   `json:"clip_norm"`
	ClipSchedule    []float64 `json:"clip_schedule,omitempty"`
	AdaptiveClip    bool      `json:"adaptive_clipping,omitempty"`
	SamplingRate    float64   `json:"sampling_rate"`
	// Steps composed: rounds (client) or the worst client's DP-SGD steps (record).
	Steps int `json:"steps"`
	// EvaluationNoiseMultiplier is z of each federated evaluation release: Gaussian noise of
	// z times what one record (client level: one client) can add to each value.
	EvaluationNoiseMultiplier float64 `json:"evaluation_noise_multiplier,omitempty"`
	// EvaluationNoiseStd is the standard deviation of that noise on each count of an
	// evaluation release (what a reader of the figures needs to weigh them).
	EvaluationNoiseStd float64 `json:"evaluation_noise_std,omitempty"`
	// Epsilon is everything released so far composed in one accountant: statistics,
	// training rounds and evaluations (Releases).
	Epsilon    float64 `json:"epsilon"`
	Delta      float64 `json:"delta"`
	Conversion string  `json:"conversion"`
	Budget     float64 `json:"budget_epsilon,omitempty"`
	// Releases lists, in order, everything the run derived from the clients' data and released
	// to the coordinator and the model's readers, each with the epsilon it added.
	Releases []Release `json:"releases,omitempty"`
}

// Kinds of Release.
const (
	ReleaseStatistics = "statistics"
	ReleaseTrain      = "train"
	ReleaseEvaluate   = "evaluate"
)

// Mechanisms of Release.
const (
	// MechanismPublicBounds: nothing was read from the data (standardisation from the schema's
	// public bounds).
	MechanismPublicBounds = "public bounds"
	// MechanismDPSGD: DP-SGD at each client (record level).
	MechanismDPSGD = "DP-SGD"
	// MechanismGaussian: Gaussian noise on the sum (client-level training rounds, evaluations).
	MechanismGaussian = "Gaussian"
	// MechanismTreeHistograms: Gaussian noise on each client's sketch and gradient and
	// hessian histograms (record level, a tree's levels); Steps counts them.
	MechanismTreeHistograms = "Gaussian histograms"
)

// Release is one thing a differentially private run released, and what it cost.
type Release struct {
	// Kind is ReleaseStatistics, ReleaseTrain or ReleaseEvaluate; Round its round (0 for the
	// statistics).
	Kind  string `json:"kind"`
	Round int    `json:"round"`
	// Mechanism is one of the Mechanism constants; NoiseMultiplier, SamplingRate and Steps its
	// parameters (the noise actually present, when fewer contributors arrived than expected).
	Mechanism       string  `json:"mechanism"`
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"`
	SamplingRate    float64 `json:"sampling_rate,omitempty"`
	Steps           int     `json:"steps,omitempty"`
	// Epsilon is what the release added to the composed epsilon (0 when it read no data), and
	// Cumulative the composed epsilon after it, at the run's delta: under Renyi composition
	// the epsilons of the releases add up to the total, but no release spends its Epsilon
	// alone.
	Epsilon    float64 `json:"epsilon"`
	Cumulative float64 `json:"cumulative_epsilon"`
}

// SecureAggregation is how a model's sums were protected.
type SecureAggregation struct {
	// Mode is "none" (plaintext sums) or "he" (threshold multiparty CKKS).
	Mode            string `json:"mode"`
	CommitteeSize   int    `json:"committee_size,omitempty"`
	Threshold       int    `json:"threshold,omitempty"`
	MinContributors int    `json:"min_contributors,omitempty"`
	// Parameters names the CKKS parameters (ring degree, moduli, scale).
	Parameters string `json:"parameters,omitempty"`
}

// Weights returns the intercept followed by the coefficients, the layout package model uses.
func (d *Document) Weights() []float64 {
	return append([]float64{d.Intercept}, d.Coefficients...)
}

// Validate checks that the document can score: a known format, a schema, dimensions that
// agree (see Model) and a model whose values are valid (model.Model.Validate).
func (d *Document) Validate() error {
	if d.Format != Format {
		return fmt.Errorf("model document format %q is not %q", d.Format, Format)
	}
	if d.Schema == nil {
		return errors.New("model document has no schema")
	}
	m, err := d.Model()
	if err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("model document: %w", err)
	}
	return nil
}

// Model returns the model the document holds: its trees (*gbdt.Model), else its
// coefficients over the encoding of its schema and standardisation (*logreg.Model). It
// checks that the document's parts agree (no coefficients beside trees, a coefficient per
// feature, a feature per encoded input) but not the model's values: Validate does both.
//
// This is where the document's JSON layout, which must stay as documents on disk have it,
// becomes a model.Model: the one place that asks which fields hold the model.
func (d *Document) Model() (model.Model, error) {
	if d.Schema == nil {
		return nil, errors.New("model document has no schema")
	}
	if d.Trees != nil {
		if len(d.Coefficients) != 0 {
			return nil, fmt.Errorf("model document has both trees and %d coefficients", len(d.Coefficients))
		}
		// The trees standardise with their own copy of the standardisation; the document's
		// must still be one the schema can encode with.
		if _, err := d.Encoder(); err != nil {
			return nil, err
		}
		return d.Trees, nil
	}
	if len(d.Coefficients) != len(d.Features) {
		return nil, fmt.Errorf("model document has %d coefficients for %d features", len(d.Coefficients), len(d.Features))
	}
	enc, err := d.Encoder()
	if err != nil {
		return nil, err
	}
	if enc.Dim() != len(d.Features) {
		return nil, fmt.Errorf("model document's schema encodes %d features, the weights have %d", enc.Dim(), len(d.Features))
	}
	m, err := logreg.NewModel(d.Weights(), enc)
	if err != nil {
		return nil, fmt.Errorf("model document: %w", err)
	}
	return m, nil
}

// ErrModelKind marks a model that a document has no place for: a kind other than logistic
// regression and gradient-boosted trees.
var ErrModelKind = errors.New("model kind has no place in a model document")

// SetModel puts m in the document's model fields, the inverse of Model: a tree model under
// Trees, without coefficients or feature names (the trees name their own features); a
// logistic regression as its intercept, its coefficients and its encoder's feature names.
// Like Model, it is where the document's fixed JSON layout meets model.Model, and the only
// place that places a kind.
func (d *Document) SetModel(m model.Model) error {
	switch m := m.(type) {
	case *gbdt.Model:
		if m == nil {
			break
		}
		d.Trees, d.Intercept, d.Coefficients, d.Features = m, 0, nil, nil
		return nil
	case *logreg.Model:
		if m == nil {
			break
		}
		w := m.Weights()
		d.Trees, d.Intercept, d.Coefficients, d.Features = nil, w[0], w[1:], m.Encoder().FeatureNames()
		return nil
	}
	return fmt.Errorf("%w: %T", ErrModelKind, m)
}

// Encoder is the encoder the model was trained with.
func (d *Document) Encoder() (*dataset.Encoder, error) {
	enc, err := dataset.NewEncoder(d.Schema, d.Standardization)
	if err != nil {
		return nil, fmt.Errorf("model document: %w", err)
	}
	return enc, nil
}

// Score returns the predicted probability for every row of ds (nil for no rows).
func (d *Document) Score(ds *dataset.Dataset) ([]float64, error) {
	m, err := d.Model()
	if err != nil {
		return nil, err
	}
	if ds.Len() == 0 {
		return nil, nil
	}
	return m.Predict(ds)
}

// Write writes the document as indented JSON.
func (d *Document) Write(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

// MaxDocumentBytes bounds a model document Decode reads: far above any logistic model
// (a few kilobytes per hundred features), far below what would hurt the reader's memory.
const MaxDocumentBytes = 64 << 20

// ErrInvalidDocument marks a document Decode refuses for its content: more than one JSON
// value, or larger than MaxDocumentBytes. (JSON syntax and type errors keep their own types;
// a schema that does not validate wraps dataset.ErrInvalidSchema.)
var ErrInvalidDocument = errors.New("invalid model document")

// Decode reads and validates a document: exactly one JSON value, at most MaxDocumentBytes.
func Decode(r io.Reader, name string) (*Document, error) {
	var d Document
	lr := &io.LimitedReader{R: r, N: MaxDocumentBytes + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("read model %s: %w: larger than %d bytes", name, ErrInvalidDocument, MaxDocumentBytes)
		}
		return nil, fmt.Errorf("read model %s: %w", name, err)
	}
	// One document, nothing after it: trailing bytes would be a second, unread document.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if lr.N <= 0 {
			return nil, fmt.Errorf("read model %s: %w: larger than %d bytes", name, ErrInvalidDocument, MaxDocumentBytes)
		}
		return nil, fmt.Errorf("read model %s: %w: data after the document", name, ErrInvalidDocument)
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("read model %s: %w", name, err)
	}
	return &d, nil
}

// Load reads and validates the document at path.
func Load(path string) (*Document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	defer f.Close()
	return Decode(f, path)
}
