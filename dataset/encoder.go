package dataset

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// Encoder turns Datasets into model inputs identically on every client: the numeric
// features standardised with a pinned Standardization (a missing one imputed as the mean), then each categorical feature
// one-hot encoded in vocabulary order (with a last "other" input under UnseenOther). It
// holds no intercept column. An Encoder is immutable and safe for concurrent use.
type Encoder struct {
	schema *Schema
	mean   []float64
	std    []float64
	offset []int // first input of each categorical feature
	width  []int // one-hot width of each categorical feature
	dim    int
}

// NewEncoder returns an encoder for schema with the given standardisation, which must have
// one finite mean and one positive finite std per numeric feature.
func NewEncoder(schema *Schema, std Standardization) (*Encoder, error) {
	if err := schema.Validate(); err != nil {
		return nil, fmt.Errorf("new encoder: %w", err)
	}
	n := len(schema.Numeric)
	if len(std.Mean) != n || len(std.Std) != n {
		return nil, fmt.Errorf("new encoder: standardization has %d means and %d stds for %d numeric features", len(std.Mean), len(std.Std), n)
	}
	e := &Encoder{schema: schema, mean: slices.Clone(std.Mean), std: slices.Clone(std.Std), dim: n}
	for i, sd := range std.Std {
		if math.IsNaN(std.Mean[i]) || math.IsInf(std.Mean[i], 0) || !(sd > 0) || math.IsInf(sd, 0) {
			return nil, fmt.Errorf("new encoder: feature %q has mean %v and std %v; want finite values and std > 0", schema.Numeric[i], std.Mean[i], sd)
		}
	}
	for _, c := range schema.Categorical {
		e.offset = append(e.offset, e.dim)
		e.width = append(e.width, c.Width())
		e.dim += c.Width()
	}
	return e, nil
}

// Schema returns the schema the encoder was built for.
func (e *Encoder) Schema() *Schema { return e.schema }

// Standardization returns a copy of the pinned standardisation.
func (e *Encoder) Standardization() Standardization {
	return Standardization{Mean: slices.Clone(e.mean), Std: slices.Clone(e.std)}
}

// Dim returns the number of model inputs (no intercept).
func (e *Encoder) Dim() int { return e.dim }

// FeatureNames returns a name per model input: the numeric columns, then "column=value"
// for each one-hot input, and "column=<other>" for an "other" bucket.
func (e *Encoder) FeatureNames() []string {
	names := slices.Clone(e.schema.Numeric)
	for _, c := range e.schema.Categorical {
		for _, v := range c.Values {
			names = append(names, c.Column+"="+v)
		}
		if c.Policy() == UnseenOther {
			names = append(names, c.Column+"="+OtherCategory)
		}
	}
	return names
}

// Check reports whether d has the row layout the encoder expects.
func (e *Encoder) Check(d *Dataset) error {
	if d.Schema != e.schema && !sameLayout(d.Schema, e.schema) {
		return fmt.Errorf("encode %s: its schema does not match the encoder's schema %q", d.Source, e.schema.Name)
	}
	return nil
}

// Encode returns d's model inputs, rows x Dim. For an empty d it returns an empty matrix
// (gonum has no zero-row Dense; its Dims are 0, 0). d must follow the encoder's schema (see
// Check); a mismatch is a programming error and panics.
func (e *Encoder) Encode(d *Dataset) *mat.Dense {
	if err := e.Check(d); err != nil {
		panic(err)
	}
	rows := d.Len()
	if rows == 0 || e.dim == 0 {
		return &mat.Dense{}
	}
	data := make([]float64, rows*e.dim)
	for i := range rows {
		e.EncodeRow(d, i, data[i*e.dim:(i+1)*e.dim])
	}
	return mat.NewDense(rows, e.dim, data)
}

// EncodeRow writes the model inputs of row i of d into dst, which must have length Dim. A
// missing numeric value (NaN, see MissingImpute) encodes as 0: the pinned mean, which the
// reader could not know.
func (e *Encoder) EncodeRow(d *Dataset, i int, dst []float64) {
	if len(dst) != e.dim {
		panic(fmt.Sprintf("dataset.Encoder.EncodeRow: dst has length %d, want %d", len(dst), e.dim))
	}
	for j, v := range d.Numeric[i] {
		if math.IsNaN(v) {
			dst[j] = 0
			continue
		}
		dst[j] = (v - e.mean[j]) / e.std[j]
	}
	clear(dst[len(e.mean):])
	for j, idx := range d.Category[i] {
		// An index outside the one-hot width (an "other" row under the error policy, in
		// a Dataset built by hand) encodes as all zeros.
		if idx >= 0 && int(idx) < e.width[j] {
			dst[e.offset[j]+int(idx)] = 1
		}
	}
}
