package strategy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/floats"
)

// Robust aggregator names accepted by RobustConfig.Name. The empty name (RobustNone) turns
// robust aggregation off: Aggregate then returns the plain example-weighted mean (FedAvg).
const (
	RobustNone  = ""
	Median      = "median"       // coordinate-wise median (Yin et al. 2018)
	TrimmedMean = "trimmed_mean" // coordinate-wise beta-trimmed mean (Yin et al. 2018)
	Krum        = "krum"         // Blanchard et al. 2017
	MultiKrum   = "multi_krum"   // Blanchard et al. 2017
	NormBound   = "norm_bound"   // Sun et al. 2019, "Can You Really Backdoor Federated Learning?"
)

// RobustNames returns the valid non-empty robust aggregator names.
func RobustNames() []string { return []string{Median, TrimmedMean, Krum, MultiKrum, NormBound} }

// ErrTooFewUpdates marks a robust aggregation with fewer updates than the aggregator needs
// (none at all, Krum's n > 2f+2, or Multi-Krum's m > n).
var ErrTooFewUpdates = errors.New("too few updates")

// robustKey is the configuration path Validate names in its errors.
const robustKey = "run.robust."

// RobustConfig selects a Byzantine-robust aggregator over the individual client updates. These
// exist only in plaintext mode: under homomorphic encryption the coordinator sees only their sum.
// It is a literal checked by Validate; a zero value is valid and means "off".
type RobustConfig struct {
	// Name is one of RobustNames(), or "" for none.
	Name string `yaml:"name" json:"name"`
	// Beta is the fraction trimmed from EACH end of every coordinate by trimmed_mean,
	// 0 <= beta < 0.5: floor(beta*n) values go from the bottom and as many from the top.
	Beta float64 `yaml:"beta" json:"beta,omitempty"`
	// F is the number of Byzantine clients Krum and Multi-Krum assume; they need n > 2f+2.
	F int `yaml:"f" json:"f,omitempty"`
	// M is how many of the lowest-scoring updates Multi-Krum averages; 0 means n - f.
	M int `yaml:"m" json:"m,omitempty"`
	// MaxNorm bounds every update's L2 norm before norm_bound takes the example-weighted mean.
	MaxNorm float64 `yaml:"max_norm" json:"max_norm,omitempty"`
}

// Enabled reports whether a robust aggregator is configured.
func (c RobustConfig) Enabled() bool { return c.Name != RobustNone }

// Validate reports every setting that is out of range or that the named aggregator would
// ignore, naming each as run.robust.<key>. The errors wrap ErrInvalidConfig.
func (c RobustConfig) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %w: %s", robustKey, key, ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	name := c.Name
	if name == RobustNone {
		name = `"" (robust aggregation off)`
	}
	unused := func(key string, v any) {
		bad(key, "%s does not use it (set to %v)", name, v)
	}
	if c.Name != RobustNone && !slices.Contains(RobustNames(), c.Name) {
		bad("name", "%q is not empty or one of %s", c.Name, strings.Join(RobustNames(), ", "))
		return errors.Join(errs...)
	}
	if c.Name == TrimmedMean {
		if !(c.Beta >= 0 && c.Beta < 0.5) {
			bad("beta", "must be in [0, 0.5), got %v", c.Beta)
		}
	} else if c.Beta != 0 {
		unused("beta", c.Beta)
	}
	if c.Name == Krum || c.Name == MultiKrum {
		if c.F < 0 {
			bad("f", "must not be negative, got %d", c.F)
		}
	} else if c.F != 0 {
		unused("f", c.F)
	}
	if c.Name == MultiKrum {
		if c.M < 0 {
			bad("m", "must not be negative (0 means n - f), got %d", c.M)
		}
	} else if c.M != 0 {
		unused("m", c.M)
	}
	if c.Name == NormBound {
		if !positiveFinite(c.MaxNorm) {
			bad("max_norm", "must be a positive finite number, got %v", c.MaxNorm)
		}
	} else if c.MaxNorm != 0 {
		unused("max_norm", c.MaxNorm)
	}
	return errors.Join(errs...)
}

// Aggregate combines per-client updates (delta_i = local_i - global, NOT multiplied by the
// example count) with their example counts into one mean update for Strategy.Apply:
//
//   - "" (off): the example-weighted mean sum_i n_i*delta_i / sum_i n_i, as FedAvg;
//   - median: the coordinate-wise median (the mean of the two middle values when n is even);
//   - trimmed_mean: per coordinate, the mean of what is left after dropping the floor(beta*n)
//     smallest and the floor(beta*n) largest values;
//   - krum: the update with the lowest score, the score being the sum of squared L2 distances
//     to its n-f-2 nearest other updates (needs n > 2f+2);
//   - multi_krum: the mean of the m updates with the lowest Krum scores (m defaults to n-f);
//   - norm_bound: every update scaled down to L2 norm at most MaxNorm, then the
//     example-weighted mean.
//
// Only none and norm_bound use the example counts: median, trimmed mean, Krum and Multi-Krum
// are the unweighted statistics of their papers, so that a client cannot buy influence by
// claiming more examples. Counts must still be positive and finite. Ties in Krum's scores go to
// the lower index, so the result is deterministic. Aggregate does not modify its inputs and
// returns a fresh slice.
func (c RobustConfig) Aggregate(updates [][]float64, weights []float64) ([]float64, error) {
	label := c.Name
	if label == RobustNone {
		label = "mean"
	}
	out, err := c.aggregate(updates, weights)
	if err != nil {
		return nil, fmt.Errorf("robust aggregate (%s) of %d updates: %w", label, len(updates), err)
	}
	return out, nil
}

func (c RobustConfig) aggregate(updates [][]float64, weights []float64) ([]float64, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	dim, err := checkUpdates(updates, weights)
	if err != nil {
		return nil, err
	}
	n := len(updates)
	var out []float64
	switch c.Name {
	case RobustNone:
		out, err = weightedMean(updates, weights, dim, nil)
	case Median:
		out = coordinateWise(updates, dim, func(sorted []float64) float64 {
			h := len(sorted) / 2
			if len(sorted)%2 == 1 {
				return sorted[h]
			}
			return sorted[h-1]/2 + sorted[h]/2
		})
	case TrimmedMean:
		k := trimCount(c.Beta, n)
		out = coordinateWise(updates, dim, func(sorted []float64) float64 {
			kept := sorted[k : len(sorted)-k]
			return floats.Sum(kept) / float64(len(kept))
		})
	case Krum, MultiKrum:
		if n <= 2*c.F+2 {
			return nil, fmt.Errorf("%w: %s with f=%d needs more than 2f+2 = %d updates", ErrTooFewUpdates, c.Name, c.F, 2*c.F+2)
		}
		m := 1
		if c.Name == MultiKrum {
			m = c.M
			if m == 0 {
				m = n - c.F
			}
			if m > n {
				return nil, fmt.Errorf("%w: multi_krum averages m=%d updates", ErrTooFewUpdates, m)
			}
		}
		sel := krumSelect(updates, n-c.F-2, m)
		out = make([]float64, dim)
		for _, i := range sel {
			floats.Add(out, updates[i])
		}
		floats.Scale(1/float64(m), out)
	case NormBound:
		scales := make([]float64, n)
		for i, u := range updates {
			scales[i] = 1
			if norm := floats.Norm(u, 2); norm > c.MaxNorm {
				scales[i] = c.MaxNorm / norm
			}
		}
		out, err = weightedMean(updates, weights, dim, scales)
	}
	if err != nil {
		return nil, err
	}
	if err := checkFinite("aggregate", out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkUpdates returns the common dimension of updates after checking there is at least one,
// one weight per update, equal lengths, finite values and positive finite weights.
func checkUpdates(updates [][]float64, weights []float64) (int, error) {
	if len(updates) == 0 {
		return 0, fmt.Errorf("%w: no updates", ErrTooFewUpdates)
	}
	if len(weights) != len(updates) {
		return 0, fmt.Errorf("%w: %d updates but %d weights", ErrDimension, len(updates), len(weights))
	}
	dim := len(updates[0])
	for i, u := range updates {
		if len(u) != dim {
			return 0, fmt.Errorf("%w: update %d has %d values, update 0 has %d", ErrDimension, i, len(u), dim)
		}
		for j, x := range u {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return 0, fmt.Errorf("%w: update %d value %d is %v", ErrNonFinite, i, j, x)
			}
		}
		if !positiveFinite(weights[i]) {
			return 0, fmt.Errorf("%w: update %d has example count %v", ErrNonFinite, i, weights[i])
		}
	}
	return dim, nil
}

// weightedMean is sum_i w_i*s_i*u_i / sum_i w_i, with s_i = 1 when scales is nil.
func weightedMean(updates [][]float64, weights []float64, dim int, scales []float64) ([]float64, error) {
	out := make([]float64, dim)
	for i, u := range updates {
		w := weights[i]
		if scales != nil {
			w *= scales[i]
		}
		floats.AddScaled(out, w, u)
	}
	mean, err := MeanUpdate(out, floats.Sum(weights))
	if err != nil {
		// checkUpdates admitted only finite updates and positive, finite counts; a sum that
		// overflows them is still refused here rather than handed on.
		return nil, err
	}
	return mean, nil
}

// coordinateWise applies stat to the sorted values of each coordinate in turn.
func coordinateWise(updates [][]float64, dim int, stat func(sorted []float64) float64) []float64 {
	out := make([]float64, dim)
	col := make([]float64, len(updates))
	for j := range dim {
		for i, u := range updates {
			col[i] = u[j]
		}
		slices.Sort(col)
		out[j] = stat(col)
	}
	return out
}

// trimCount is floor(beta*n), the number of values trimmed from each end, with a tolerance for
// products such as 0.29*100 that fall just below an integer in floating point. It always leaves
// at least one value.
func trimCount(beta float64, n int) int {
	k := int(math.Floor(beta*float64(n) + 1e-9))
	return min(max(k, 0), (n-1)/2)
}

// krumSelect returns the indices of the m updates with the lowest Krum scores, lowest first
// (ties to the lower index). A score is the sum of the squared L2 distances from an update to
// its `neighbours` nearest other updates.
func krumSelect(updates [][]float64, neighbours, m int) []int {
	n := len(updates)
	dist := make([]float64, n*n)
	for i := range n {
		for j := i + 1; j < n; j++ {
			d := squaredDistance(updates[i], updates[j])
			dist[i*n+j], dist[j*n+i] = d, d
		}
	}
	scores := make([]float64, n)
	others := make([]float64, 0, n-1)
	for i := range n {
		others = others[:0]
		for j := range n {
			if j != i {
				others = append(others, dist[i*n+j])
			}
		}
		slices.Sort(others)
		scores[i] = floats.Sum(others[:neighbours])
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Or(cmp.Compare(scores[a], scores[b]), cmp.Compare(a, b)) })
	return order[:m]
}

// squaredDistance is ||a-b||^2 for slices of equal length.
func squaredDistance(a, b []float64) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	k := 0
	for ; k+4 <= len(a); k += 4 {
		d0, d1, d2, d3 := a[k]-b[k], a[k+1]-b[k+1], a[k+2]-b[k+2], a[k+3]-b[k+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; k < len(a); k++ {
		d := a[k] - b[k]
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}
