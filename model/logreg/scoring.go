package logreg

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model"
)

// Model is a trained logistic regression together with the encoder its inputs come from: the
// logistic implementation of model.Model. Weights are the intercept, then one coefficient per
// encoded input.
type Model struct {
	weights []float64
	enc     *dataset.Encoder
	columns []model.Column
}

var _ model.Model = (*Model)(nil)

// NewModel returns the model of weights over enc's inputs. It checks the dimensions only, so
// that a document can be read and shown whatever its values; Validate also checks that every
// weight is finite. The weights are copied.
func NewModel(weights []float64, enc *dataset.Encoder) (*Model, error) {
	if enc == nil {
		return nil, fmt.Errorf("%w: no encoder", ErrDimension)
	}
	if len(weights) != enc.Dim()+1 {
		return nil, fmt.Errorf("%w: %d weights for %d input columns (want %d)", ErrDimension, len(weights), enc.Dim(), enc.Dim()+1)
	}
	m := &Model{weights: slices.Clone(weights), enc: enc}
	s := enc.Schema()
	for _, name := range s.Numeric {
		m.columns = append(m.columns, model.Column{Name: name, Kind: model.Numeric})
	}
	for _, c := range s.Categorical {
		m.columns = append(m.columns, model.Column{Name: c.Column, Kind: model.Categorical})
	}
	return m, nil
}

// Weights returns a copy of the intercept followed by the coefficients.
func (m *Model) Weights() []float64 { return slices.Clone(m.weights) }

// Encoder returns the encoder the model's inputs come from.
func (m *Model) Encoder() *dataset.Encoder { return m.enc }

// Kind is model.Logistic.
func (m *Model) Kind() model.Kind { return model.Logistic }

// Validate checks that every weight is finite (NewModel checked the dimensions).
func (m *Model) Validate() error { return CheckWeights(m.weights, m.enc.Dim()) }

// Columns returns the schema's feature columns: numeric ones, then categorical ones.
func (m *Model) Columns() []model.Column { return slices.Clone(m.columns) }

// Check reports whether ds has the encoder's row layout.
func (m *Model) Check(ds *dataset.Dataset) error { return m.enc.Check(ds) }

// Margin returns row i's log-odds, w[0] + w[1:]·x.
func (m *Model) Margin(ds *dataset.Dataset, i int) float64 {
	x := make([]float64, m.enc.Dim())
	m.enc.EncodeRow(ds, i, x)
	return logit(m.weights, x)
}

// Predict checks ds and returns every row's probability, as PredictAll computes it.
func (m *Model) Predict(ds *dataset.Dataset) ([]float64, error) {
	if err := m.enc.Check(ds); err != nil {
		return nil, err
	}
	if ds.Len() == 0 {
		return []float64{}, nil // Encode has no rows to give PredictAll
	}
	return PredictAll(m.weights, m.enc.Encode(ds), nil), nil
}

// PredictEncoded returns the probability of every row of X, rows the model's encoder made.
// A caller that keeps a dataset encoded across many models (a client evaluating every round)
// scores through it to the same bits as Predict without encoding again.
func (m *Model) PredictEncoded(X *mat.Dense) []float64 {
	return PredictAll(m.weights, X, nil)
}

// ExplainAll returns every row's effects: a numeric column's coefficient times its standardised
// value, a categorical column's coefficient of the row's category (0 for a category without
// an input of its own). Expected is the intercept; the margin adds the effects to it in
// column order.
func (m *Model) ExplainAll(ds *dataset.Dataset) ([]model.Explanation, error) {
	if err := m.enc.Check(ds); err != nil {
		return nil, err
	}
	row := make([]float64, m.enc.Dim())
	out := make([]model.Explanation, ds.Len())
	for i := range out {
		m.enc.EncodeRow(ds, i, row)
		out[i] = m.explainRow(ds, i, row)
	}
	return out, nil
}

// explainRow explains row i of ds, encoded in row.
func (m *Model) explainRow(ds *dataset.Dataset, i int, row []float64) model.Explanation {
	s := m.enc.Schema()
	e := model.Explanation{Expected: m.weights[0], Values: make([]float64, len(m.columns)), Margin: m.weights[0]}
	for k := range s.Numeric {
		e.Values[k] = m.weights[1+k] * row[k]
	}
	offset := len(s.Numeric)
	for j, c := range s.Categorical {
		if idx := int(ds.Category[i][j]); idx >= 0 && idx < c.Width() {
			e.Values[len(s.Numeric)+j] = m.weights[1+offset+idx]
		}
		offset += c.Width()
	}
	for _, v := range e.Values {
		e.Margin += v
	}
	return e
}

// Importance is each column's standard deviation of its effect over the explained rows: how
// much the column moves scores around their mean, whatever the reference.
func (m *Model) Importance(xs []model.Explanation) ([]float64, error) {
	if len(xs) == 0 {
		return nil, fmt.Errorf("importance: %w: no rows", model.ErrExplanations)
	}
	n := len(m.columns)
	sum, sumSq := make([]float64, n), make([]float64, n)
	for i, x := range xs {
		if len(x.Values) != n {
			return nil, fmt.Errorf("importance: %w: row %d has %d values, the model %d columns", model.ErrExplanations, i, len(x.Values), n)
		}
		for k, v := range x.Values {
			sum[k] += v
			sumSq[k] += v * v
		}
	}
	out := make([]float64, n)
	rows := float64(len(xs))
	for k := range out {
		mean := sum[k] / rows
		// Cancellation can leave a tiny negative variance for a constant effect.
		out[k] = math.Sqrt(max(sumSq[k]/rows-mean*mean, 0))
	}
	return out, nil
}

// Describe states "logistic regression" over the encoded inputs.
func (m *Model) Describe() model.Description {
	return model.Description{
		Algorithm: "logistic regression", Inputs: m.enc.Dim(), Intercept: m.weights[0],
		Attribution: "effects (coefficient times input)",
		Reference:   "the intercept: numeric features at the training population's mean (a standardised 0), categorical features against a coefficient of 0",
		Expected:    m.weights[0],
	}
}
