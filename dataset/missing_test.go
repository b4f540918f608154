package dataset_test

import (
	"bytes"
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/stat"

	"github.com/fedprop/fedprop/dataset"
)

// imputingSchema has two numeric features that impute missing values and one categorical
// feature with a missing level.
func imputingSchema(t *testing.T) *dataset.Schema {
	t.Helper()
	s, err := dataset.ParseSchema("impute.yaml", []byte(`
name: impute
csv:
  missing: ["?"]
label: {column: y, positive: "1", negative: ["0"]}
numeric: [a, b]
categorical:
  - column: c
    values: [x, y]
consent: {tracked: false}
missing: {a: impute, b: impute, c: category}
`))
	require.NoError(t, err)
	return s
}

func TestStatsLeaveMissingValuesOut(t *testing.T) {
	s := imputingSchema(t)
	d, err := dataset.ReadCSVFrom(context.Background(), bytes.NewReader([]byte("a,b,c,y\n1,10,x,1\n?,20,?,0\n3,?,y,0\n5,40,x,1\n")), "m.csv", s)
	require.NoError(t, err)

	st := d.Stats()
	assert.Equal(t, 4.0, st.Count, "every row counts")
	assert.Equal(t, []float64{1 + 3 + 5, 10 + 20 + 40}, st.Sum, "missing values add nothing")
	assert.Equal(t, []float64{1 + 9 + 25, 100 + 400 + 1600}, st.SumSq)
	assert.Equal(t, []float64{3, 3}, st.Observed, "nor count")

	std, err := st.Standardization()
	require.NoError(t, err)
	for i, observed := range [][]float64{{1, 3, 5}, {10, 20, 40}} {
		mean, sd := stat.PopMeanStdDev(observed, nil)
		assert.InDelta(t, mean, std.Mean[i], 1e-12, "feature %d: the mean of the observed values", i)
		assert.InDelta(t, sd, std.Std[i], 1e-12, "feature %d", i)
	}

	// The encoder imputes the pinned mean: standardised, 0.
	e, err := dataset.NewEncoder(s, std)
	require.NoError(t, err)
	x := e.Encode(d)
	assert.Equal(t, 0.0, x.At(1, 0), "a missing a is the mean")
	assert.Equal(t, 0.0, x.At(2, 1), "a missing b is the mean")
	assert.InDelta(t, (1-3)/std.Std[0], x.At(0, 0), 1e-12, "a present value is standardised as ever")
	assert.Equal(t, []string{"a", "b", "c=x", "c=y", "c=<missing>"}, e.FeatureNames())
	assert.Equal(t, []float64{0, 0, 1}, []float64{x.At(1, 2), x.At(1, 3), x.At(1, 4)}, "a missing c is its own one-hot input")

	// With public bounds (a DP run) the mean is the middle of the range, also 0.
	pub := dataset.Standardization{Mean: []float64{0, 0}, Std: []float64{10, 100}}
	e, err = dataset.NewEncoder(s, pub)
	require.NoError(t, err)
	assert.Equal(t, 0.0, e.Encode(d).At(1, 0))
}

func TestFeatureStatsWithObservedCounts(t *testing.T) {
	s := imputingSchema(t)
	b := dataset.NewBuilder(s, "b", 4)
	for _, r := range [][]float64{{1, math.NaN()}, {2, 4}, {math.NaN(), 6}, {4, 8}} {
		b.Append(r, []int32{0}, nil, 0, 0)
	}
	d := b.Finish()

	var total dataset.FeatureStats // the zero value takes the first layout
	require.NoError(t, total.Add(d.Subset([]int{0, 1}).Stats()))
	require.NoError(t, total.Add(d.Subset([]int{2, 3}).Stats()))
	assert.Equal(t, d.Stats(), total, "stats of parts add up to the stats of the whole")

	v := total.Vector()
	assert.Len(t, v, dataset.StatsVectorLen(s))
	assert.Equal(t, []float64{4, 1 + 2 + 4, 4 + 6 + 8, 1 + 4 + 16, 16 + 36 + 64, 3, 3}, v, "count, sums, sums of squares, observed counts")
	back, err := dataset.FeatureStatsFromVector(v, 2)
	require.NoError(t, err)
	assert.Equal(t, total, back)

	tests := []struct {
		name  string
		stats dataset.FeatureStats
		want  string
	}{
		{"observed counts on one side only", dataset.FeatureStats{Count: 1, Sum: []float64{1, 1}, SumSq: []float64{1, 1}}, "only one side counts observed values"},
		{"observed counts of another length", dataset.FeatureStats{Count: 1, Sum: []float64{1, 1}, SumSq: []float64{1, 1}, Observed: []float64{1}}, "2 sums, 2 sums of squares and 1 observed counts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum := total
			err := sum.Add(tt.stats)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}

	_, err = dataset.FeatureStatsFromVector(v[:6], 2)
	require.Error(t, err, "neither 1+2n nor 1+3n")
}

func TestStandardizationNeedsAnObservedValue(t *testing.T) {
	st := dataset.FeatureStats{Count: 3, Sum: []float64{6, 0}, SumSq: []float64{14, 0}, Observed: []float64{3, 0}}
	_, err := st.Standardization()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "feature 1 has no observed value")
}

func TestStatsOfASchemaWithoutImputationKeepTheirLayout(t *testing.T) {
	d := randomDataset(t, 10, 1)
	st := d.Stats()
	assert.Nil(t, st.Observed)
	assert.Len(t, st.Vector(), 1+2*2)
	assert.Equal(t, 1+2*2, dataset.StatsVectorLen(d.Schema))
}

func TestWriteCSVRoundTripWithMissingValues(t *testing.T) {
	tests := []struct {
		name  string
		pairs []string
	}{
		{"headerless with tokens", nil},
		{"headerless, unquoted, skipping lines", []string{"  trim_space: true\n", "  trim_space: true\n  skip_lines: 2\n  quote: \"\"\n"}},
		{"with a header", withHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := layoutSchema(t, tt.pairs...)
			in := "1, 30, admin, f, all, yes\n2, ?, blue, m, all, N\n3, NA, ?, ?, all, Y\n"
			if s.CSV.SkipLines > 0 {
				in = "junk\njunk\n" + in
			}
			if s.CSV.HasHeader() {
				in = "id, age, job, gender, consent, y\n" + in
			}
			d, err := readLayout(s, in)
			require.NoError(t, err)
			require.Equal(t, 3, d.Len())

			var buf bytes.Buffer
			require.NoError(t, dataset.WriteCSV(&buf, d))
			got, err := readLayout(s, buf.String())
			require.NoError(t, err, buf.String())
			requireSameRows(t, d, got)
			assert.Equal(t, d.Line, got.Line, "the written file has the same lines")
		})
	}
}

func TestWriteCSVHeaderlessOrder(t *testing.T) {
	s := layoutSchema(t)
	d, err := readLayout(s, "1, ?, admin, ?, all, Y\n")
	require.NoError(t, err)
	var buf bytes.Buffer
	cw, err := dataset.NewCSVWriter(&buf, s)
	require.NoError(t, err)
	assert.Equal(t, []string{"id", "age", "job", "gender", "consent", "y"}, cw.Header())
	require.NoError(t, cw.WriteHeader())
	require.NoError(t, cw.WriteRow(d, 0))
	require.NoError(t, cw.Flush())
	assert.Equal(t, ",?,admin,?,all,yes\n", buf.String(), "columns in csv.columns order, the excluded one empty, missing values as the first token")
}

func TestWriteCSVMissingNumberNeedsAToken(t *testing.T) {
	s := imputingSchema(t)
	s.CSV.Missing = nil
	b := dataset.NewBuilder(s, "b", 1)
	b.Append([]float64{math.NaN(), 1}, []int32{2}, nil, 0, 0)
	err := dataset.WriteCSV(&bytes.Buffer{}, b.Finish())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `column "a": a missing value cannot be written`)

	// A missing level without a token is written as itself, and reads back as itself.
	b = dataset.NewBuilder(s, "b", 1)
	b.Append([]float64{1, 1}, []int32{2}, nil, 0, 0)
	d := b.Finish()
	var buf bytes.Buffer
	require.NoError(t, dataset.WriteCSV(&buf, d))
	assert.Contains(t, buf.String(), "<missing>")
	got, err := dataset.ReadCSVFrom(context.Background(), &buf, "b.csv", s)
	require.NoError(t, err)
	requireSameRows(t, d, got)
}
