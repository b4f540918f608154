package privacy

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAccountantMatchesOneShot: composing round by round equals the closed computation.
func TestAccountantMatchesOneShot(t *testing.T) {
	acc := NewAccountant(nil)
	for range 2250 {
		require.NoError(t, acc.Compose(0.04, 1.5, 1))
	}
	want, err := SampledGaussianRDP(0.04, 1.5, 2250, DefaultOrders())
	require.NoError(t, err)
	require.Len(t, acc.RDP, len(want))
	for i := range want {
		assert.InEpsilon(t, want[i], acc.RDP[i], 1e-12)
	}
	eps, _, err := acc.Epsilon(1e-5, Tight)
	require.NoError(t, err)
	oneShot, _, err := Epsilon(0.04, 1.5, 2250, 1e-5, nil, Tight)
	require.NoError(t, err)
	assert.InEpsilon(t, oneShot, eps, 1e-12)
}

// TestAccountantHeterogeneous: rounds with different (q, sigma) add up order by order, and
// epsilon lies between the parts' and their naive sum.
func TestAccountantHeterogeneous(t *testing.T) {
	orders := []float64{1.5, 2, 4, 8, 16, 32}
	acc := NewAccountant(orders)
	require.NoError(t, acc.Compose(0.01, 1.2, 300))
	require.NoError(t, acc.Compose(0.05, 2.0, 100))
	require.NoError(t, acc.Compose(0.01, 1.2, 0))
	a, err := SampledGaussianRDP(0.01, 1.2, 300, orders)
	require.NoError(t, err)
	b, err := SampledGaussianRDP(0.05, 2.0, 100, orders)
	require.NoError(t, err)
	for i := range orders {
		assert.InEpsilon(t, a[i]+b[i], acc.RDP[i], 1e-12)
	}
	total, _, err := acc.Epsilon(1e-5, Tight)
	require.NoError(t, err)
	epsA, _, err := EpsilonFromRDP(orders, a, 1e-5, Tight)
	require.NoError(t, err)
	epsB, _, err := EpsilonFromRDP(orders, b, 1e-5, Tight)
	require.NoError(t, err)
	assert.Greater(t, total, math.Max(epsA, epsB))
	assert.Less(t, total, epsA+epsB)
}

func TestAccountantBudget(t *testing.T) {
	// Round by round against RDP's one-shot value; TestPLDBudgetStop does the same with PLD.
	budget := Budget{Epsilon: 1, Delta: 1e-5, Conversion: Tight}
	acc := NewAccountant(nil)
	rounds := 0
	for {
		_, err := acc.ComposeWithin(0.01, 1.0, 1, budget)
		if err != nil {
			require.ErrorIs(t, err, ErrBudgetExceeded)
			assert.Contains(t, err.Error(), "budget 1 at delta 1e-05")
			break
		}
		rounds++
		require.Less(t, rounds, 100000, "the budget must run out")
	}
	spent, _, err := acc.Epsilon(budget.Delta, Tight)
	require.NoError(t, err)
	assert.LessOrEqual(t, spent, budget.Epsilon, "a refused round leaves the accountant unchanged")
	exceed, next, err := acc.WouldExceed(0.01, 1.0, 1, budget)
	require.NoError(t, err)
	assert.True(t, exceed)
	assert.Greater(t, next, budget.Epsilon)
	again, _, err := acc.Epsilon(budget.Delta, Tight)
	require.NoError(t, err)
	assert.Equal(t, spent, again, "WouldExceed does not compose")
	// The number of rounds agrees with the one-shot accountant.
	within, _, err := Epsilon(0.01, 1.0, rounds, 1e-5, nil, Tight)
	require.NoError(t, err)
	beyond, _, err := Epsilon(0.01, 1.0, rounds+1, 1e-5, nil, Tight)
	require.NoError(t, err)
	assert.LessOrEqual(t, within, 1.0)
	assert.Greater(t, beyond, 1.0)

	_, _, err = acc.WouldExceed(0.01, 1, 1, Budget{Epsilon: 0, Delta: 1e-5})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, _, err = acc.WouldExceed(0.01, 1, 1, Budget{Epsilon: 1, Delta: 1})
	require.ErrorIs(t, err, ErrInvalidArgument)
	exceed, next, err = NewAccountant(nil).WouldExceed(0.01, 0, 1, budget)
	require.NoError(t, err)
	assert.True(t, exceed, "a round without noise exceeds any budget")
	assert.True(t, math.IsInf(next, 1))
}

func TestAccountantComposeRejects(t *testing.T) {
	acc := NewAccountant([]float64{2, 4})
	before := acc.Clone()
	require.ErrorIs(t, acc.Compose(0.1, 0, 1), ErrInvalidArgument, "no noise, no finite guarantee")
	require.ErrorIs(t, acc.Compose(1.1, 1, 1), ErrInvalidArgument)
	require.ErrorIs(t, acc.Compose(0.1, 1, -1), ErrInvalidArgument)
	assert.Equal(t, before.RDP, acc.RDP)
	require.NoError(t, acc.Compose(0, 0, 5), "nobody sampled: nothing released")
	assert.Equal(t, before.RDP, acc.RDP)

	bad := &Accountant{Orders: []float64{2, 0.5}, RDP: []float64{0, 0}}
	require.ErrorIs(t, bad.Compose(0.1, 1, 1), ErrInvalidArgument)
	mismatch := &Accountant{Orders: []float64{2, 3}, RDP: []float64{0}}
	_, _, err := mismatch.Epsilon(1e-5, Tight)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

func TestAccountantSerialization(t *testing.T) {
	acc := NewAccountant(nil)
	require.NoError(t, acc.Compose(0.02, 1.1, 40))
	require.NoError(t, acc.Compose(0.03, 0.9, 7))

	raw, err := json.Marshal(acc)
	require.NoError(t, err)
	var fromJSON Accountant
	require.NoError(t, json.Unmarshal(raw, &fromJSON))
	assert.Equal(t, acc.Orders, fromJSON.Orders)
	assert.Equal(t, acc.RDP, fromJSON.RDP, "JSON round-trips float64 exactly")

	bin, err := acc.MarshalBinary()
	require.NoError(t, err)
	var fromBin Accountant
	require.NoError(t, fromBin.UnmarshalBinary(bin))
	assert.Equal(t, acc.Orders, fromBin.Orders)
	assert.Equal(t, acc.RDP, fromBin.RDP)

	// The restored accountant continues exactly as the original.
	require.NoError(t, acc.Compose(0.02, 1.1, 1))
	require.NoError(t, fromBin.Compose(0.02, 1.1, 1))
	assert.Equal(t, acc.RDP, fromBin.RDP)

	for name, data := range map[string][]byte{
		"empty":       nil,
		"bad version": append([]byte{9}, bin[1:]...),
		"truncated":   bin[:len(bin)-1],
		"trailing":    append(append([]byte{}, bin...), 0),
		"no orders":   {accountantBinaryVersion, 0},
	} {
		var a Accountant
		require.ErrorIs(t, a.UnmarshalBinary(data), ErrInvalidArgument, name)
	}

	// Three orders: the length is the single byte 3; the two-byte 0x83 0x00 also means 3 but is
	// not canonical, and is refused so that each state has exactly one encoding.
	small, err := NewAccountant([]float64{2, 3, 4}).MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, byte(3), small[1])
	var a Accountant
	require.NoError(t, a.UnmarshalBinary(small))
	nonCanonical := append([]byte{accountantBinaryVersion, 0x83, 0x00}, small[2:]...)
	require.ErrorIs(t, a.UnmarshalBinary(nonCanonical), ErrInvalidArgument)
}

func TestWorstEpsilon(t *testing.T) {
	branches := make([]*Accountant, 3)
	for i, steps := range []int{100, 900, 400} {
		branches[i] = NewAccountant(nil)
		require.NoError(t, branches[i].Compose(0.02, 1.0, steps))
	}
	eps, idx, err := WorstEpsilon(1e-5, Tight, branches...)
	require.NoError(t, err)
	assert.Equal(t, 1, idx)
	want, _, err := branches[1].Epsilon(1e-5, Tight)
	require.NoError(t, err)
	assert.Equal(t, want, eps)
	_, _, err = WorstEpsilon(1e-5, Tight)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, _, err = WorstEpsilon(1e-5, Tight, branches[0], nil)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

// BenchmarkAccountantComposeRound is the per-round cost for a mechanism already seen.
func BenchmarkAccountantComposeRound(b *testing.B) {
	acc := NewAccountant(nil)
	if err := acc.Compose(0.01, 1.1, 1); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := acc.Compose(0.01, 1.1, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSigmaWithinFitsWhatIsLeft: on an empty accountant SigmaWithin is SigmaFor; after a
// release it needs more noise for the same steps, and the result keeps the budget.
func TestSigmaWithinFitsWhatIsLeft(t *testing.T) {
	for _, conv := range []Conversion{Tight, PLD} {
		t.Run(conv.String(), func(t *testing.T) {
			budget := Budget{Epsilon: 1, Delta: 1e-5, Conversion: conv}
			want, err := SigmaFor(0.05, 300, 1e-5, 1, nil, conv)
			require.NoError(t, err)
			a := NewAccountant(nil)
			got, err := a.SigmaWithin(0.05, 300, budget)
			require.NoError(t, err)
			assert.InEpsilon(t, want, got, 1e-5)

			require.NoError(t, a.Compose(1, 20, 1))
			more, err := a.SigmaWithin(0.05, 300, budget)
			require.NoError(t, err)
			assert.Greater(t, more, got)
			exceed, _, err := a.WouldExceed(0.05, more, 300, budget)
			require.NoError(t, err)
			assert.False(t, exceed)

			require.NoError(t, a.Compose(1, 0.5, 50))
			_, err = a.SigmaWithin(0.05, 300, budget)
			require.ErrorIs(t, err, ErrTargetUnreachable, "nothing left")
		})
	}
}
