// Package model is what every model kind offers the code that uses a trained model: scoring,
// the margin, per-record explanation, global importance, validation and the model card's
// description. Logistic regression (*logreg.Model) and gradient-boosted trees (*gbdt.Model)
// implement Model; release/modelfile reads either from a model document, and the code that
// scores, explains, evaluates and describes a model goes through the interface instead of
// asking which kind it holds.
//
// The package sits below the kinds: it imports dataset only, and model/logreg and model/gbdt
// import it for the types their methods return. Training is not part of Model: each kind's
// exchanges differ (weight updates, histograms), and the roles drive them directly.
package model

import (
	"errors"
	"fmt"
	"math"

	"github.com/fedprop/fedprop/dataset"
)

// Kind names a model kind as run.model.kind spells it.
type Kind string

// The model kinds.
const (
	Logistic Kind = "logistic"
	GBDT     Kind = "gbdt"
)

// ColumnKind is a feature column's type.
type ColumnKind string

// The column kinds.
const (
	Numeric     ColumnKind = "numeric"
	Categorical ColumnKind = "categorical"
)

// Column is one raw feature column a model reads: what an Explanation's values are for.
type Column struct {
	Name string
	Kind ColumnKind
}

// Explanation is one record's additive explanation: Expected plus the sum of Values is Margin,
// the record's log-odds. What Expected is depends on the kind's reference (see
// Model.ExplainAll); Relative measures the same values against another one.
// (It is also gbdt.Explanation, whose JSON it keeps.)
type Explanation struct {
	// Expected is the margin the values are measured from.
	Expected float64 `json:"expected"`
	// Values holds each column's contribution to the margin, in Model.Columns order.
	Values []float64 `json:"values"`
	// Margin is the record's log-odds.
	Margin float64 `json:"margin"`
}

// Description is what a model card states about a model's algorithm.
type Description struct {
	// Algorithm names the algorithm and the settings a reader needs to reproduce it.
	Algorithm string
	// Inputs is the number of model inputs: encoded columns (logistic regression) or raw
	// features (trees).
	Inputs int
	// Intercept is the margin before any input: the intercept, or a tree model's base score.
	Intercept float64
	// Trees is the number of trees of an ensemble (0 for a kind without trees).
	Trees int
	// Attribution names the method of ExplainAll, Reference what its values are measured
	// from, and Expected the margin there (when it does not depend on the record).
	Attribution string
	Reference   string
	Expected    float64
}

// Model is a trained binary classifier of any kind, as scoring, explanation, evaluation,
// export and the model card see it. Implementations are immutable once built and safe for
// concurrent use.
type Model interface {
	// Kind is the model's kind.
	Kind() Kind
	// Validate checks everything scoring and explaining rely on: dimensions that agree and
	// finite values. A model that comes from outside the process goes through it first; the
	// other methods treat an invalid model as a programming error.
	Validate() error
	// Columns are the raw feature columns the model reads, in the order of an
	// Explanation's values: numeric ones first, then categorical ones, each in schema order.
	Columns() []Column
	// Check reports whether ds's rows have the layout the model reads: a tree model checks
	// the columns' names, order and vocabularies, logistic regression its encoder's layout
	// (dataset.Encoder.Check).
	Check(ds *dataset.Dataset) error
	// Margin returns row i's log-odds; ds must pass Check.
	Margin(ds *dataset.Dataset, i int) float64
	// Predict checks ds and returns every row's probability of the positive label.
	Predict(ds *dataset.Dataset) ([]float64, error)
	// ExplainAll checks ds and explains every row against the kind's own reference: logistic
	// regression's is the intercept with every feature at an effect of 0 (numeric features
	// at the training mean, categories against a coefficient of 0), so that a value is the
	// feature's effect; a tree model's is its expectation over the training rows (exact
	// path-dependent TreeSHAP).
	ExplainAll(ds *dataset.Dataset) ([]Explanation, error)
	// Importance is each column's global importance over the rows xs explains (ExplainAll's
	// output), in Columns order: how much the feature moves scores. Logistic regression
	// states the standard deviation of the column's effect, which no reference changes;
	// a tree model the mean |SHAP value|, as TreeSHAP's authors do.
	Importance(xs []Explanation) ([]float64, error)
	// Describe states the algorithm for the model card.
	Describe() Description
}

// Sentinel errors, checked with errors.Is.
var (
	// ErrReference marks expected values that do not fit an explanation.
	ErrReference = errors.New("invalid reference")
	// ErrExplanations marks explanations that are not a model's: none, or values for
	// another number of features.
	ErrExplanations = errors.New("explanations do not fit the model")
)

// Relative returns e measured against another reference: expected holds each feature's
// expected contribution (in Values order) under e's reference, and the result's values are
// e's minus them, its Expected e's plus their sum. Margin does not change: a reference moves
// where an explanation starts, not where it ends.
func (e Explanation) Relative(expected []float64) (Explanation, error) {
	if len(expected) != len(e.Values) {
		return Explanation{}, fmt.Errorf("%w: %d expected values for %d features", ErrReference, len(expected), len(e.Values))
	}
	out := Explanation{Expected: e.Expected, Values: make([]float64, len(e.Values)), Margin: e.Margin}
	for k, v := range e.Values {
		if math.IsNaN(expected[k]) || math.IsInf(expected[k], 0) {
			return Explanation{}, fmt.Errorf("%w: expected value %d is %v", ErrReference, k, expected[k])
		}
		out.Values[k] = v - expected[k]
		out.Expected += expected[k]
	}
	return out, nil
}

// Sigmoid is the probability of a margin, 1/(1+exp(-z)), evaluated on the side where exp
// cannot overflow.
func Sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}
