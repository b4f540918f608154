package privacy

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// phi is the standard normal CDF, written out here so that the reference values below do not
// lean on the code they check.
func phi(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }

// refGaussianDelta is the exact hockey-stick divergence of the Gaussian mechanism with sensitivity
// 1 and noise s (Balle and Wang 2018, Theorem 8).
func refGaussianDelta(s, eps float64) float64 {
	return phi(-eps*s+1/(2*s)) - math.Exp(eps)*phi(-eps*s-1/(2*s))
}

// refGaussianEpsilon inverts refGaussianDelta by bisection to far below the tolerances tested.
func refGaussianEpsilon(s, delta float64) float64 {
	lo, hi := 0.0, 1.0
	for refGaussianDelta(s, hi) > delta {
		hi *= 2
	}
	for range 200 {
		mid := (lo + hi) / 2
		if refGaussianDelta(s, mid) > delta {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// TestPLDMatchesClosedFormGaussian: with q = 1, T steps of noise sigma compose to one Gaussian
// mechanism of noise sigma/sqrt(T), whose (epsilon, delta) curve is known exactly. The
// accountant composes q = 1 terms in closed form, so its answer is exact; the numerical path
// (T discretised steps composed by FFT, what every subsampled term goes through) is checked
// here too: never below the exact epsilon (it is an upper bound) and never more than 1e-4
// above it.
func TestPLDMatchesClosedFormGaussian(t *testing.T) {
	tests := []struct {
		sigma float64
		steps int
		delta float64
	}{
		{sigma: 0.6, steps: 1, delta: 1e-5},
		{sigma: 1, steps: 1, delta: 1e-5},
		{sigma: 4.530877117, steps: 1, delta: 1e-6},
		{sigma: 2, steps: 10, delta: 1e-5},
		{sigma: 10, steps: 100, delta: 1e-5},
		{sigma: 10, steps: 100, delta: 1e-3},
		{sigma: 30, steps: 1000, delta: 1e-7},
		{sigma: 50, steps: 10000, delta: 1e-5},
		{sigma: 100, steps: 10000, delta: 1e-5},
		{sigma: 300, steps: 10000, delta: 1e-6},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("sigma=%v steps=%d delta=%g", tt.sigma, tt.steps, tt.delta), func(t *testing.T) {
			s := tt.sigma / math.Sqrt(float64(tt.steps))
			exact := refGaussianEpsilon(s, tt.delta)
			mech := []SampledGaussian{{Q: 1, Sigma: tt.sigma, Steps: tt.steps}}

			numeric, err := composedPLD(mech, removeRecord)
			require.NoError(t, err)
			got := numeric.epsilon(tt.delta)
			assert.GreaterOrEqual(t, got, exact-1e-9, "an upper bound")
			assert.InDelta(t, exact, got, 1e-4)
			d := numeric.delta(exact)
			assert.GreaterOrEqual(t, d, tt.delta*(1-1e-9), "delta is an upper bound too")
			assert.InEpsilon(t, tt.delta, d, 0.01)

			closed, err := PLDEpsilon(mech, tt.delta)
			require.NoError(t, err)
			assert.InEpsilon(t, exact, closed, 1e-12)
			closedDelta, err := PLDDelta(mech, exact)
			require.NoError(t, err)
			assert.InEpsilon(t, tt.delta, closedDelta, 1e-9)
		})
	}
}

// TestPLDComposesDifferentMechanisms: Gaussian mechanisms of noise s_i compose to one of noise
// s with 1/s^2 = sum 1/s_i^2, which checks the FFT composition of distinct distributions
// against a closed form; a run's mixed composition lies above its parts and below RDP, and
// the accountant reports the same.
func TestPLDComposesDifferentMechanisms(t *testing.T) {
	parts := []SampledGaussian{{Q: 1, Sigma: 2, Steps: 3}, {Q: 1, Sigma: 5, Steps: 1}, {Q: 1, Sigma: 20, Steps: 40}}
	inv := 0.0
	for _, p := range parts {
		inv += float64(p.Steps) / (p.Sigma * p.Sigma)
	}
	exact := refGaussianEpsilon(1/math.Sqrt(inv), 1e-5)
	numeric, err := composedPLD(parts, removeRecord)
	require.NoError(t, err)
	got := numeric.epsilon(1e-5)
	assert.GreaterOrEqual(t, got, exact-1e-9)
	assert.InDelta(t, exact, got, 1e-4)
	closed, err := PLDEpsilon(parts, 1e-5)
	require.NoError(t, err)
	assert.InEpsilon(t, exact, closed, 1e-12)

	// Statistics (q = 1), rounds (q = 0.02) and evaluations (q = 1), as a run composes them.
	run := []SampledGaussian{{Q: 1, Sigma: 50, Steps: 1}, {Q: 0.02, Sigma: 1.1, Steps: 500}, {Q: 1, Sigma: 30, Steps: 10}}
	total, err := PLDEpsilon(run, 1e-5)
	require.NoError(t, err)
	acc := NewAccountant(nil)
	for _, m := range run {
		eps, err := PLDEpsilon([]SampledGaussian{m}, 1e-5)
		require.NoError(t, err)
		assert.Greater(t, total, eps, "more releases cost more")
		require.NoError(t, acc.Compose(m.Q, m.Sigma, m.Steps))
	}
	rdp, _, err := acc.Epsilon(1e-5, Tight)
	require.NoError(t, err)
	assert.Less(t, total, rdp)
	viaAccountant, _, err := acc.Epsilon(1e-5, PLD)
	require.NoError(t, err)
	assert.Equal(t, total, viaAccountant)
}

// TestPLDNeverExceedsRDP: on the grid of the issue, the PLD epsilon (raw, not the accountant's
// minimum with RDP) is at most RDP's with the tight conversion.
func TestPLDNeverExceedsRDP(t *testing.T) {
	for _, q := range []float64{0.001, 0.01, 0.1} {
		for _, sigma := range []float64{0.6, 1, 2, 4} {
			for _, steps := range []int{1, 100, 10000} {
				t.Run(fmt.Sprintf("q=%v sigma=%v steps=%d", q, sigma, steps), func(t *testing.T) {
					pld, err := PLDEpsilon([]SampledGaussian{{Q: q, Sigma: sigma, Steps: steps}}, 1e-5)
					require.NoError(t, err)
					rdp, _, err := Epsilon(q, sigma, steps, 1e-5, nil, Tight)
					require.NoError(t, err)
					assert.LessOrEqual(t, pld, rdp)
					assert.Positive(t, pld)
				})
			}
		}
	}
}

// TestPLDReferenceFigure is the figure: q = 0.01, sigma = 0.8, 10 steps at delta 1e-5,
// where RDP says 1.78 and PLD about 0.90; and Google dp_accounting's test value for q = 0.2,
// sigma = 0.5, 3 steps: delta 0.15594 at epsilon 1.
func TestPLDReferenceFigure(t *testing.T) {
	pld, order, err := Epsilon(0.01, 0.8, 10, 1e-5, nil, PLD)
	require.NoError(t, err)
	assert.InDelta(t, 0.90, pld, 0.005)
	assert.Zero(t, order, "the PLD bound is the smaller")
	rdp, _, err := Epsilon(0.01, 0.8, 10, 1e-5, nil, Tight)
	require.NoError(t, err)
	assert.InDelta(t, 1.78, rdp, 0.005)

	d, err := PLDDelta([]SampledGaussian{{Q: 0.2, Sigma: 0.5, Steps: 3}}, 1)
	require.NoError(t, err)
	assert.InDelta(t, 0.15594, d, 2e-5)
}

// subsampledDelta is the exact delta of one step of the Poisson-subsampled Gaussian at eps:
// the larger of the remove pair ((1-q)N(0,s^2) + qN(1,s^2) against N(0,s^2)) and the add pair.
// The privacy loss is monotone in the output x, so the optimal set is a half-line.
func subsampledDelta(q, sigma, eps float64) float64 {
	tail := func(z float64) float64 { return phi(-z) }
	remove, add := 0.0, 0.0
	if d := math.Exp(eps) - (1 - q); d > 0 {
		x := sigma*sigma*math.Log(d/q) + 0.5 // loss > eps beyond x
		remove = q*tail((x-1)/sigma) - d*tail(x/sigma)
	}
	if d := math.Exp(-eps) - (1 - q); d > 0 {
		x := sigma*sigma*math.Log(d/q) + 0.5 // add loss > eps below x
		add = phi(x/sigma) - math.Exp(eps)*((1-q)*phi(x/sigma)+q*phi((x-1)/sigma))
	}
	return math.Max(remove, add)
}

// TestPLDOneSubsampledStepIsExactUpToItsGrid: for one step the exact delta is known, and the
// PLD's is never below it and within a millionth of it relative.
func TestPLDOneSubsampledStepIsExactUpToItsGrid(t *testing.T) {
	for _, tt := range []struct{ q, sigma, eps float64 }{
		{0.01, 0.8, 0.5}, {0.01, 0.8, 2}, {0.1, 0.6, 1}, {0.5, 1, 0.3}, {0.001, 4, 0.0005}, {0.2, 2, 0.05},
	} {
		t.Run(fmt.Sprintf("q=%v sigma=%v eps=%v", tt.q, tt.sigma, tt.eps), func(t *testing.T) {
			exact := subsampledDelta(tt.q, tt.sigma, tt.eps)
			got, err := PLDDelta([]SampledGaussian{{Q: tt.q, Sigma: tt.sigma, Steps: 1}}, tt.eps)
			require.NoError(t, err)
			assert.GreaterOrEqual(t, got, exact*(1-1e-9))
			assert.InEpsilon(t, exact, got, 1e-6)
		})
	}
}

// TestPLDCompositionAlgebra: steps of the same mechanism merge, the order of terms does not
// matter, more steps, more sampling and less noise cost more, and nothing released costs
// nothing.
func TestPLDCompositionAlgebra(t *testing.T) {
	eps := func(mechs ...SampledGaussian) float64 {
		t.Helper()
		e, err := PLDEpsilon(mechs, 1e-5)
		require.NoError(t, err)
		return e
	}
	a, b := SampledGaussian{Q: 0.05, Sigma: 1.2, Steps: 30}, SampledGaussian{Q: 1, Sigma: 8, Steps: 2}
	assert.Equal(t, eps(SampledGaussian{Q: 0.05, Sigma: 1.2, Steps: 12}), eps(SampledGaussian{Q: 0.05, Sigma: 1.2, Steps: 5}, SampledGaussian{Q: 0.05, Sigma: 1.2, Steps: 7}))
	assert.Equal(t, eps(a, b), eps(b, a))
	assert.Equal(t, eps(a), eps(a, SampledGaussian{Q: 0, Sigma: 1, Steps: 9}, SampledGaussian{Q: 0.3, Sigma: 1, Steps: 0}))
	assert.Less(t, eps(a), eps(SampledGaussian{Q: 0.05, Sigma: 1.2, Steps: 31}))
	assert.Less(t, eps(a), eps(SampledGaussian{Q: 0.06, Sigma: 1.2, Steps: 30}))
	assert.Less(t, eps(a), eps(SampledGaussian{Q: 0.05, Sigma: 1.1, Steps: 30}))
	assert.Zero(t, eps())
	assert.True(t, math.IsInf(eps(a, SampledGaussian{Q: 0.1, Sigma: 0, Steps: 1}), 1), "no noise, no finite epsilon")
}

func TestPLDRejectsBadInput(t *testing.T) {
	good := []SampledGaussian{{Q: 0.1, Sigma: 1, Steps: 10}}
	for name, tt := range map[string]struct {
		mechs []SampledGaussian
		delta float64
	}{
		"q above 1":      {[]SampledGaussian{{Q: 1.5, Sigma: 1, Steps: 1}}, 1e-5},
		"negative q":     {[]SampledGaussian{{Q: -0.1, Sigma: 1, Steps: 1}}, 1e-5},
		"NaN sigma":      {[]SampledGaussian{{Q: 0.1, Sigma: math.NaN(), Steps: 1}}, 1e-5},
		"infinite sigma": {[]SampledGaussian{{Q: 0.1, Sigma: math.Inf(1), Steps: 1}}, 1e-5},
		"negative steps": {[]SampledGaussian{{Q: 0.1, Sigma: 1, Steps: -1}}, 1e-5},
		"delta above 1":  {good, 1.5},
		"NaN delta":      {good, math.NaN()},
	} {
		_, err := PLDEpsilon(tt.mechs, tt.delta)
		require.ErrorIs(t, err, ErrInvalidArgument, name)
	}
	_, err := PLDDelta(good, -1)
	require.ErrorIs(t, err, ErrInvalidArgument)
	e, err := PLDEpsilon(good, 0)
	require.NoError(t, err)
	assert.True(t, math.IsInf(e, 1), "delta 0 is unreachable with Gaussian noise")
}

// TestCoarsenPartsIsPessimistic: beyond maxPLDParts distinct mechanisms, each is replaced by
// one with no more noise and no less sampling, and no step is lost.
func TestCoarsenPartsIsPessimistic(t *testing.T) {
	var parts []SampledGaussian
	total := 0
	for k := range 40 {
		// Noise shortfalls: z*sqrt(k/m) for k of m = 40 contributors.
		parts = append(parts, SampledGaussian{Q: 0.1, Sigma: 2 * math.Sqrt(float64(k+1)/40), Steps: k + 1})
		total += k + 1
	}
	merged := coarsenParts(parts)
	require.LessOrEqual(t, len(merged), maxPLDParts)
	steps := 0
	for _, m := range merged {
		steps += m.Steps
	}
	assert.Equal(t, total, steps)
	for _, p := range parts {
		// Some merged mechanism dominates p, and is not far from it.
		dominated := false
		for _, m := range merged {
			dominated = dominated || (m.Sigma <= p.Sigma && m.Q >= p.Q && m.Sigma >= p.Sigma*0.8)
		}
		assert.True(t, dominated, "sigma %v", p.Sigma)
	}
	coarse, err := PLDEpsilon(parts, 1e-5)
	require.NoError(t, err)
	fine := NewAccountant(nil)
	for _, p := range parts {
		require.NoError(t, fine.Compose(p.Q, p.Sigma, p.Steps))
	}
	rdp, _, err := fine.Epsilon(1e-5, Tight)
	require.NoError(t, err)
	assert.Less(t, coarse, rdp, "merging costs little")
}

// TestPLDSigmaFor: the noise found under PLD meets the target, a slightly smaller one does
// not, and it is below RDP's.
func TestPLDSigmaFor(t *testing.T) {
	for _, tt := range []struct {
		q              float64
		steps          int
		delta, epsilon float64
	}{
		{q: 1, steps: 1, delta: 1e-6, epsilon: 1},
		{q: 0.01, steps: 1000, delta: 1e-5, epsilon: 2},
		{q: 0.2, steps: 50, delta: 1e-5, epsilon: 1},
	} {
		t.Run(fmt.Sprintf("q=%v steps=%d", tt.q, tt.steps), func(t *testing.T) {
			sigma, err := SigmaFor(tt.q, tt.steps, tt.delta, tt.epsilon, nil, PLD)
			require.NoError(t, err)
			eps, _, err := Epsilon(tt.q, sigma, tt.steps, tt.delta, nil, PLD)
			require.NoError(t, err)
			assert.LessOrEqual(t, eps, tt.epsilon)
			below, _, err := Epsilon(tt.q, sigma*(1-100*PLDSigmaTolerance), tt.steps, tt.delta, nil, PLD)
			require.NoError(t, err)
			assert.Greater(t, below, tt.epsilon)
			rdp, err := SigmaFor(tt.q, tt.steps, tt.delta, tt.epsilon, nil, Tight)
			require.NoError(t, err)
			assert.Less(t, sigma, rdp)
			if tt.q == 1 {
				// One Gaussian step: sigma meets the closed form.
				assert.InEpsilon(t, refGaussianEpsilon(sigma, tt.delta), tt.epsilon, 1e-4)
			}
		})
	}
}

// TestPLDBudgetStop: the accountant's budget stop under PLD lets the run go exactly as far as
// the one-shot PLD epsilon allows, which is further than RDP.
func TestPLDBudgetStop(t *testing.T) {
	budget := Budget{Epsilon: 1, Delta: 1e-5} // PLD, the zero value
	acc := NewAccountant(nil)
	rounds := 0
	for {
		// 100 DP-SGD steps a round.
		if _, err := acc.ComposeWithin(0.01, 1, 100, budget); err != nil {
			require.ErrorIs(t, err, ErrBudgetExceeded)
			break
		}
		rounds++
		require.Less(t, rounds, 1000)
	}
	within, err := PLDEpsilon([]SampledGaussian{{Q: 0.01, Sigma: 1, Steps: 100 * rounds}}, 1e-5)
	require.NoError(t, err)
	beyond, err := PLDEpsilon([]SampledGaussian{{Q: 0.01, Sigma: 1, Steps: 100 * (rounds + 1)}}, 1e-5)
	require.NoError(t, err)
	assert.LessOrEqual(t, within, 1.0)
	assert.Greater(t, beyond, 1.0)
	rdp, _, err := Epsilon(0.01, 1, 100*rounds, 1e-5, nil, Tight)
	require.NoError(t, err)
	assert.Greater(t, rdp, 1.0, "RDP would have stopped earlier")
}

// TestAccountantKeepsItsHistory: the history survives JSON and binary encoding, and state
// written before it was kept falls back to RDP, which is still an upper bound.
func TestAccountantKeepsItsHistory(t *testing.T) {
	acc := NewAccountant(nil)
	require.NoError(t, acc.Compose(0.02, 1.1, 40))
	require.NoError(t, acc.Compose(1, 30, 1))
	require.NoError(t, acc.Compose(0.02, 1.1, 2))
	require.NoError(t, acc.Compose(0, 1, 5))
	assert.Equal(t, []SampledGaussian{{Q: 0.02, Sigma: 1.1, Steps: 42}, {Q: 1, Sigma: 30, Steps: 1}}, acc.History)
	want, order, err := acc.Epsilon(1e-5, PLD)
	require.NoError(t, err)
	assert.Zero(t, order)

	raw, err := json.Marshal(acc)
	require.NoError(t, err)
	var fromJSON Accountant
	require.NoError(t, json.Unmarshal(raw, &fromJSON))
	bin, err := acc.MarshalBinary()
	require.NoError(t, err)
	var fromBin Accountant
	require.NoError(t, fromBin.UnmarshalBinary(bin))
	for _, restored := range []*Accountant{&fromJSON, &fromBin, acc.Clone()} {
		assert.Equal(t, acc.History, restored.History)
		assert.True(t, restored.HistoryComplete)
		got, _, err := restored.Epsilon(1e-5, PLD)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}

	// State from before the history: the JSON has only Orders and RDP.
	var legacy Accountant
	require.NoError(t, json.Unmarshal(fmt.Appendf(nil, `{"Orders":%s,"RDP":%s}`, mustJSON(t, acc.Orders), mustJSON(t, acc.RDP)), &legacy))
	rdp, rdpOrder, err := acc.Epsilon(1e-5, Tight)
	require.NoError(t, err)
	got, gotOrder, err := legacy.Epsilon(1e-5, PLD)
	require.NoError(t, err)
	assert.Equal(t, rdp, got, "no history: RDP's epsilon")
	assert.Equal(t, rdpOrder, gotOrder)
	require.NoError(t, legacy.Compose(1, 30, 1))
	assert.False(t, legacy.HistoryComplete, "a partial history stays partial")
	old, err := (&Accountant{Orders: acc.Orders, RDP: acc.RDP}).MarshalBinary()
	require.NoError(t, err)
	assert.Equal(t, byte(accountantBinaryVersion), old[0], "state without history keeps version 1")

	// An empty legacy accountant has nothing to miss.
	empty := &Accountant{Orders: []float64{2, 4}, RDP: []float64{0, 0}}
	require.NoError(t, empty.Compose(0.1, 1, 3))
	assert.True(t, empty.HistoryComplete)

	// The tail: the flag, the count (1 byte) and two entries of 8 + 8 + 1 bytes.
	badFlag := append([]byte{}, bin...)
	badFlag[len(bin)-1-1-2*17] = 7
	for name, data := range map[string][]byte{
		"bad flag":          badFlag,
		"truncated history": bin[:len(bin)-3],
		"trailing":          append(append([]byte{}, bin...), 0),
	} {
		var a Accountant
		require.ErrorIs(t, a.UnmarshalBinary(data), ErrInvalidArgument, name)
	}
	bad := acc.Clone()
	bad.History[0].Sigma = 0
	_, err = bad.MarshalBinary()
	require.ErrorIs(t, err, ErrInvalidArgument, "a history entry without noise is not valid state")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// TestLedgerUsesPLD: a client's ledger reports the default accountant's epsilon.
func TestLedgerUsesPLD(t *testing.T) {
	l := NewLedger(Floor{MaxEpsilon: 1.5})
	_, err := l.Admit(0.01, 0.8, 10)
	require.NoError(t, err)
	pld, err := PLDEpsilon([]SampledGaussian{{Q: 0.01, Sigma: 0.8, Steps: 10}}, 1e-5)
	require.NoError(t, err)
	assert.Equal(t, pld, l.Epsilon())
	// RDP would refuse this second release (1.78 + more > 1.5); PLD admits it.
	eps, err := l.Admit(0.01, 0.8, 10)
	require.NoError(t, err)
	assert.Less(t, eps, 1.5)
}

// BenchmarkPLDEpsilon is one accountant call, cold (nothing cached: every step built and
// composed) and warm (the composition cached, as when the coordinator records the round it
// has just checked against the budget): go test ./privacy/ -run '^$' -bench PLDEpsilon.
func BenchmarkPLDEpsilon(b *testing.B) {
	for _, m := range []SampledGaussian{
		{Q: 0.01, Sigma: 1, Steps: 10000},
		{Q: 0.1, Sigma: 4, Steps: 10000},
		{Q: 1, Sigma: 100, Steps: 10000},
		{Q: 0.01, Sigma: 0.8, Steps: 10},
	} {
		b.Run(fmt.Sprintf("cold q=%v sigma=%v steps=%d", m.Q, m.Sigma, m.Steps), func(b *testing.B) {
			for b.Loop() {
				resetPLDCaches()
				if _, err := PLDEpsilon([]SampledGaussian{m}, 1e-5); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("next round, steps cached", func(b *testing.B) {
		resetPLDCaches()
		round := 0
		for b.Loop() {
			round++
			if _, err := PLDEpsilon([]SampledGaussian{{Q: 0.01, Sigma: 1, Steps: 100 * round}, {Q: 1, Sigma: 30, Steps: round}}, 1e-5); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func resetPLDCaches() {
	pldCaches.steps = newLRU[stepKey, *stepPLD](32)
	pldCaches.spectra = newSpectrumCache()
	pldCaches.powers = newPowersCache()
	pldCaches.composed = newLRU[string, *pldComposition](4)
	pldCaches.epsilon = newLRU[epsKey, float64](1024)
	pldCaches.sigma = newLRU[sigmaKey, float64](256)
}

// TestPLDCachesAreSafeForConcurrentUse: accountants in different goroutines (clients of a
// simulation, the coordinator's driver) share the process-wide caches.
func TestPLDCachesAreSafeForConcurrentUse(t *testing.T) {
	want, err := PLDEpsilon([]SampledGaussian{{Q: 0.05, Sigma: 1.3, Steps: 20}}, 1e-5)
	require.NoError(t, err)
	results := make([]float64, 4)
	errs := make([]error, 4)
	done := make(chan struct{})
	for i := range results {
		go func() {
			defer func() { done <- struct{}{} }()
			a := NewAccountant(nil)
			if errs[i] = a.Compose(0.05, 1.3, 20); errs[i] == nil {
				results[i], _, errs[i] = a.Epsilon(1e-5, PLD)
			}
		}()
	}
	for range results {
		<-done
	}
	for i := range results {
		require.NoError(t, errs[i])
		assert.Equal(t, want, results[i])
	}
}
