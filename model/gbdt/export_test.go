package gbdt

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
)

// toySchema has numeric features of three shapes (normal, skewed, small integers) and two
// categorical ones, one of them with an "other" bucket.
const toySchema = `
name: toy
label: {column: y, positive: "1", negative: ["0"]}
numeric: [a, b, c]
categorical:
  - column: color
    values: [red, green, blue]
    unseen: other
  - column: flag
    values: ["yes", "no"]
consent: {tracked: false}
`

// ToySchema returns the schema of ToyDataset.
func ToySchema(tb testing.TB) *dataset.Schema {
	tb.Helper()
	s, err := dataset.ParseSchema("toy.yaml", []byte(toySchema))
	require.NoError(tb, err)
	return s
}

// ToyDataset returns n rows drawn with seed whose label depends on every feature, with an
// interaction and a threshold effect, so that trees have something to find.
func ToyDataset(tb testing.TB, seed uint64, n int) *dataset.Dataset {
	tb.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	b := dataset.NewBuilder(ToySchema(tb), "toy", n)
	for i := range n {
		a := r.NormFloat64()
		skew := math.Exp(r.NormFloat64())
		c := float64(r.IntN(10))
		color := int32(r.IntN(4)) // 3 is the "other" bucket
		flag := int32(r.IntN(2))
		z := 1.5*a - 0.5
		if skew > 1.5 {
			z -= 0.8
		}
		if color == 0 {
			z += 0.3 * c
		}
		if flag == 0 {
			z += 0.7
		}
		y := 0.0
		if r.Float64() < 1/(1+math.Exp(-z)) {
			y = 1
		}
		b.Append([]float64{a, skew, c}, []int32{color, flag}, nil, y, i+2)
	}
	return b.Finish()
}

// ToyStandardization standardises with d's own statistics.
func ToyStandardization(tb testing.TB, d *dataset.Dataset) dataset.Standardization {
	tb.Helper()
	std, err := d.Stats().Standardization()
	require.NoError(tb, err)
	return std
}
