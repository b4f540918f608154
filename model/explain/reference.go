package explain

import (
	"fmt"
	"math"
	"slices"

	"github.com/fedprop/fedprop/dataset"
)

// Reference is the population a record's contributions are measured against: each feature
// column's expected effect on the log-odds over that population. A contribution is the record's
// effect minus its column's expected effect, so a record's contributions sum to its log-odds
// minus ExpectedLogOdds, and a record that looks like the population's average in a column gets
// a contribution of about 0 there, whatever the sign of the column's coefficients.
type Reference struct {
	// Description names the population, as the output shows it.
	Description string `json:"description"`
	// Expected holds each column's expected effect, in Features order.
	Expected []float64 `json:"expected"`
	// ExpectedLogOdds is the model's intercept plus the sum of Expected: the log-odds the
	// contributions are measured from.
	ExpectedLogOdds float64 `json:"expected_log_odds"`
}

// The descriptions of the references this package builds; TrainingReference and
// EvaluationReference add the population their category weights come from.
const (
	numericAtTrainingMean = "numeric features at the training population's mean (the federated statistics' standardisation, a standardised 0)"
	zeroDescription       = numericAtTrainingMean + "; categorical features against a coefficient of 0, not against a population (no category frequencies known)"
)

// CategoryShares are, per categorical column in schema order, the fraction of a population's
// records in each of the column's one-hot inputs: its Values in order, then the "other" bucket
// when the column has one (dataset.CategoricalSpec.Width entries). Records in none of them
// (a category the encoding has no input for) have no effect and make up the rest of 1.
type CategoryShares [][]float64

// shareTolerance is how far above 1 a column's shares may add up: rounding in a sum of counts
// divided by their total, not a population that is larger than itself.
const shareTolerance = 1e-9

// ZeroReference measures every column against an expected effect of 0: numeric columns against
// the training mean (their effect there is 0), categorical columns against a coefficient of 0,
// so a category's contribution is its own coefficient. It is New's reference because a model
// document carries no category frequencies; its Description says so.
func (x *Explainer) ZeroReference() Reference {
	return Reference{Description: zeroDescription, Expected: make([]float64, len(x.features)), ExpectedLogOdds: x.weights[0]}
}

// Reference is the explainer's reference.
func (x *Explainer) Reference() Reference {
	r := x.ref
	r.Expected = slices.Clone(r.Expected)
	return r
}

// WithReference returns an explainer that measures contributions against r, which must hold a
// finite expected effect for every feature column. x is unchanged.
func (x *Explainer) WithReference(r Reference) (*Explainer, error) {
	if len(r.Expected) != len(x.features) {
		return nil, fmt.Errorf("%w: reference with %d expected effects, the model has %d feature columns", ErrReference, len(r.Expected), len(x.features))
	}
	logOdds := x.weights[0]
	for k, e := range r.Expected {
		if math.IsNaN(e) || math.IsInf(e, 0) {
			return nil, fmt.Errorf("%w: expected effect of %s is %v", ErrReference, x.features[k].Name, e)
		}
		logOdds += e
	}
	y := *x
	y.ref = Reference{Description: r.Description, Expected: slices.Clone(r.Expected), ExpectedLogOdds: logOdds}
	return &y, nil
}

// TrainingReference is the reference of the training population: numeric columns at its mean
// (a standardised 0, since the standardisation is the federated statistics' mean), each
// categorical column at its category coefficients weighted by shares. The shares should be the
// training population's too; a model document does not carry them yet, so a caller may give
// another population's (CategorySharesOf the records explained), and source, which the
// Description quotes, must say which.
func (x *Explainer) TrainingReference(shares CategoryShares, source string) (Reference, error) {
	cats := x.categorical()
	if len(shares) != len(cats) {
		return Reference{}, fmt.Errorf("%w: category shares for %d columns, the model has %d categorical columns", ErrReference, len(shares), len(cats))
	}
	expected := make([]float64, len(x.features))
	for j, k := range cats {
		f := x.features[k]
		if len(shares[j]) != f.Width {
			return Reference{}, fmt.Errorf("%w: %s: %d category shares, the column has %d one-hot inputs", ErrReference, f.Name, len(shares[j]), f.Width)
		}
		total := 0.0
		for c, p := range shares[j] {
			if math.IsNaN(p) || p < 0 || p > 1 {
				return Reference{}, fmt.Errorf("%w: %s: share %d is %v, not in [0, 1]", ErrReference, f.Name, c, p)
			}
			total += p
			expected[k] += p * x.weights[1+f.Offset+c]
		}
		if total > 1+shareTolerance {
			return Reference{}, fmt.Errorf("%w: %s: the shares add up to %v, more than 1", ErrReference, f.Name, total)
		}
	}
	return x.reference(numericAtTrainingMean+"; categorical features at their mean category effect weighted by "+source, expected), nil
}

// EvaluationReference is a reference whose categorical columns are at their mean effect over
// the population that s sums (Sum over N: the category coefficients weighted by how often each
// category occurs there), as a federated evaluation of this very model reports them; numeric
// columns stay at the training mean. Sums made with another model's weights give another
// model's expected effects. source names the population, for the Description.
func (x *Explainer) EvaluationReference(s ImportanceSums, source string) (Reference, error) {
	if len(s.Sum) != len(x.features) {
		return Reference{}, fmt.Errorf("%w: importance sums for %d feature columns, the model has %d", ErrReference, len(s.Sum), len(x.features))
	}
	if !(s.N > 0) || math.IsInf(s.N, 0) {
		return Reference{}, fmt.Errorf("%w: importance sums over %v rows", ErrReference, s.N)
	}
	expected := make([]float64, len(x.features))
	for _, k := range x.categorical() {
		expected[k] = s.Sum[k] / s.N
		if math.IsNaN(expected[k]) || math.IsInf(expected[k], 0) {
			return Reference{}, fmt.Errorf("%w: expected effect of %s is %v", ErrReference, x.features[k].Name, expected[k])
		}
	}
	return x.reference(numericAtTrainingMean+"; categorical features at their mean category effect over "+source, expected), nil
}

// CategorySharesOf counts how often each category occurs among ds's rows: the shares a
// TrainingReference over ds's population needs. ds must follow the model's schema and hold at
// least one row.
func (x *Explainer) CategorySharesOf(ds *dataset.Dataset) (CategoryShares, error) {
	if err := x.enc.Check(ds); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrData, err)
	}
	if ds.Len() == 0 {
		return nil, fmt.Errorf("%w: no rows to count categories in", ErrData)
	}
	cats := x.categorical()
	shares := make(CategoryShares, len(cats))
	for j, k := range cats {
		shares[j] = make([]float64, x.features[k].Width)
	}
	for i := range ds.Len() {
		for j := range cats {
			if idx := int(ds.Category[i][j]); idx >= 0 && idx < len(shares[j]) {
				shares[j][idx]++
			}
		}
	}
	n := float64(ds.Len())
	for j := range shares {
		for c := range shares[j] {
			shares[j][c] /= n
		}
	}
	return shares, nil
}

// reference completes a Reference from expected effects this package computed.
func (x *Explainer) reference(description string, expected []float64) Reference {
	logOdds := x.weights[0]
	for _, e := range expected {
		logOdds += e
	}
	return Reference{Description: description, Expected: expected, ExpectedLogOdds: logOdds}
}

// categorical returns the indices in Features of the categorical columns, in schema order.
func (x *Explainer) categorical() []int {
	var out []int
	for k, f := range x.features {
		if f.Kind == Categorical {
			out = append(out, k)
		}
	}
	return out
}
