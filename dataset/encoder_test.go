package dataset_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"

	"github.com/fedprop/fedprop/dataset"
)

func TestEncoderLayout(t *testing.T) {
	s := testSchema(t)
	e, err := dataset.NewEncoder(s, dataset.Standardization{Mean: []float64{40, 100}, Std: []float64{10, 50}})
	require.NoError(t, err)
	assert.Equal(t, 2+2+3, e.Dim())
	assert.Equal(t, []string{"age", "balance", "job=admin", "job=blue", "region=north", "region=south", "region=<other>"}, e.FeatureNames())

	b := dataset.NewBuilder(s, "x", 2)
	b.Append([]float64{50, 0}, []int32{1, 2}, []string{"30-60", "f"}, 1, 0)
	b.Append([]float64{30, 200}, []int32{0, 0}, []string{"30-60", "m"}, 0, 0)
	x := e.Encode(b.Finish())
	want := mat.NewDense(2, 7, []float64{
		1, -2, 0, 1, 0, 0, 1,
		-1, 2, 1, 0, 1, 0, 0,
	})
	assert.True(t, mat.Equal(want, x), "got\n%v", mat.Formatted(x))

	empty := e.Encode(dataset.NewBuilder(s, "empty", 0).Finish())
	r, c := empty.Dims()
	assert.Equal(t, [2]int{0, 0}, [2]int{r, c})

	std := e.Standardization()
	assert.Equal(t, []float64{10, 50}, std.Std)
}

func TestEncodeStandardisesWithItsOwnStats(t *testing.T) {
	d := randomDataset(t, 400, 11)
	st, err := d.Stats().Standardization()
	require.NoError(t, err)
	e, err := dataset.NewEncoder(d.Schema, st)
	require.NoError(t, err)
	x := e.Encode(d)
	for j := range d.Schema.Numeric {
		mean, std := stat.PopMeanStdDev(mat.Col(nil, j, x), nil)
		assert.InDelta(t, 0, mean, 1e-9)
		assert.InDelta(t, 1, std, 1e-9)
	}
	// EncodeRow agrees with Encode.
	row := make([]float64, e.Dim())
	e.EncodeRow(d, 17, row)
	assert.Equal(t, mat.Row(nil, 17, x), row)
}

func TestNewEncoderErrors(t *testing.T) {
	s := testSchema(t)
	tests := []struct {
		name string
		std  dataset.Standardization
	}{
		{"wrong length", dataset.Standardization{Mean: []float64{0}, Std: []float64{1}}},
		{"zero std", dataset.Standardization{Mean: []float64{0, 0}, Std: []float64{1, 0}}},
		{"NaN mean", dataset.Standardization{Mean: []float64{math.NaN(), 0}, Std: []float64{1, 1}}},
		{"Inf std", dataset.Standardization{Mean: []float64{0, 0}, Std: []float64{math.Inf(1), 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dataset.NewEncoder(s, tt.std)
			require.Error(t, err)
		})
	}
}

func TestEncoderCheck(t *testing.T) {
	s := testSchema(t)
	e, err := dataset.NewEncoder(s, dataset.Standardization{Mean: []float64{0, 0}, Std: []float64{1, 1}})
	require.NoError(t, err)
	other := &dataset.Schema{Label: s.Label, Numeric: []string{"a"}}
	require.Error(t, e.Check(&dataset.Dataset{Schema: other}))
	require.NoError(t, e.Check(&dataset.Dataset{Schema: s}))
	assert.Panics(t, func() { e.Encode(&dataset.Dataset{Schema: other}) })
}
