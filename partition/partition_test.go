package partition_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/partition"
)

func newRng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// labels returns n labels, about a tenth of them positive.
func labels(n int, seed uint64) []float64 {
	rng := newRng(seed)
	y := make([]float64, n)
	for i := range y {
		if rng.Float64() < 0.1 {
			y[i] = 1
		}
	}
	return y
}

// requireExactCover checks that parts are sorted and hold every row of 0..n-1 exactly once.
func requireExactCover(t *testing.T, n int, parts [][]int) {
	t.Helper()
	seen := make([]bool, n)
	for k, p := range parts {
		require.True(t, slices.IsSorted(p), "part %d is not sorted", k)
		for _, r := range p {
			require.True(t, r >= 0 && r < n, "row %d out of range", r)
			require.False(t, seen[r], "row %d is in two parts", r)
			seen[r] = true
		}
	}
	for r, ok := range seen {
		require.True(t, ok, "row %d is in no part", r)
	}
}

type method struct {
	name string
	run  func(n, clients int, alpha float64, rng *rand.Rand) ([][]int, error)
}

func allMethods() []method {
	return []method{
		{"iid", func(n, c int, _ float64, rng *rand.Rand) ([][]int, error) { return partition.IID(n, c, rng) }},
		{"quantity", partition.Quantity},
		{"dirichlet", func(n, c int, a float64, rng *rand.Rand) ([][]int, error) {
			return partition.Dirichlet(labels(n, uint64(n)), c, a, rng)
		}},
	}
}

func TestPartitionsCoverEveryRowOnce(t *testing.T) {
	cases := []struct{ n, clients int }{{1, 1}, {10, 10}, {1000, 7}, {5000, 100}, {2000, 1000}}
	for _, m := range allMethods() {
		for _, c := range cases {
			for _, alpha := range []float64{0.01, 0.5, 100} {
				parts, err := m.run(c.n, c.clients, alpha, newRng(1))
				require.NoError(t, err, "%s n=%d clients=%d alpha=%v", m.name, c.n, c.clients, alpha)
				require.Len(t, parts, c.clients)
				requireExactCover(t, c.n, parts)
				for k, p := range parts {
					require.GreaterOrEqual(t, len(p), partition.MinRows(c.n, c.clients), "%s: client %d too small", m.name, k)
				}
			}
		}
	}
}

func TestPartitionsAreDeterministic(t *testing.T) {
	for _, m := range allMethods() {
		a, err := m.run(3000, 20, 0.3, newRng(42))
		require.NoError(t, err)
		b, err := m.run(3000, 20, 0.3, newRng(42))
		require.NoError(t, err)
		c, err := m.run(3000, 20, 0.3, newRng(43))
		require.NoError(t, err)
		assert.Equal(t, a, b, m.name)
		assert.NotEqual(t, a, c, m.name)
	}
}

func TestPartitionErrors(t *testing.T) {
	tests := []struct {
		name           string
		n, clients     int
		alpha          float64
		nilRng, iidErr bool
	}{
		{"no clients", 10, 0, 1, false, true},
		{"negative clients", 10, -2, 1, false, true},
		{"more clients than rows", 3, 4, 1, false, true},
		{"nil rng", 10, 2, 1, true, true},
		{"zero alpha", 10, 2, 0, false, false},
		{"negative alpha", 10, 2, -1, false, false},
		{"NaN alpha", 10, 2, math.NaN(), false, false},
		{"infinite alpha", 10, 2, math.Inf(1), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRng(1)
			if tt.nilRng {
				rng = nil
			}
			for _, m := range allMethods() {
				_, err := m.run(tt.n, tt.clients, tt.alpha, rng)
				if m.name == "iid" && !tt.iidErr {
					require.NoError(t, err)
					continue
				}
				require.ErrorIs(t, err, partition.ErrBadArgument, m.name)
			}
		})
	}
	_, err := partition.Dirichlet([]float64{0, math.NaN()}, 1, 1, newRng(1))
	require.ErrorIs(t, err, partition.ErrBadArgument)
}

func TestIIDSizesDifferByAtMostOne(t *testing.T) {
	parts, err := partition.IID(103, 10, newRng(5))
	require.NoError(t, err)
	for _, p := range parts {
		assert.Contains(t, []int{10, 11}, len(p))
	}
}

// positiveShareSpread is the standard deviation over clients of the share of positives.
func positiveShareSpread(y []float64, parts [][]int) float64 {
	var shares []float64
	for _, p := range parts {
		pos := 0.0
		for _, r := range p {
			pos += y[r]
		}
		shares = append(shares, pos/float64(len(p)))
	}
	mean := 0.0
	for _, s := range shares {
		mean += s
	}
	mean /= float64(len(shares))
	v := 0.0
	for _, s := range shares {
		v += (s - mean) * (s - mean)
	}
	return math.Sqrt(v / float64(len(shares)))
}

func TestDirichletSkewFollowsAlpha(t *testing.T) {
	y := labels(20000, 9)
	skewed, err := partition.Dirichlet(y, 20, 0.1, newRng(1))
	require.NoError(t, err)
	near, err := partition.Dirichlet(y, 20, 1000, newRng(1))
	require.NoError(t, err)
	iid, err := partition.IID(len(y), 20, newRng(1))
	require.NoError(t, err)

	s, n, i := positiveShareSpread(y, skewed), positiveShareSpread(y, near), positiveShareSpread(y, iid)
	assert.Greater(t, s, 0.1, "alpha 0.1 should give very different positive rates")
	assert.Less(t, n, 0.02, "alpha 1000 should be close to IID")
	assert.Less(t, i, 0.02)
}

func TestDirichletTopsUpSmallClients(t *testing.T) {
	// With alpha 0.001 nearly every class goes to one client, so redraws cannot help and
	// the top-up has to give the other 49 clients their rows.
	n, clients := 1000, 50
	parts, err := partition.Dirichlet(labels(n, 3), clients, 0.001, newRng(2))
	require.NoError(t, err)
	requireExactCover(t, n, parts)
	floor := partition.MinRows(n, clients)
	assert.Equal(t, 10, floor)
	small := 0
	for _, p := range parts {
		require.GreaterOrEqual(t, len(p), floor)
		if len(p) == floor {
			small++
		}
	}
	assert.Greater(t, small, clients/2, "most clients should have been topped up to exactly the floor")
}

func TestQuantitySkewFollowsAlpha(t *testing.T) {
	skewed, err := partition.Quantity(10000, 10, 0.1, newRng(1))
	require.NoError(t, err)
	even, err := partition.Quantity(10000, 10, 1e4, newRng(1))
	require.NoError(t, err)
	maxLen := func(parts [][]int) int {
		m := 0
		for _, p := range parts {
			m = max(m, len(p))
		}
		return m
	}
	assert.Greater(t, maxLen(skewed), 3000)
	assert.Less(t, maxLen(even), 1100)
}

func TestMinRows(t *testing.T) {
	tests := []struct{ n, clients, want int }{
		{45211, 10, 10}, {1000000, 100000, 5}, {30, 10, 1}, {5, 10, 1}, {10, 0, 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, partition.MinRows(tt.n, tt.clients), "n=%d clients=%d", tt.n, tt.clients)
	}
}

func TestNatural(t *testing.T) {
	names, parts := partition.Natural([]string{"south", "north", "south", "east", "north", "south"})
	assert.Equal(t, []string{"east", "north", "south"}, names)
	assert.Equal(t, [][]int{{3}, {1, 4}, {0, 2, 5}}, parts)
	requireExactCover(t, 6, parts)

	names, parts = partition.Natural(nil)
	assert.Empty(t, names)
	assert.Empty(t, parts)
}
