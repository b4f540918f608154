package privacy_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fedprop/fedprop/privacy"
)

func TestNoiseGridFloorRoundsDownWithinAStep(t *testing.T) {
	step := math.Exp2(-1.0 / privacy.NoiseGridSteps)
	for _, z := range []float64{0.3, 0.77, 1, 1.0001, 2.5, 13.9, 97.2} {
		g := privacy.NoiseGridFloor(z)
		assert.LessOrEqual(t, g, z, "never more noise than present: z=%v", z)
		assert.Greater(t, g, z*step*(1-1e-12), "less than one step below: z=%v", z)
		k := math.Log2(g) * privacy.NoiseGridSteps
		assert.InDelta(t, math.Round(k), k, 1e-9, "on the grid: z=%v", z)
	}
	assert.Equal(t, 1.0, privacy.NoiseGridFloor(1))
	assert.Equal(t, 2.0, privacy.NoiseGridFloor(2))
}
