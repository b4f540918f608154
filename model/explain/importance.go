package explain

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/fedprop/fedprop/dataset"
)

// ImportanceSums are the sums behind global importance: the row count and, per feature column
// (Features order), the sum and the sum of squares of its effect on the log-odds (Contribution.Effect,
// which does not depend on the explainer's reference, so that every client's sums mean the same
// and add up across clients like every other federated count).
type ImportanceSums struct {
	N     float64   `json:"n"`
	Sum   []float64 `json:"sum"`
	SumSq []float64 `json:"sum_sq"`
}

// NewImportanceSums returns empty sums for this model.
func (x *Explainer) NewImportanceSums() ImportanceSums {
	return ImportanceSums{Sum: make([]float64, len(x.features)), SumSq: make([]float64, len(x.features))}
}

// AddImportance adds every row of ds to s, which must have been made by NewImportanceSums.
func (x *Explainer) AddImportance(s *ImportanceSums, ds *dataset.Dataset) error {
	if err := x.enc.Check(ds); err != nil {
		return fmt.Errorf("%w: %w", ErrData, err)
	}
	if len(s.Sum) != len(x.features) || len(s.SumSq) != len(x.features) {
		return fmt.Errorf("%w: importance sums for %d features, the model has %d", ErrVector, len(s.Sum), len(x.features))
	}
	row := make([]float64, x.enc.Dim())
	for i := range ds.Len() {
		contrib, _, err := x.contributions(ds, i, row)
		if err != nil {
			return err
		}
		s.N++
		for k, c := range contrib {
			s.Sum[k] += c.Effect
			s.SumSq[k] += c.Effect * c.Effect
		}
	}
	return nil
}

// Add adds o into s; both must have the same number of features.
func (s *ImportanceSums) Add(o ImportanceSums) error {
	if len(s.Sum) != len(o.Sum) || len(s.SumSq) != len(o.SumSq) || len(s.Sum) != len(s.SumSq) {
		return fmt.Errorf("add importance sums: %w: %d and %d features", ErrVector, len(s.Sum), len(o.Sum))
	}
	s.N += o.N
	for k := range s.Sum {
		s.Sum[k] += o.Sum[k]
		s.SumSq[k] += o.SumSq[k]
	}
	return nil
}

// Vector flattens the sums for secure aggregation: N, then Sum, then SumSq (1+2F values).
func (s ImportanceSums) Vector() []float64 {
	v := make([]float64, 0, 1+len(s.Sum)+len(s.SumSq))
	v = append(v, s.N)
	v = append(v, s.Sum...)
	return append(v, s.SumSq...)
}

// ImportanceSumsFromVector decodes a vector made by Vector (or a sum of such vectors) for a model
// with the given number of feature columns. It rejects a wrong length and non-finite values.
func ImportanceSumsFromVector(v []float64, features int) (ImportanceSums, error) {
	if features < 0 || len(v) != 1+2*features {
		return ImportanceSums{}, fmt.Errorf("decode importance sums: %w: %d values for %d features (want 1+2*features)", ErrVector, len(v), features)
	}
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return ImportanceSums{}, fmt.Errorf("decode importance sums: %w: value %d is %v", ErrVector, i, x)
		}
	}
	return ImportanceSums{N: v[0], Sum: slices.Clone(v[1 : 1+features]), SumSq: slices.Clone(v[1+features:])}, nil
}

// Importance is one feature column's global importance.
type Importance struct {
	Feature string `json:"feature"`
	Kind    Kind   `json:"kind"`
	// Importance is the standard deviation of the column's effect on the log-odds (and so of
	// its contribution, whatever the reference).
	Importance float64 `json:"importance"`
	// Share is Importance over the sum of every column's Importance.
	Share float64 `json:"share"`
}

// Importance turns the sums into each column's importance, most important first (ties in schema
// order). It needs at least one row.
func (x *Explainer) Importance(s ImportanceSums) ([]Importance, error) {
	if len(s.Sum) != len(x.features) || len(s.SumSq) != len(x.features) {
		return nil, fmt.Errorf("importance: %w: sums for %d features, the model has %d", ErrVector, len(s.Sum), len(x.features))
	}
	if !(s.N > 0) {
		return nil, fmt.Errorf("importance: %w: no rows", ErrData)
	}
	out := make([]Importance, len(x.features))
	for k, f := range x.features {
		mean := s.Sum[k] / s.N
		// Cancellation can leave a tiny negative variance for a constant contribution.
		sd := math.Sqrt(max(s.SumSq[k]/s.N-mean*mean, 0))
		out[k] = Importance{Feature: f.Name, Kind: f.Kind, Importance: sd}
	}
	Rank(out)
	return out, nil
}

// Rank fills each entry's Share of the total Importance (0 when the total is 0) and orders the
// entries most important first, ties in their given order: how every model kind states its
// global importance.
func Rank(imp []Importance) {
	total := 0.0
	for _, x := range imp {
		total += x.Importance
	}
	for k := range imp {
		if total > 0 {
			imp[k].Share = imp[k].Importance / total
		}
	}
	slices.SortStableFunc(imp, func(a, b Importance) int { return cmp.Compare(b.Importance, a.Importance) })
}
