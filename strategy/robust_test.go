package strategy_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/floats"

	"github.com/fedprop/fedprop/strategy"
)

func TestRobustConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     strategy.RobustConfig
		wantKey string // "" means valid
	}{
		{"off", strategy.RobustConfig{}, ""},
		{"median", strategy.RobustConfig{Name: "median"}, ""},
		{"trimmed mean", strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.2}, ""},
		{"trimmed mean beta 0", strategy.RobustConfig{Name: "trimmed_mean"}, ""},
		{"krum", strategy.RobustConfig{Name: "krum", F: 2}, ""},
		{"krum f 0", strategy.RobustConfig{Name: "krum"}, ""},
		{"multi krum", strategy.RobustConfig{Name: "multi_krum", F: 2, M: 5}, ""},
		{"norm bound", strategy.RobustConfig{Name: "norm_bound", MaxNorm: 1.5}, ""},

		{"unknown name", strategy.RobustConfig{Name: "Median"}, "run.robust.name"},
		{"beta 0.5", strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.5}, "run.robust.beta"},
		{"negative beta", strategy.RobustConfig{Name: "trimmed_mean", Beta: -0.1}, "run.robust.beta"},
		{"nan beta", strategy.RobustConfig{Name: "trimmed_mean", Beta: math.NaN()}, "run.robust.beta"},
		{"beta for median", strategy.RobustConfig{Name: "median", Beta: 0.1}, "run.robust.beta"},
		{"beta while off", strategy.RobustConfig{Beta: 0.1}, "run.robust.beta"},
		{"negative f", strategy.RobustConfig{Name: "krum", F: -1}, "run.robust.f"},
		{"f for trimmed mean", strategy.RobustConfig{Name: "trimmed_mean", F: 1}, "run.robust.f"},
		{"negative m", strategy.RobustConfig{Name: "multi_krum", M: -1}, "run.robust.m"},
		{"m for krum", strategy.RobustConfig{Name: "krum", M: 3}, "run.robust.m"},
		{"zero max norm", strategy.RobustConfig{Name: "norm_bound"}, "run.robust.max_norm"},
		{"inf max norm", strategy.RobustConfig{Name: "norm_bound", MaxNorm: math.Inf(1)}, "run.robust.max_norm"},
		{"max norm for krum", strategy.RobustConfig{Name: "krum", MaxNorm: 1}, "run.robust.max_norm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantKey == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.cfg.Name != "", tt.cfg.Enabled())
				return
			}
			require.ErrorIs(t, err, strategy.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.wantKey+":")
			_, err = tt.cfg.Aggregate([][]float64{{1}, {2}, {3}, {4}, {5}}, []float64{1, 1, 1, 1, 1})
			assert.ErrorIs(t, err, strategy.ErrInvalidConfig, "Aggregate must refuse an invalid config")
		})
	}
}

func TestRobustAggregateHandComputed(t *testing.T) {
	ones := func(n int) []float64 {
		w := make([]float64, n)
		for i := range w {
			w[i] = 1
		}
		return w
	}
	// Krum points on the line y = 2x at x = 0, 1, 3, 10, 20. Squared distances along x (times 5
	// for the y = 2x line) from each point, with f=1 summing the n-f-2 = 2 nearest:
	//   x=0: 1, 9, 100, 400 -> 10;  x=1: 1, 4, 81, 361 -> 5;  x=3: 9, 4, 49, 289 -> 13;
	//   x=10: 100, 81, 49, 100 -> 130;  x=20: 400, 361, 289, 100 -> 389 (all times 5).
	// Krum picks x=1; Multi-Krum m=3 averages x = 1, 0, 3; the default m = n-f = 4 adds x=10.
	line := [][]float64{{0, 0}, {1, 2}, {3, 6}, {10, 20}, {20, 40}}
	tests := []struct {
		name    string
		cfg     strategy.RobustConfig
		updates [][]float64
		weights []float64
		want    []float64
	}{
		{"off is the weighted mean", strategy.RobustConfig{},
			[][]float64{{1, 0}, {3, 2}}, []float64{1, 3}, []float64{2.5, 1.5}},
		{"median odd", strategy.RobustConfig{Name: "median"},
			[][]float64{{1, 10}, {3, -2}, {2, 5}}, []float64{1, 100, 1}, []float64{2, 5}},
		{"median even averages the middle two", strategy.RobustConfig{Name: "median"},
			[][]float64{{1}, {4}, {2}, {10}}, ones(4), []float64{3}},
		{"median of one", strategy.RobustConfig{Name: "median"},
			[][]float64{{7, -1}}, ones(1), []float64{7, -1}},
		{"trimmed mean beta 0.25 of 4 drops one each end", strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.25},
			[][]float64{{1}, {4}, {2}, {10}}, ones(4), []float64{3}},
		{"trimmed mean beta 0.2 of 5", strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.2},
			[][]float64{{1, -50}, {100, 0}, {3, 1}, {2, 2}, {4, 3}}, ones(5), []float64{3, 1}},
		{"trimmed mean beta 0.3 of 5 floors to one", strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.3},
			[][]float64{{1}, {100}, {3}, {2}, {4}}, ones(5), []float64{3}},
		{"trimmed mean beta 0 is the unweighted mean", strategy.RobustConfig{Name: "trimmed_mean"},
			[][]float64{{1}, {100}, {3}, {2}, {4}}, []float64{5, 1, 1, 1, 1}, []float64{22}},
		// 0.29*100 is 28.999999999999996 in floating point; 29 values go from each end, leaving
		// the squares of 29..70: (sum_{0..70} i^2 - sum_{0..28} i^2) / 42 = (116795 - 7714) / 42.
		{"trimmed mean beta 0.29 of 100 trims 29", strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.29},
			squares(100), ones(100), []float64{109081.0 / 42}},
		{"krum", strategy.RobustConfig{Name: "krum", F: 1}, line, ones(5), []float64{1, 2}},
		{"krum ignores weights", strategy.RobustConfig{Name: "krum", F: 1}, line, []float64{1, 1, 1, 1, 1000}, []float64{1, 2}},
		{"krum tie goes to the lower index", strategy.RobustConfig{Name: "krum"},
			[][]float64{{-1}, {0}, {1}}, ones(3), []float64{-1}},
		{"multi krum m 3", strategy.RobustConfig{Name: "multi_krum", F: 1, M: 3}, line, ones(5), []float64{4.0 / 3, 8.0 / 3}},
		{"multi krum default m n-f", strategy.RobustConfig{Name: "multi_krum", F: 1}, line, ones(5), []float64{3.5, 7}},
		{"multi krum m 1 is krum", strategy.RobustConfig{Name: "multi_krum", F: 1, M: 1}, line, ones(5), []float64{1, 2}},
		// (3,4) has norm 5 and stays, (6,8) has norm 10 and halves to (3,4), (0,1) stays:
		// (1*(3,4) + 2*(3,4) + 1*(0,1)) / 4 = (9,13)/4.
		{"norm bound", strategy.RobustConfig{Name: "norm_bound", MaxNorm: 5},
			[][]float64{{3, 4}, {6, 8}, {0, 1}}, []float64{1, 2, 1}, []float64{2.25, 3.25}},
		{"norm bound above every norm is the weighted mean", strategy.RobustConfig{Name: "norm_bound", MaxNorm: 100},
			[][]float64{{1, 0}, {3, 2}}, []float64{1, 3}, []float64{2.5, 1.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			updates := cloneAll(tt.updates)
			weights := slices.Clone(tt.weights)
			got, err := tt.cfg.Aggregate(updates, weights)
			require.NoError(t, err)
			assert.InDeltaSlice(t, tt.want, got, 1e-12)
			assert.Equal(t, tt.updates, updates, "updates modified")
			assert.Equal(t, tt.weights, weights, "weights modified")
			for i := range got {
				got[i] = math.Pi
			}
			assert.Equal(t, tt.updates, updates, "result aliases an update")
		})
	}
}

func TestRobustAggregateErrors(t *testing.T) {
	five := [][]float64{{1}, {2}, {3}, {4}, {5}}
	ones5 := []float64{1, 1, 1, 1, 1}
	tests := []struct {
		name    string
		cfg     strategy.RobustConfig
		updates [][]float64
		weights []float64
		want    error
	}{
		{"no updates", strategy.RobustConfig{Name: "median"}, nil, nil, strategy.ErrTooFewUpdates},
		{"krum needs n above 2f+2", strategy.RobustConfig{Name: "krum", F: 1}, five[:4], ones5[:4], strategy.ErrTooFewUpdates},
		{"krum f 0 needs three", strategy.RobustConfig{Name: "krum"}, five[:2], ones5[:2], strategy.ErrTooFewUpdates},
		{"multi krum needs n above 2f+2", strategy.RobustConfig{Name: "multi_krum", F: 2}, five, ones5, strategy.ErrTooFewUpdates},
		{"multi krum m above n", strategy.RobustConfig{Name: "multi_krum", F: 1, M: 6}, five, ones5, strategy.ErrTooFewUpdates},
		{"weights short", strategy.RobustConfig{Name: "median"}, five, ones5[:4], strategy.ErrDimension},
		{"ragged updates", strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.2}, [][]float64{{1, 2}, {3}}, []float64{1, 1}, strategy.ErrDimension},
		{"nan update", strategy.RobustConfig{Name: "krum"}, [][]float64{{1}, {math.NaN()}, {2}}, []float64{1, 1, 1}, strategy.ErrNonFinite},
		{"inf update", strategy.RobustConfig{}, [][]float64{{math.Inf(-1)}}, []float64{1}, strategy.ErrNonFinite},
		{"zero weight", strategy.RobustConfig{Name: "norm_bound", MaxNorm: 1}, [][]float64{{1}, {2}}, []float64{1, 0}, strategy.ErrNonFinite},
		{"nan weight", strategy.RobustConfig{Name: "median"}, [][]float64{{1}, {2}}, []float64{math.NaN(), 1}, strategy.ErrNonFinite},
		{"overflowing mean", strategy.RobustConfig{}, [][]float64{{math.MaxFloat64}, {math.MaxFloat64}}, []float64{1, 1}, strategy.ErrNonFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.Aggregate(tt.updates, tt.weights)
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, got)
		})
	}
}

// TestRobustAggregateResistsOutliers is the "defence works" case in miniature: 8 honest updates
// scattered around mu, and 2 attackers (20%) sending the honest mean sign-flipped and scaled by
// 10, as the sign_flip attack with scale 10 does. The plain mean is dragged to about -1.2*mu;
// median, trimmed mean, Krum and Multi-Krum stay near the honest mean; norm bounding keeps the
// direction of mu.
func TestRobustAggregateResistsOutliers(t *testing.T) {
	mu := []float64{1, -2, 0.5, 0, 3}
	rng := rand.New(rand.NewPCG(1, 2))
	var updates [][]float64
	var weights []float64
	for range 8 {
		u := make([]float64, len(mu))
		for j := range u {
			u[j] = mu[j] + 0.1*rng.NormFloat64()
		}
		updates = append(updates, u)
		weights = append(weights, float64(50+rng.IntN(100)))
	}
	honest, err := strategy.RobustConfig{}.Aggregate(updates, weights)
	require.NoError(t, err)
	for range 2 {
		bad := slices.Clone(honest)
		floats.Scale(-10, bad)
		updates = append(updates, bad)
		weights = append(weights, 100)
	}
	muNorm := floats.Norm(mu, 2)

	plain, err := strategy.RobustConfig{}.Aggregate(updates, weights)
	require.NoError(t, err)
	require.Greater(t, floats.Distance(plain, honest, 2), muNorm, "the attack must drag the plain mean away")
	require.Negative(t, floats.Dot(plain, mu), "the attack must reverse the plain mean")

	tests := []struct {
		cfg     strategy.RobustConfig
		maxDist float64 // relative to ||mu||
	}{
		{strategy.RobustConfig{Name: "median"}, 0.1},
		{strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.2}, 0.1},
		{strategy.RobustConfig{Name: "krum", F: 2}, 0.15},
		{strategy.RobustConfig{Name: "multi_krum", F: 2}, 0.1},
	}
	for _, tt := range tests {
		t.Run(tt.cfg.Name, func(t *testing.T) {
			got, err := tt.cfg.Aggregate(updates, weights)
			require.NoError(t, err)
			assert.Less(t, floats.Distance(got, honest, 2), tt.maxDist*muNorm)
		})
	}
	t.Run("norm_bound", func(t *testing.T) {
		cfg := strategy.RobustConfig{Name: "norm_bound", MaxNorm: 1.1 * muNorm}
		got, err := cfg.Aggregate(updates, weights)
		require.NoError(t, err)
		assert.Positive(t, floats.Dot(got, mu)/(floats.Norm(got, 2)*muNorm)-0.99, "norm bounding must keep the honest direction")
		assert.Less(t, floats.Distance(got, honest, 2), floats.Distance(plain, honest, 2)/2)
	})
}

// TestRobustAggregateConsistency checks identities between the aggregators on random data:
// trimming all but the middle value is the median (n odd), Krum is Multi-Krum with m=1, and
// Multi-Krum with m=n is the unweighted mean.
func TestRobustAggregateConsistency(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for trial := range 20 {
		n := 2*rng.IntN(10) + 5 // odd, 5..23
		updates := make([][]float64, n)
		ones := make([]float64, n)
		for i := range updates {
			updates[i] = make([]float64, 6)
			for j := range updates[i] {
				updates[i][j] = rng.NormFloat64() * 3
			}
			ones[i] = 1
		}
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			med, err := strategy.RobustConfig{Name: "median"}.Aggregate(updates, ones)
			require.NoError(t, err)
			tm, err := strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.4999}.Aggregate(updates, ones)
			require.NoError(t, err)
			assert.Equal(t, med, tm)

			f := (n - 3) / 2
			krum, err := strategy.RobustConfig{Name: "krum", F: f}.Aggregate(updates, ones)
			require.NoError(t, err)
			mk1, err := strategy.RobustConfig{Name: "multi_krum", F: f, M: 1}.Aggregate(updates, ones)
			require.NoError(t, err)
			assert.Equal(t, krum, mk1)
			assert.Contains(t, updates, krum, "krum must return one of the updates")

			mkAll, err := strategy.RobustConfig{Name: "multi_krum", F: f, M: n}.Aggregate(updates, ones)
			require.NoError(t, err)
			mean, err := strategy.RobustConfig{}.Aggregate(updates, ones)
			require.NoError(t, err)
			assert.InDeltaSlice(t, mean, mkAll, 1e-12)
		})
	}
}

// BenchmarkRobustAggregate measures each aggregator on 100 updates of 2,000 parameters.
func BenchmarkRobustAggregate(b *testing.B) {
	const n, dim = 100, 2000
	rng := rand.New(rand.NewPCG(3, 4))
	updates := make([][]float64, n)
	weights := make([]float64, n)
	for i := range updates {
		updates[i] = make([]float64, dim)
		for j := range updates[i] {
			updates[i][j] = rng.NormFloat64()
		}
		weights[i] = float64(1 + rng.IntN(1000))
	}
	for _, cfg := range []strategy.RobustConfig{
		{},
		{Name: "median"},
		{Name: "trimmed_mean", Beta: 0.1},
		{Name: "krum", F: 20},
		{Name: "multi_krum", F: 20},
		{Name: "norm_bound", MaxNorm: 40},
	} {
		name := cfg.Name
		if name == "" {
			name = "mean"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cfg.Aggregate(updates, weights); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// squares returns the one-value updates (n-1)^2, ..., 1, 0 (descending, so sorting matters).
func squares(n int) [][]float64 {
	out := make([][]float64, n)
	for i := range out {
		v := float64(n - 1 - i)
		out[i] = []float64{v * v}
	}
	return out
}

func cloneAll(v [][]float64) [][]float64 {
	out := make([][]float64, len(v))
	for i := range v {
		out[i] = slices.Clone(v[i])
	}
	return out
}
