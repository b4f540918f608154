package secagg

import (
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEndToEndMatchesPlaintextSum(t *testing.T) {
	p := testParams(t)
	tests := []struct {
		name          string
		n, threshold  int
		contributions int
		length        int
		magnitude     float64
		activeSets    [][]int
	}{
		{"N5T3 2000 values", 5, 3, 10, 2000, 1e3, [][]int{{1, 2, 3}, {3, 4, 5}, {1, 3, 5}}},
		{"N10T6 2000 values", 10, 6, 12, 2000, 1e3, [][]int{{1, 2, 3, 4, 5, 6}, {5, 6, 7, 8, 9, 10}, {1, 3, 4, 7, 9, 10}}},
		{"N5T3 5000 values over 3 ciphertexts", 5, 3, 10, 5000, 1e3, [][]int{{2, 4, 5}, {1, 2, 5}}},
		{"N10T6 large magnitudes", 10, 6, 10, 300, 1e9, [][]int{{2, 3, 5, 7, 8, 9}}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := setupCommittee(t, p, tc.n, tc.threshold, uint64(i+1))
			r := mrand.New(mrand.NewPCG(uint64(i), 7))
			vectors := randomVectors(r, tc.contributions, tc.length, tc.magnitude)
			want := gridSum(p, vectors)
			aggregate := encryptAndSum(t, p, c.publicKey, vectors)
			for _, active := range tc.activeSets {
				got := c.decrypt(t, aggregate, active)
				require.Len(t, got, tc.length)
				diff, scale := maxAbsDiff(got, want)
				t.Logf("active %v: max abs error %.3g on sums up to %.3g (relative %.3g)", active, diff, scale, diff/scale)
				// Inputs are rounded to the release grid, so the released sum is exact up to
				// float64 decoding (~1e-16 of the magnitude): far below one grid step.
				assert.LessOrEqual(t, diff, 1e-15*scale, "active set %v", active)
			}
		})
	}
}

// TestDecryptionNoiseIsBelowTheReleaseGrid measures the raw error of a decrypted sum (no
// release rounding) for 100 contributions and T=6, and checks it stays far below the 2^-30
// grid the released values are rounded to, so that the rounding removes it.
func TestDecryptionNoiseIsBelowTheReleaseGrid(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 10, 6, 200)
	vectors := randomVectors(mrand.New(mrand.NewPCG(20, 20)), 100, 2000, 1e3)
	want := gridSum(p, vectors)
	aggregate := encryptAndSum(t, p, c.publicKey, vectors)
	active := []int{1, 2, 4, 6, 8, 9}
	shares := make(map[int][]byte)
	for _, a := range active {
		s, err := c.member(a).DecryptionShare(aggregate, active)
		require.NoError(t, err)
		shares[a] = s
	}
	d, err := NewDecryptor(p)
	require.NoError(t, err)
	d.logRound = 0
	raw, err := d.Decrypt(aggregate, active, shares)
	require.NoError(t, err)
	var sumSq float64
	for i := range raw {
		e := raw[i] - want[i]
		sumSq += e * e
	}
	rawMax, scale := maxAbsDiff(raw, want)
	rms := math.Sqrt(sumSq / float64(len(raw)))
	grid := math.Exp2(-float64(p.Literal().LogDecodePrecision))
	t.Logf("raw decryption error over %d values summing 100 updates (|sum| up to %.3g): rms %.3g, max %.3g; release grid %.3g",
		len(raw), scale, rms, rawMax, grid)
	assert.Less(t, rawMax, grid/4)
}
