package gbdt

import (
	"fmt"
	"math"

	"github.com/fedprop/fedprop/model"
)

// This file makes *Model a model.Model: the methods scoring, explanation, evaluation and the
// model card use whatever the kind. Margin, Predict, Check, Validate and ExplainAll are in
// model.go and shap.go.

var _ model.Model = (*Model)(nil)

// Kind is model.GBDT.
func (m *Model) Kind() model.Kind { return model.GBDT }

// Columns returns the model's features as columns, in Features order (numeric ones first,
// then categorical ones, each in schema order, as NewBinner makes them).
func (m *Model) Columns() []model.Column {
	out := make([]model.Column, len(m.Features))
	for i, f := range m.Features {
		out[i] = model.Column{Name: f.Name, Kind: model.Numeric}
		if f.Kind == Categorical {
			out[i].Kind = model.Categorical
		}
	}
	return out
}

// Importance is each feature's mean |SHAP value| over the explained rows, as MeanAbsSHAP
// computes it from AbsSHAPSums: the sum over the rows in order, over their number.
func (m *Model) Importance(xs []model.Explanation) ([]float64, error) {
	if len(xs) == 0 {
		return nil, fmt.Errorf("importance: %w: no rows", model.ErrExplanations)
	}
	out := make([]float64, len(m.Features))
	for i, x := range xs {
		if len(x.Values) != len(out) {
			return nil, fmt.Errorf("importance: %w: row %d has %d values, the model %d features", model.ErrExplanations, i, len(x.Values), len(out))
		}
		for f, v := range x.Values {
			out[f] += math.Abs(v)
		}
	}
	for f := range out {
		out[f] /= float64(len(xs))
	}
	return out, nil
}

// Describe states the ensemble's shape and the parameters that made it; the base score is
// the card's intercept.
func (m *Model) Describe() model.Description {
	return model.Description{
		Algorithm: fmt.Sprintf("gradient-boosted trees (%d trees of depth at most %d, learning rate %g, lambda %g, %d bins; base score the intercept)",
			len(m.Trees), m.Params.MaxDepth, m.Params.LearningRate, m.Params.Lambda, m.Params.Bins),
		Inputs:    len(m.Features),
		Intercept: m.BaseScore,
		Trees:     len(m.Trees),
		// The reference as `fedprop model explain` has always worded it.
		Attribution: "TreeSHAP",
		Reference:   "the model's expectation over its training rows (every tree's leaves weighted by the rows that reached them): exact path-dependent TreeSHAP",
		Expected:    m.ExpectedValue(),
	}
}
