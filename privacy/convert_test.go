package privacy

import (
	"cmp"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEpsilonFromRDP(t *testing.T) {
	orders := []float64{2, 4, 8, 16, 32}
	tests := []struct {
		name      string
		orders    []float64
		rdp       []float64
		delta     float64
		conv      Conversion
		wantEps   float64
		wantOrder float64
	}{
		{
			// Pure DP: constant RDP. Closed form at the best order, from the reference's test.
			name: "constant rdp tight", orders: intRange(2, 33), rdp: constant(31, 1.1),
			delta: 1e-5, wantEps: 1.32783806176, wantOrder: 32,
		},
		{
			name: "constant rdp classic", orders: orders, rdp: constant(5, 1.1), delta: 1e-5,
			conv: Classic, wantEps: 1.1 - math.Log(1e-5)/31, wantOrder: 32,
		},
		{name: "delta zero and no loss", orders: orders, rdp: constant(5, 0), delta: 0, wantEps: 0, wantOrder: 0},
		{name: "delta zero with loss", orders: orders, rdp: constant(5, 0.1), delta: 0, wantEps: math.Inf(1), wantOrder: 0},
		{
			// delta^2 > 1 - exp(-RDP): the KL bound already gives epsilon 0.
			name: "KL bound", orders: orders, rdp: []float64{5e-11, 1, 1, 1, 1}, delta: 1e-5, wantEps: 0, wantOrder: 2,
		},
		{
			// Orders within 1.01 of 1 are useless for the tight bound: infinite, so the other wins.
			name: "order near 1 skipped", orders: []float64{1.005, 2}, rdp: []float64{0.001, 5}, delta: 1e-5,
			wantEps: 5 + math.Log(0.5) - math.Log(2e-5), wantOrder: 2,
		},
		{name: "order 1 classic", orders: []float64{1, 3}, rdp: []float64{0, 1}, delta: 1e-3, conv: Classic,
			wantEps: 1 - math.Log(1e-3)/2, wantOrder: 3},
		{name: "clamped at zero", orders: []float64{1024}, rdp: []float64{1e-6}, delta: 0.5,
			wantEps: 0, wantOrder: 1024},
		{name: "infinite rdp", orders: []float64{2, 3}, rdp: []float64{math.Inf(1), math.Inf(1)}, delta: 1e-5,
			wantEps: math.Inf(1), wantOrder: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps, order, err := EpsilonFromRDP(tt.orders, tt.rdp, tt.delta, cmp.Or(tt.conv, Tight))
			require.NoError(t, err)
			if math.IsInf(tt.wantEps, 1) || tt.wantEps == 0 {
				assert.Equal(t, tt.wantEps, eps)
			} else {
				assert.InEpsilon(t, tt.wantEps, eps, 1e-10)
			}
			assert.Equal(t, tt.wantOrder, order)
		})
	}
}

// TestTightNeverWorseThanClassic: log((a-1)/a) - log(a)/(a-1) < 0 for every a > 1.
func TestTightNeverWorseThanClassic(t *testing.T) {
	for _, sigma := range []float64{0.7, 1, 2, 5} {
		tight, _, err := Epsilon(0.01, sigma, 1000, 1e-5, nil, Tight)
		require.NoError(t, err)
		classic, _, err := Epsilon(0.01, sigma, 1000, 1e-5, nil, Classic)
		require.NoError(t, err)
		assert.Less(t, tight, classic, "sigma %v", sigma)
	}
}

func TestEpsilonFromRDPRejectsBadInput(t *testing.T) {
	tests := []struct {
		name   string
		orders []float64
		rdp    []float64
		delta  float64
		conv   Conversion
	}{
		{"order below 1", []float64{0.5, 2}, []float64{1, 1}, 1e-5, Tight},
		{"NaN order", []float64{math.NaN()}, []float64{1}, 1e-5, Tight},
		{"negative rdp", []float64{2}, []float64{-1}, 1e-5, Tight},
		{"NaN rdp", []float64{2}, []float64{math.NaN()}, 1e-5, Tight},
		{"negative delta", []float64{2}, []float64{1}, -1e-5, Tight},
		{"delta above 1", []float64{2}, []float64{1}, 1.5, Tight},
		{"length mismatch", []float64{2, 3}, []float64{1}, 1e-5, Tight},
		{"empty", nil, nil, 1e-5, Tight},
		{"unknown conversion", []float64{2}, []float64{1}, 1e-5, Conversion(7)},
		{"pld needs the composition", []float64{2}, []float64{1}, 1e-5, PLD},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := EpsilonFromRDP(tt.orders, tt.rdp, tt.delta, tt.conv)
			require.ErrorIs(t, err, ErrInvalidArgument)
		})
	}
}

func TestSigmaFor(t *testing.T) {
	tests := []struct {
		name    string
		q       float64
		steps   int
		delta   float64
		epsilon float64
		conv    Conversion
		want    float64 // 0: only check the defining property
	}{
		// The inverse of the published plain-Gaussian value.
		{name: "plain gaussian", q: 1, steps: 1, delta: 1e-6, epsilon: 1, want: 4.530877117},
		{name: "dp-sgd", q: 256.0 / 60000, steps: 14062, delta: 1e-5, epsilon: 3},
		{name: "dp-fedavg classic", q: 0.01, steps: 500, delta: 1e-6, epsilon: 2, conv: Classic},
		{name: "loose target", q: 0.001, steps: 10, delta: 1e-5, epsilon: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.conv = cmp.Or(tt.conv, Tight) // RDP's bisection; PLD's search is TestPLDSigmaFor
			sigma, err := SigmaFor(tt.q, tt.steps, tt.delta, tt.epsilon, nil, tt.conv)
			require.NoError(t, err)
			if tt.want != 0 {
				assert.InEpsilon(t, tt.want, sigma, 1e-6)
			}
			eps, _, err := Epsilon(tt.q, sigma, tt.steps, tt.delta, nil, tt.conv)
			require.NoError(t, err)
			assert.LessOrEqual(t, eps, tt.epsilon, "the returned sigma meets the target")
			below, _, err := Epsilon(tt.q, sigma*(1-10*SigmaTolerance), tt.steps, tt.delta, nil, tt.conv)
			require.NoError(t, err)
			assert.Greater(t, below, tt.epsilon, "a slightly smaller sigma does not")
		})
	}
}

func TestSigmaForErrors(t *testing.T) {
	_, err := SigmaFor(0, 10, 1e-5, 1, nil, Tight)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = SigmaFor(0.1, 0, 1e-5, 1, nil, Tight)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = SigmaFor(0.1, 10, 0, 1, nil, Tight)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = SigmaFor(0.1, 10, 1e-5, 0, nil, Tight)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = SigmaFor(0.1, 10, 1e-5, 1, []float64{0.5}, Tight)
	require.ErrorIs(t, err, ErrInvalidArgument)
	// With only order 2 the tight bound is about 10.1 at delta = 1e-5 until the RDP falls below
	// delta^2 (the KL bound); for q = 1 and 1000 steps that takes sigma > 3e6 > MaxSigma.
	_, err = SigmaFor(1, 1000, 1e-5, 1, []float64{2}, Tight)
	require.ErrorIs(t, err, ErrTargetUnreachable)
}

func TestParseConversion(t *testing.T) {
	tests := []struct {
		in      string
		want    Conversion
		wantErr bool
	}{
		{in: "tight", want: Tight},
		{in: "pld", want: PLD},
		{in: " PLD\n", want: PLD},
		{in: " Classic ", want: Classic},
		{in: "TIGHT", want: Tight},
		{in: "", wantErr: true},
		{in: "balle", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseConversion(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrInvalidArgument)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			text, err := got.MarshalText()
			require.NoError(t, err)
			var back Conversion
			require.NoError(t, back.UnmarshalText(text))
			assert.Equal(t, got, back)
		})
	}
	assert.Equal(t, PLD, Conversion(0), "the zero value is the default, pld")
	assert.Equal(t, "pld", PLD.Accountant())
	assert.Equal(t, "rdp", Classic.Accountant())
	_, err := Conversion(9).MarshalText()
	require.ErrorIs(t, err, ErrInvalidArgument)
}

func TestParseOrders(t *testing.T) {
	tests := []struct {
		in      string
		want    []float64
		wantErr bool
	}{
		{in: "1.5,2,4", want: []float64{1.5, 2, 4}},
		{in: " 1.25 , 64 ,1024", want: []float64{1.25, 64, 1024}},
		{in: "", wantErr: true},
		{in: "2,,3", wantErr: true},
		{in: "1", wantErr: true},
		{in: "0.5", wantErr: true},
		{in: "2,x", wantErr: true},
		{in: "NaN", wantErr: true},
		{in: "Inf", wantErr: true},
		{in: "1e9", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseOrders(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrInvalidArgument)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// intRange returns lo, lo+1, ..., hi-1 as float64.
func intRange(lo, hi int) []float64 {
	var out []float64
	for a := lo; a < hi; a++ {
		out = append(out, float64(a))
	}
	return out
}

// constant returns n copies of v.
func constant(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
