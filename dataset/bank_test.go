package dataset_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/sharedtest"
)

func TestReadBankData(t *testing.T) {
	tests := []struct {
		file            string
		rows, positives int
	}{
		{"bank-full.csv", 45211, 5289},
		{"bank.csv", 4521, 521},
	}
	schema, err := dataset.LoadSchema(bankSchemaPath(t))
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d, err := dataset.ReadCSV(context.Background(), sharedtest.Path(t, tt.file), schema)
			require.NoError(t, err)
			assert.Equal(t, tt.rows, d.Len())
			assert.Equal(t, tt.positives, d.Positives())
			assert.Equal(t, 0, d.ExcludedNoConsent)
			assert.Equal(t, 2, d.Line[0])
			assert.Equal(t, tt.rows+1, d.Line[d.Len()-1])

			st, err := d.Stats().Standardization()
			require.NoError(t, err)
			e, err := dataset.NewEncoder(schema, st)
			require.NoError(t, err)
			assert.Equal(t, 6+12+3+4+2+2+2+3+12+4, e.Dim())
			r, c := e.Encode(d).Dims()
			assert.Equal(t, [2]int{tt.rows, e.Dim()}, [2]int{r, c})
		})
	}
}

func TestReadBankFullFirstRow(t *testing.T) {
	schema, err := dataset.LoadSchema(bankSchemaPath(t))
	require.NoError(t, err)
	d, err := dataset.ReadCSV(context.Background(), sharedtest.Path(t, "bank-full.csv"), schema)
	require.NoError(t, err)
	// 58;"management";"married";"tertiary";"no";2143;"yes";"no";"unknown";5;"may";261;1;-1;0;"unknown";"no"
	assert.Equal(t, []float64{58, 2143, 5, 1, -1, 0}, d.Numeric[0])
	assert.Equal(t, []int32{3, 0, 3, 1, 0, 1, 0, 4, 0}, d.Category[0])
	assert.Equal(t, []string{"30-60", "married"}, d.Groups[0])
	assert.Equal(t, 0.0, d.Label[0])
}
