package dataset_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
)

// requireSameRows checks that two Datasets hold the same records; a missing number (NaN)
// equals a missing number.
func requireSameRows(t *testing.T, want, got *dataset.Dataset) {
	t.Helper()
	require.Equal(t, want.Len(), got.Len())
	assert.Equal(t, numbersOf(want), numbersOf(got))
	assert.Equal(t, want.Category, got.Category)
	assert.Equal(t, want.Label, got.Label)
	assert.Equal(t, want.Groups, got.Groups)
}

// numbersOf is d's numeric values as exact text, so that NaN compares equal to NaN.
func numbersOf(d *dataset.Dataset) [][]string {
	out := make([][]string, len(d.Numeric))
	for i, row := range d.Numeric {
		for _, v := range row {
			out[i] = append(out[i], strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	return out
}

func TestWriteCSVRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		format dataset.CSVFormat
	}{
		{"quoted semicolon", dataset.CSVFormat{Delimiter: ";", Quote: `"`}},
		{"unquoted tab", dataset.CSVFormat{Delimiter: "\t"}},
		{"default comma", dataset.DefaultCSVFormat()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSchema(t)
			s.CSV = tt.format
			b := dataset.NewBuilder(s, "synthetic", 3)
			b.Append([]float64{29.5, 0.1 + 0.2}, []int32{0, 2}, []string{"<30", "f"}, 1, 0)   // region in the other bucket
			b.Append([]float64{61, -1e-300}, []int32{1, 1}, []string{">=60", "m"}, 0, 0)      // tiny numbers survive
			b.Append([]float64{45, 123456789.25}, []int32{0, 0}, []string{"30-60", ""}, 0, 0) // empty raw group
			d := b.Finish()

			var buf bytes.Buffer
			require.NoError(t, dataset.WriteCSV(&buf, d))
			got, err := dataset.ReadCSVFrom(context.Background(), &buf, "round.csv", s)
			require.NoError(t, err)
			requireSameRows(t, d, got)
			assert.Equal(t, 0, got.ExcludedNoConsent)
		})
	}
}

func TestCSVWriterConsentValues(t *testing.T) {
	s := testSchema(t)
	b := dataset.NewBuilder(s, "x", 2)
	b.Append([]float64{20, 1}, []int32{0, 0}, []string{"<30", "f"}, 1, 0)
	b.Append([]float64{50, 2}, []int32{1, 1}, []string{"30-60", "m"}, 0, 0)
	d := b.Finish()

	var buf bytes.Buffer
	cw, err := dataset.NewCSVWriter(&buf, s)
	require.NoError(t, err)
	assert.Equal(t, []string{"consent", "age", "balance", "job", "region", "gender", "y"}, cw.Header())
	require.NoError(t, cw.WriteHeader())
	require.NoError(t, cw.WriteRow(d, 0))
	require.NoError(t, cw.WriteRowWithConsent(d, 1, "none"))
	require.NoError(t, cw.Flush())
	assert.Equal(t, "consent;age;balance;job;region;gender;y\nall;20;1;admin;north;f;yes\nnone;50;2;blue;south;m;no\n", buf.String())

	got, err := dataset.ReadCSVFrom(context.Background(), &buf, "x.csv", s)
	require.NoError(t, err)
	assert.Equal(t, 1, got.Len())
	assert.Equal(t, 1, got.ExcludedNoConsent)
}

func TestWriteCSVUnquotableValue(t *testing.T) {
	s := testSchema(t)
	s.CSV = dataset.CSVFormat{Delimiter: ","}
	b := dataset.NewBuilder(s, "x", 1)
	b.Append([]float64{20, 1}, []int32{0, 0}, []string{"<30", "a,b"}, 1, 0)
	err := dataset.WriteCSV(&strings.Builder{}, b.Finish())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `column "gender"`)
}
