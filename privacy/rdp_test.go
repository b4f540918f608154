package privacy

import (
	"cmp"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tfOrders are TensorFlow Privacy's original orders: 1.1, ..., 10.9, then 12, ..., 63.
func tfOrders() []float64 {
	var orders []float64
	for x := 1; x < 100; x++ {
		orders = append(orders, 1+float64(x)/10)
	}
	for a := 12; a < 64; a++ {
		orders = append(orders, float64(a))
	}
	return orders
}

// dpsgdLibOrders are the orders of TensorFlow Privacy's compute_dp_sgd_privacy.
func dpsgdLibOrders() []float64 {
	orders := []float64{1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5}
	for a := 5; a < 64; a++ {
		orders = append(orders, float64(a))
	}
	return append(orders, 128, 256, 512)
}

// TestEpsilonPublishedValues reproduces the published values of the reference accountant.
func TestEpsilonPublishedValues(t *testing.T) {
	tests := []struct {
		name    string
		q       float64
		sigma   float64
		steps   int
		delta   float64
		orders  []float64
		conv    Conversion
		want    float64
		relTol  float64
		absTol  float64
		wantOrd float64
	}{
		{name: "tf orders q=0.04 sigma=1.5", q: 0.04, sigma: 1.5, steps: 2250, delta: 1e-5,
			orders: tfOrders(), want: 7.32911117143, relTol: 1e-6},
		{name: "mnist 15 epochs batch 150", q: 150.0 / 60000, sigma: 1.3, steps: 6000, delta: 1e-5,
			orders: dpsgdLibOrders(), want: 0.7242234026109595, relTol: 1e-6, wantOrd: 19},
		{name: "q=0.001 sigma=1 delta=1e-7", q: 0.001, sigma: 1.0, steps: 30000, delta: 1e-7,
			orders: dpsgdLibOrders(), want: 1.4154988495444842, relTol: 1e-6, wantOrd: 13},
		{name: "plain gaussian default orders", q: 1, sigma: 4.530877117, steps: 1, delta: 1e-6,
			want: 1.0, relTol: 1e-6},
		{name: "mnist tutorial classic", q: 256.0 / 60000, sigma: 1.1, steps: 14062, delta: 1e-5,
			conv: Classic, want: 3.01, absTol: 0.005},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// RDP's published values: the table's zero conversion means Tight.
			eps, order, err := Epsilon(tt.q, tt.sigma, tt.steps, tt.delta, tt.orders, cmp.Or(tt.conv, Tight))
			require.NoError(t, err)
			if tt.relTol > 0 {
				assert.InEpsilon(t, tt.want, eps, tt.relTol)
			} else {
				assert.InDelta(t, tt.want, eps, tt.absTol)
			}
			if tt.wantOrd != 0 {
				assert.Equal(t, tt.wantOrd, order)
			}
		})
	}
}

// TestSampledGaussianRDPReference checks single-step RDP values of the reference's own test
// (q=0.01, sigma=2.5, 50 steps) and the closed forms at the edges.
func TestSampledGaussianRDPReference(t *testing.T) {
	got, err := SampledGaussianRDP(0.01, 2.5, 50, []float64{1.5, 2.5, 5, 50, 100})
	require.NoError(t, err)
	want := []float64{6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02, 1.6742e+02}
	require.Len(t, got, len(want))
	for i := range want {
		assert.InEpsilon(t, want[i], got[i], 1e-3, "order index %d", i)
	}

	orders := []float64{1.5, 2, 7.3, 64}
	gauss, err := SampledGaussianRDP(1, 2, 3, orders)
	require.NoError(t, err)
	for i, a := range orders {
		assert.InEpsilon(t, 3*a/(2*4), gauss[i], 1e-15)
	}
	noNoise, err := SampledGaussianRDP(0.5, 0, 1, orders)
	require.NoError(t, err)
	for _, r := range noNoise {
		assert.True(t, math.IsInf(r, 1))
	}
	noSampling, err := SampledGaussianRDP(0, 1, 10, orders)
	require.NoError(t, err)
	assert.Equal(t, []float64{0, 0, 0, 0}, noSampling)
	noSteps, err := SampledGaussianRDP(0.5, 0, 0, orders)
	require.NoError(t, err)
	assert.Equal(t, []float64{0, 0, 0, 0}, noSteps, "zero steps cost nothing, even without noise")
}

// TestSampledGaussianRDPSmallQ checks the small-q limit, a property independent of the series:
// A_a = 1 + a(a-1)/2 q^2 (exp(1/sigma^2) - 1) + O(q^3), so RDP(a) ~ a q^2 (exp(1/sigma^2) - 1)/2.
func TestSampledGaussianRDPSmallQ(t *testing.T) {
	const q, sigma = 1e-3, 4.0
	orders := []float64{1.5, 2, 3, 4.5, 8}
	got, err := SampledGaussianRDP(q, sigma, 1, orders)
	require.NoError(t, err)
	for i, a := range orders {
		assert.InEpsilon(t, a*q*q*math.Expm1(1/(sigma*sigma))/2, got[i], 1e-3, "order %v", a)
	}
}

// TestFractionalSeriesMatchesIntegerExpansion checks that the fractional-order series and the
// binomial expansion agree where they meet: orders a hair away from an integer.
func TestFractionalSeriesMatchesIntegerExpansion(t *testing.T) {
	tests := []struct{ q, sigma float64 }{
		{0.01, 0.8}, {0.04, 1.5}, {0.3, 3}, {1e-4, 10}, {0.9, 1.1},
	}
	for _, tt := range tests {
		for _, a := range []float64{2, 3, 7, 20, 60} {
			exact, err := SampledGaussianRDP(tt.q, tt.sigma, 1, []float64{a})
			require.NoError(t, err)
			near, err := SampledGaussianRDP(tt.q, tt.sigma, 1, []float64{a - 1e-7, a + 1e-7})
			require.NoError(t, err)
			// Log space leaves an absolute error near 1e-15 in log(A), hence the absolute floor.
			tol := math.Max(1e-6*exact[0], 1e-14)
			assert.InDelta(t, exact[0], near[0], tol, "q=%v sigma=%v order %v-", tt.q, tt.sigma, a)
			assert.InDelta(t, exact[0], near[1], tol, "q=%v sigma=%v order %v+", tt.q, tt.sigma, a)
		}
	}
}

// TestRDPMonotoneInOrderAndSigma checks two properties of Renyi divergence: it grows with the
// order and shrinks as the noise grows.
func TestRDPMonotoneInOrderAndSigma(t *testing.T) {
	orders := DefaultOrders()
	prev, err := SampledGaussianRDP(0.02, 0.9, 1, orders)
	require.NoError(t, err)
	for i := 1; i < len(orders); i++ {
		assert.GreaterOrEqual(t, prev[i], prev[i-1], "order %v", orders[i])
	}
	for _, sigma := range []float64{1, 1.5, 3, 10, 40} {
		next, err := SampledGaussianRDP(0.02, sigma, 1, orders)
		require.NoError(t, err)
		for i := range orders {
			assert.LessOrEqual(t, next[i], prev[i], "sigma %v order %v", sigma, orders[i])
		}
		prev = next
	}
}

func TestSampledGaussianRDPRejectsBadInput(t *testing.T) {
	tests := []struct {
		name   string
		q      float64
		sigma  float64
		steps  int
		orders []float64
	}{
		{"q above 1", 1.5, 1, 1, []float64{2}},
		{"negative q", -0.1, 1, 1, []float64{2}},
		{"NaN q", math.NaN(), 1, 1, []float64{2}},
		{"negative sigma", 0.1, -1, 1, []float64{2}},
		{"infinite sigma", 0.1, math.Inf(1), 1, []float64{2}},
		{"negative steps", 0.1, 1, -1, []float64{2}},
		{"order 1", 0.1, 1, 1, []float64{1}},
		{"order below 1", 0.1, 1, 1, []float64{0.5}},
		{"order NaN", 0.1, 1, 1, []float64{math.NaN()}},
		{"order too large", 0.1, 1, 1, []float64{MaxOrder + 1}},
		{"no orders", 0.1, 1, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SampledGaussianRDP(tt.q, tt.sigma, tt.steps, tt.orders)
			require.ErrorIs(t, err, ErrInvalidArgument)
		})
	}
}

func TestLogErfc(t *testing.T) {
	// Where erfc(x) is a normal float64, the asymptotic series and math.Erfc must agree.
	for _, x := range []float64{10, 15, 20, 25, 26} {
		inv2x2 := 1 / (2 * x * x)
		sum, term := 1.0, 1.0
		for n := 1; n < 100; n++ {
			term *= -float64(2*n-1) * inv2x2
			sum += term
		}
		asym := -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(sum)
		assert.InEpsilon(t, math.Log(math.Erfc(x)), asym, 1e-13, "x=%v", x)
	}
	// Beyond the switch, compare with the continued fraction
	// erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))),
	// an expansion independent of the asymptotic series.
	for _, x := range []float64{26.5, 30, 100, 1e4} {
		k := x
		for n := 300; n >= 1; n-- {
			k = x + float64(n)/2/k
		}
		assert.InEpsilon(t, -x*x-0.5*math.Log(math.Pi)-math.Log(k), logErfc(x), 1e-15, "x=%v", x)
	}
	below, above := logErfc(erfcAsymptoticFrom), logErfc(math.Nextafter(erfcAsymptoticFrom, 100))
	assert.InEpsilon(t, below, above, 1e-13)
	assert.Less(t, logErfc(1000), -1e6+1, "no underflow to -Inf for large x")
	assert.False(t, math.IsInf(logErfc(1e5), 0))
	assert.InDelta(t, math.Log(2), logErfc(-40), 1e-15)
	assert.Equal(t, 0.0, logErfc(0))
}

func TestLogAddSub(t *testing.T) {
	assert.InDelta(t, math.Log(5), logAdd(math.Log(2), math.Log(3)), 1e-15)
	assert.Equal(t, 1.5, logAdd(math.Inf(-1), 1.5))
	assert.InDelta(t, 1000+math.Log(2), logAdd(1000, 1000), 1e-12, "no overflow in log space")
	d, err := logSub(math.Log(5), math.Log(3))
	require.NoError(t, err)
	assert.InDelta(t, math.Log(2), d, 1e-15)
	d, err = logSub(2, 2)
	require.NoError(t, err)
	assert.True(t, math.IsInf(d, -1))
	d, err = logSub(800, math.Inf(-1))
	require.NoError(t, err)
	assert.Equal(t, 800.0, d)
	d, err = logSub(1000, 1)
	require.NoError(t, err)
	assert.Equal(t, 1000.0, d, "exp(1) is negligible next to exp(1000)")
	_, err = logSub(1, 2)
	require.ErrorIs(t, err, ErrNumerical)
}

func TestDefaultOrders(t *testing.T) {
	orders := DefaultOrders()
	require.Len(t, orders, 156)
	assert.Equal(t, 1.1, orders[0])
	assert.Equal(t, 10.9, orders[98])
	assert.Equal(t, 11.0, orders[99])
	assert.Equal(t, 63.0, orders[151])
	assert.Equal(t, []float64{128, 256, 512, 1024}, orders[152:])
	orders[0] = 99
	assert.Equal(t, 1.1, DefaultOrders()[0], "each call returns a fresh slice")
}

// BenchmarkSampledGaussianRDP measures one full curve at the default orders: the cost of a
// new (q, sigma) pair in the accountant.
func BenchmarkSampledGaussianRDP(b *testing.B) {
	orders := DefaultOrders()
	for b.Loop() {
		if _, err := SampledGaussianRDP(0.01, 1.1, 1, orders); err != nil {
			b.Fatal(err)
		}
	}
}
