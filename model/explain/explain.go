// Package explain says why a propensity model scores a record as it does, and which features
// matter to it overall, for models whose log-odds is an intercept plus one effect per feature
// column, each depending on that column alone: logistic regression. Every model kind explains
// itself (model.Model.ExplainAll: a tree model with TreeSHAP); what this package adds is
// references built from category frequencies, and importance from sums that add up across
// clients, which need a column's effect to be separate from the others'. For another kind, New
// and For return an error that wraps ErrUnsupported.
//
// A logistic regression's log-odds is exactly the intercept plus one effect per feature column: for a numeric column, its coefficient times the record's
// standardised value; for a categorical column, the coefficient of the record's category (the
// one-hot input that is 1).
//
// An effect alone is a poor explanation: with every category coefficient of a column negative,
// every record would show its category as lowering its score, although the column only moves
// records relative to each other. So a contribution is measured against a Reference, a
// population's expected effect per column: a contribution is the record's effect minus the
// column's expected effect, and a record's contributions sum to its log-odds minus the
// reference's expected log-odds. For a numeric column the reference is the training
// population's mean, which the federated statistics pinned as the standardisation's mean: a
// standardised 0 and an expected effect of 0. For a categorical column it is the mean category
// effect weighted by how often each category occurs in a population (TrainingReference with
// category shares, EvaluationReference with the federated evaluation's sums). Explain lists, per
// record, the score and the contributions that raise and lower it most against the reference.
//
// Global importance is the standard deviation, over a set of records, of each column's
// effect on the log-odds: how much the column moves scores around their mean. For a
// numeric column it equals |coefficient| x the standard deviation of the standardised column
// (|coefficient| on the training data); for a categorical column it measures how different the
// coefficients of the categories actually present are, weighted by how often they occur. Unlike
// the mean absolute effect it ignores a shift shared by every record, which the intercept
// could equally carry, and so it does not depend on the reference. It is computed from sums
// (ImportanceSums: count, sum and sum of squares of each column's effect), so clients can report
// it in a federated evaluation like any other count; their Sum over N is each column's expected
// effect over the evaluation population.
package explain

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/release/modelfile"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrModel marks a model document that cannot be explained.
	ErrModel = errors.New("model cannot be explained")
	// ErrData marks data that does not fit the model.
	ErrData = errors.New("data does not fit the model")
	// ErrVector marks an ImportanceSums vector that cannot be decoded.
	ErrVector = errors.New("invalid importance sums vector")
	// ErrReference marks a reference, or the population behind one, that does not fit the model.
	ErrReference = errors.New("invalid reference")
	// ErrUnsupported marks a model whose log-odds is not one effect per feature column (a
	// tree model): it explains itself (model.Model.ExplainAll), without this package's
	// references and importance sums. It comes wrapped together with ErrModel.
	ErrUnsupported = errors.New("model kind has no per-column effects")
)

// Kind is a feature column's type.
type Kind string

// The feature kinds.
const (
	Numeric     Kind = "numeric"
	Categorical Kind = "categorical"
)

// Feature is one feature column of the model.
type Feature struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Offset and Width locate the column's model inputs (Width is 1 for a numeric column, the
	// one-hot width for a categorical one).
	Offset int `json:"offset"`
	Width  int `json:"width"`
}

// Contribution is one feature column's part in a record's log-odds.
type Contribution struct {
	Feature string `json:"feature"`
	// Value is the record's raw value: the number as read, or the category
	// (dataset.OtherCategory for a value in the "other" bucket).
	Value string `json:"value"`
	// Encoded is the model input: the standardised number, or 1 for a category.
	Encoded float64 `json:"encoded"`
	// Effect is the column's term in the log-odds: coefficient times Encoded.
	Effect float64 `json:"effect"`
	// Contribution is Effect minus the column's expected effect in the explainer's Reference:
	// how much this record's value moves its log-odds away from the reference's.
	Contribution float64 `json:"contribution"`
}

// Explanation is one record's score and the contributions that raise and lower it most.
type Explanation struct {
	// Line is the record's line in its source file (0 for rows made in memory).
	Line int `json:"line"`
	// Score is the predicted probability of the positive label.
	Score float64 `json:"score"`
	// LogOdds is Intercept plus the sum of every column's effect, which is also
	// ExpectedLogOdds plus the sum of every column's contribution.
	LogOdds   float64 `json:"log_odds"`
	Intercept float64 `json:"intercept"`
	// ExpectedLogOdds is the reference's log-odds (Reference.ExpectedLogOdds), the point the
	// contributions are measured from.
	ExpectedLogOdds float64 `json:"expected_log_odds"`
	// Raised holds the largest positive contributions, largest first; Lowered the largest
	// negative ones, most negative first.
	Raised  []Contribution `json:"raised"`
	Lowered []Contribution `json:"lowered"`
}

// Explainer explains one model's scores. It is immutable and safe for concurrent use.
type Explainer struct {
	enc      *dataset.Encoder
	weights  []float64
	features []Feature
	ref      Reference
}

// columnwise is a model whose log-odds is an intercept (Weights()[0]) plus one coefficient
// per input of its encoder: the models whose effects this package separates by column.
// *logreg.Model is one.
type columnwise interface {
	model.Model
	Weights() []float64
	Encoder() *dataset.Encoder
}

// New returns an Explainer for a validated model document with finite weights. Its reference
// is ZeroReference, the only one the document alone gives (it carries no category frequencies);
// WithReference measures against a population instead.
func New(doc *modelfile.Document) (*Explainer, error) {
	if doc == nil {
		return nil, fmt.Errorf("%w: no model document", ErrModel)
	}
	if err := doc.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModel, err)
	}
	m, err := doc.Model()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModel, err)
	}
	return For(m)
}

// For returns an Explainer for a model with per-column effects and finite weights (see New);
// any other kind is an error wrapping ErrModel and ErrUnsupported.
func For(m model.Model) (*Explainer, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: no model", ErrModel)
	}
	lin, ok := m.(columnwise)
	if !ok {
		return nil, fmt.Errorf("%w: %w: a %s model: its explanations are its own (model.Model.ExplainAll)", ErrModel, ErrUnsupported, m.Kind())
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModel, err)
	}
	enc := lin.Encoder()
	s := enc.Schema()
	x := &Explainer{enc: enc, weights: lin.Weights()}
	for i, name := range s.Numeric {
		x.features = append(x.features, Feature{Name: name, Kind: Numeric, Offset: i, Width: 1})
	}
	offset := len(s.Numeric)
	for _, c := range s.Categorical {
		x.features = append(x.features, Feature{Name: c.Column, Kind: Categorical, Offset: offset, Width: c.Width()})
		offset += c.Width()
	}
	x.ref = x.ZeroReference()
	return x, nil
}

// Intercept is the model's intercept: the log-odds of a record whose every effect is 0.
func (x *Explainer) Intercept() float64 { return x.weights[0] }

// Features returns the model's feature columns, numeric ones first, in schema order.
func (x *Explainer) Features() []Feature { return slices.Clone(x.features) }

// Contributions returns every feature column's contribution to row i's log-odds against the
// explainer's reference, in Features order, and the log-odds. i must be a row of ds, which
// must follow the model's schema.
func (x *Explainer) Contributions(ds *dataset.Dataset, i int) ([]Contribution, float64, error) {
	if err := x.enc.Check(ds); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrData, err)
	}
	if i < 0 || i >= ds.Len() {
		return nil, 0, fmt.Errorf("%w: row %d of %d", ErrData, i, ds.Len())
	}
	row := make([]float64, x.enc.Dim())
	return x.contributions(ds, i, row)
}

// contributions is Contributions with a caller-owned input buffer.
func (x *Explainer) contributions(ds *dataset.Dataset, i int, row []float64) ([]Contribution, float64, error) {
	x.enc.EncodeRow(ds, i, row)
	s := x.enc.Schema()
	out := make([]Contribution, len(x.features))
	logOdds := x.weights[0]
	for k, f := range x.features {
		c := Contribution{Feature: f.Name}
		if f.Kind == Numeric {
			c.Value = strconv.FormatFloat(ds.Numeric[i][k], 'g', -1, 64)
			c.Encoded = row[f.Offset]
			c.Effect = x.weights[1+f.Offset] * row[f.Offset]
		} else {
			j := k - len(s.Numeric)
			idx := int(ds.Category[i][j])
			switch {
			case idx >= 0 && idx < len(s.Categorical[j].Values):
				c.Value = s.Categorical[j].Values[idx]
			default:
				c.Value = dataset.OtherCategory
			}
			if idx >= 0 && idx < f.Width {
				c.Encoded = 1
				c.Effect = x.weights[1+f.Offset+idx]
			}
		}
		c.Contribution = c.Effect - x.ref.Expected[k]
		logOdds += c.Effect
		out[k] = c
	}
	return out, logOdds, nil
}

// Explain explains every row of ds, keeping the top largest raising and lowering contributions
// of each (all of them when top < 1).
func (x *Explainer) Explain(ds *dataset.Dataset, top int) ([]Explanation, error) {
	if err := x.enc.Check(ds); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrData, err)
	}
	row := make([]float64, x.enc.Dim())
	out := make([]Explanation, ds.Len())
	for i := range ds.Len() {
		contrib, logOdds, err := x.contributions(ds, i, row)
		if err != nil {
			return nil, err
		}
		e := Explanation{Score: model.Sigmoid(logOdds), LogOdds: logOdds, Intercept: x.weights[0], ExpectedLogOdds: x.ref.ExpectedLogOdds}
		if i < len(ds.Line) {
			e.Line = ds.Line[i]
		}
		e.Raised, e.Lowered = split(contrib, top)
		out[i] = e
	}
	return out, nil
}

// split returns the positive contributions, largest first, and the negative ones, most negative
// first, at most top of each (all when top < 1). Ties keep schema order.
func split(contrib []Contribution, top int) (raised, lowered []Contribution) {
	raised, lowered = []Contribution{}, []Contribution{}
	for _, c := range contrib {
		switch {
		case c.Contribution > 0:
			raised = append(raised, c)
		case c.Contribution < 0:
			lowered = append(lowered, c)
		}
	}
	slices.SortStableFunc(raised, func(a, b Contribution) int { return cmp.Compare(b.Contribution, a.Contribution) })
	slices.SortStableFunc(lowered, func(a, b Contribution) int { return cmp.Compare(a.Contribution, b.Contribution) })
	if top > 0 {
		raised, lowered = raised[:min(top, len(raised))], lowered[:min(top, len(lowered))]
	}
	return raised, lowered
}
