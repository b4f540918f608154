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
	// Sum holds the sum of each numeric feature over the rows where it is present.
	Sum []float64
	// SumSq holds the sum of squares of each numeric feature over the rows where it is
	// present.
	SumSq []float64
	// Observed holds, per numeric feature, the number of rows where it is present, for a
	// schema that imputes missing values (Schema.Imputes); nil otherwise, when every
	// feature is present in all Count rows. The means are taken over these counts, so a
	// missing value moves no mean, and an imputed one (encoded as the mean) no variance
	// term.
	Observed []float64
}

// Stats returns the sums over d's rows. A missing value (NaN, see MissingImpute) adds to no
// sum and to no observed count; Observed is set exactly when the schema imputes, so that
// every client's stats have the same layout whatever its rows hold.
func (d *Dataset) Stats() FeatureStats {
	n := 0
	imputes := false
	if d.Schema != nil {
		n = len(d.Schema.Numeric)
		imputes = d.Schema.Imputes()
	}
	s := FeatureStats{Count: float64(d.Len()), Sum: make([]float64, n), SumSq: make([]float64, n)}
	if imputes {
		s.Observed = make([]float64, n)
	}
	for _, row := range d.Numeric {
		for i, v := range row {
			if math.IsNaN(v) {
				continue
			}
			s.Sum[i] += v
			s.SumSq[i] += v * v
			if imputes {
				s.Observed[i]++
			}
		}
	}
	return s
}

// counts returns the number of values behind feature i's sums.
func (s FeatureStats) counts(i int) float64 {
	if s.Observed != nil {
		return s.Observed[i]
	}
	return s.Count
}

// Add adds o into s. A zero FeatureStats (no count, no sums) takes o's dimension and
// layout, so a running total can start from the zero value.
func (s *FeatureStats) Add(o FeatureStats) error {
	if len(o.Sum) != len(o.SumSq) || (o.Observed != nil && len(o.Observed) != len(o.Sum)) {
		return fmt.Errorf("add feature stats: %d sums, %d sums of squares and %d observed counts", len(o.Sum), len(o.SumSq), len(o.Observed))
	}
	if s.Count == 0 && s.Sum == nil && s.SumSq == nil && s.Observed == nil {
		s.Sum, s.SumSq = make([]float64, len(o.Sum)), make([]float64, len(o.SumSq))
		if o.Observed != nil {
			s.Observed = make([]float64, len(o.Observed))
		}
	}
	if len(s.Sum) != len(o.Sum) || len(s.SumSq) != len(o.SumSq) {
		return fmt.Errorf("add feature stats: dimension %d to dimension %d", len(o.Sum), len(s.Sum))
	}
	if (s.Observed == nil) != (o.Observed == nil) {
		return fmt.Errorf("add feature stats: only one side counts observed values per feature: both must follow a schema that imputes, or neither")
	}
	s.Count += o.Count
	floats.Add(s.Sum, o.Sum)
	floats.Add(s.SumSq, o.SumSq)
	if s.Observed != nil {
		floats.Add(s.Observed, o.Observed)
	}
	return nil
}

// Vector flattens the stats to [count, sum..., sumsq...], followed by observed... when the
// stats count observed values per feature: the layout aggregated on the wire. Its length is
// StatsVectorLen of the schema.
func (s FeatureStats) Vector() []float64 {
	v := make([]float64, 0, 1+len(s.Sum)+len(s.SumSq)+len(s.Observed))
	v = append(v, s.Count)
	v = append(v, s.Sum...)
	v = append(v, s.SumSq...)
	return append(v, s.Observed...)
}

// StatsVectorLen is the length of the Vector of the FeatureStats of schema's Datasets:
// 1+2n for n numeric features, or 1+3n when the schema imputes missing values.
func StatsVectorLen(schema *Schema) int {
	n := len(schema.Numeric)
	if schema.Imputes() {
		return 1 + 3*n
	}
	return 1 + 2*n
}

// FeatureStatsFromVector is the inverse of Vector for numeric features: a vector of length
// 1+2n has no observed counts, one of 1+3n has them.
func FeatureStatsFromVector(v []float64, numeric int) (FeatureStats, error) {
	if numeric < 0 || (len(v) != 1+2*numeric && len(v) != 1+3*numeric) {
		return FeatureStats{}, fmt.Errorf("feature stats from vector: length %d, want %d (or %d with observed counts) for %d numeric features", len(v), 1+2*numeric, 1+3*numeric, numeric)
	}
	s := FeatureStats{
		Count: v[0],
		Sum:   slices.Clone(v[1 : 1+numeric]),
		SumSq: slices.Clone(v[1+numeric : 1+2*numeric]),
	}
	if len(v) == 1+3*numeric && numeric > 0 {
		s.Observed = slices.Clone(v[1+2*numeric:])
	}
	return s, nil
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

// Standardization derives means and population standard deviations from the sums, over the
// observed values of each feature when the stats count them. A feature whose variance is
// zero (up to rounding) gets Std 1, so it encodes as 0 instead of dividing by zero; a
// feature observed in no row is an error, as it has no mean to impute.
func (s FeatureStats) Standardization() (Standardization, error) {
	if math.IsNaN(s.Count) || s.Count <= 0 {
		return Standardization{}, errors.New("standardization: no rows (count 0): no client contributed feature statistics")
	}
	if len(s.Sum) != len(s.SumSq) || (s.Observed != nil && len(s.Observed) != len(s.Sum)) {
		return Standardization{}, fmt.Errorf("standardization: %d sums, %d sums of squares and %d observed counts", len(s.Sum), len(s.SumSq), len(s.Observed))
	}
	st := Standardization{Mean: make([]float64, len(s.Sum)), Std: make([]float64, len(s.Sum))}
	for i := range s.Sum {
		n := s.counts(i)
		if !(n > 0) { // as Count above; NaN included

			return Standardization{}, fmt.Errorf("standardization: feature %d has no observed value in any row (observed count %v): nothing to impute its missing values from", i, n)
		}
		mean := s.Sum[i] / n
		variance := s.SumSq[i]/n - mean*mean
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
