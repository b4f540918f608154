package coordinator

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDecodedStatisticsCarryGridNoise: a decrypted he-mode aggregate is exact only to the
// decoding grid, so a count of none may decode slightly below zero and a constant feature's
// sum of squares slightly below sum^2/count; neither is implausible. Found running
// configs/sim-spindle.yaml, whose excluded count decoded to -6e-9.
func TestDecodedStatisticsCarryGridNoise(t *testing.T) {
	// count, sum, sum of squares, excluded: a constant feature of 3 over 1,000 records.
	v := []float64{999.9999999995, 3000 + 1e-7, 9000 - 0.5, -6e-9}
	require.Error(t, checkStats(v, 1, 0, 10, 0), "exact sums have no such slack")
	require.NoError(t, checkStats(v, 1, 0, 10, 1))
	assert.Error(t, checkStats([]float64{1000, 3000, 8000, 0}, 1, 0, 10, 1), "a real inconsistency stays one")
	assert.Error(t, checkStats([]float64{-5, 0, 0, 0}, 1, 0, 10, 1), "a negative count stays one")
}
