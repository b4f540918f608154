package dataset

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/floats"
)

// FeatureStats are the federated sums behind standardisation. Every field is a sum, so
// the stats of several clients add up (in plaintext or under homomorphic encryption) to
// the stats of their union.
type FeatureStats struct {
	// Count is the number of rows.
	Count float64
	// Sum holds the sum of each numeric feature.
	Sum []float64
	// SumSq holds the sum of squares of each numeric feature.
	SumSq []float64
}

// Stats returns the sums over d's rows.
func (d *Dataset) Stats() FeatureStats {
	n := 0
	if d.Schema != nil {
		n = len(d.Schema.Numeric)
	}
	s := FeatureStats{Count: float64(d.Len()), Sum: make([]float64, n), SumSq: make([]float64, n)}
	for _, row := range d.Numeric {
		for i, v := range row {
			s.Sum[i] += v
			s.SumSq[i] += v * v
		}
	}
	return s
}

// Add adds o into s. A zero FeatureStats (no count, no sums) takes o's dimension, so a
// running total can start from the zero value.
func (s *FeatureStats) Add(o FeatureStats) error {
	if len(o.Sum) != len(o.SumSq) {
		return fmt.Errorf("add feature stats: %d sums but %d sums of squares", len(o.Sum), len(o.SumSq))
	}
	if s.Count == 0 && s.Sum == nil && s.SumSq == nil {
		s.Sum, s.SumSq = make([]float64, len(o.Sum)), make([]float64, len(o.SumSq))
	}
	if len(s.Sum) != len(o.Sum) || len(s.SumSq) != len(o.SumSq) {
		return fmt.Errorf("add feature stats: dimension %d to dimension %d", len(o.Sum), len(s.Sum))
	}
	s.Count += o.Count
	floats.Add(s.Sum, o.Sum)
	floats.Add(s.SumSq, o.SumSq)
	return nil
}

// Vector flattens the stats to [count, sum..., sumsq...], the layout aggregated on the
// wire.
func (s FeatureStats) Vector() []float64 {
	v := make([]float64, 0, 1+len(s.Sum)+len(s.SumSq))
	v = append(v, s.Count)
	v = append(v, s.Sum...)
	return append(v, s.SumSq...)
}

// FeatureStatsFromVector is the inverse of Vector for numeric features.
func FeatureStatsFromVector(v []float64, numeric int) (FeatureStats, error) {
	if numeric < 0 || len(v) != 1+2*numeric {
		return FeatureStats{}, fmt.Errorf("feature stats from vector: length %d, want %d for %d numeric features", len(v), 1+2*numeric, numeric)
	}
	return FeatureStats{
		Count: v[0],
		Sum:   slices.Clone(v[1 : 1+numeric]),
		SumSq: slices.Clone(v[1+numeric:]),
	}, nil
}

// Standardization is the pinned mean and scale of each numeric feature.
type Standardization struct {
	// Mean of each numeric feature.
	Mean []float64
	// Std is the population standard deviation (ddof=0, as scikit-learn's StandardScaler)
	// of each numeric feature, or 1 for a feature without variance.
	Std []float64
}

// relativeZeroVariance is the variance, relative to mean², below which a feature counts
// as constant: E[x²]-E[x]² cancels to noise of that order in float64, and sums decrypted
// from CKKS carry more noise still.
const relativeZeroVariance = 1e-10

// Standardization derives means and population standard deviations from the sums. A
// feature whose variance is zero (up to rounding) gets Std 1, so it encodes as 0 instead
// of dividing by zero.
func (s FeatureStats) Standardization() (Standardization, error) {
	if math.IsNaN(s.Count) || s.Count <= 0 {
		return Standardization{}, errors.New("standardization: no rows (count 0): no client contributed feature statistics")
	}
	if len(s.Sum) != len(s.SumSq) {
		return Standardization{}, fmt.Errorf("standardization: %d sums but %d sums of squares", len(s.Sum), len(s.SumSq))
	}
	st := Standardization{Mean: make([]float64, len(s.Sum)), Std: make([]float64, len(s.Sum))}
	for i := range s.Sum {
		mean := s.Sum[i] / s.Count
		variance := s.SumSq[i]/s.Count - mean*mean
		if math.IsNaN(variance) || math.IsInf(variance, 0) || math.IsInf(mean, 0) {
			return Standardization{}, fmt.Errorf("standardization: feature %d has non-finite sums", i)
		}
		st.Mean[i] = mean
		if variance <= relativeZeroVariance*mean*mean || variance <= 0 {
			st.Std[i] = 1
		} else {
			st.Std[i] = math.Sqrt(variance)
		}
	}
	return st, nil
}
