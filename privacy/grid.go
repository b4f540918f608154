package privacy

import "math"

// NoiseGridSteps is the resolution of NoiseGridFloor: steps per octave of noise multiplier.
const NoiseGridSteps = 64

// NoiseGridFloor rounds a noise multiplier down to a grid of 1/64 octave. A round that lost
// contributors (and so some of their noise shares) carries less noise than planned, and a
// different amount each time; accounted on the grid, such rounds share a few multipliers, so
// that the accountant composes a long history from a few parts. Rounding down accounts for
// less noise than was present: the epsilon stays an upper bound.
func NoiseGridFloor(z float64) float64 {
	return math.Exp2(math.Floor(math.Log2(z)*NoiseGridSteps) / NoiseGridSteps)
}
