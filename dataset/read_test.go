package dataset_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
)

const testHeader = `"consent";"age";"job";"balance";"region";"duration";"gender";"y"`

func readString(t *testing.T, s *dataset.Schema, csv string) (*dataset.Dataset, error) {
	t.Helper()
	return dataset.ReadCSVFrom(context.Background(), strings.NewReader(csv), "bank.csv", s)
}

func TestReadCSV(t *testing.T) {
	s := testSchema(t)
	in := testHeader + "\n" +
		`"all";25;"admin";100.5;"north";12;"f";"yes"` + "\n" +
		`"none";40;"blue";7;"south";3;"m";"no"` + "\n" + // no consent: left out
		"\n" + // blank lines are skipped
		`"propensity-modeling";60;"blue";-3;"east";5;"m";"no"` + "\n" + // east: other bucket
		`"";61;"admin";0;"south";9;"x";"yes"` + "\n" // empty consent: left out
	d, err := readString(t, s, in)
	require.NoError(t, err)
	require.Equal(t, 2, d.Len())
	assert.Equal(t, 2, d.ExcludedNoConsent)
	assert.Equal(t, 1, d.Positives())
	assert.Equal(t, "bank.csv", d.Source)
	assert.Equal(t, [][]float64{{25, 100.5}, {60, -3}}, d.Numeric)
	assert.Equal(t, [][]int32{{0, 0}, {1, 2}}, d.Category)
	assert.Equal(t, []float64{1, 0}, d.Label)
	assert.Equal(t, [][]string{{"<30", "f"}, {">=60", "m"}}, d.Groups)
	assert.Equal(t, []int{2, 5}, d.Line)
}

func TestReadCSVHeaderOnly(t *testing.T) {
	d, err := readString(t, testSchema(t), testHeader+"\n")
	require.NoError(t, err)
	assert.Equal(t, 0, d.Len())
	_, err = d.Stats().Standardization()
	require.Error(t, err, "no rows cannot be standardised")
}

func TestReadCSVErrors(t *testing.T) {
	s := testSchema(t)
	row := func(fields ...string) string { return strings.Join(fields, ";") }
	good := []string{`"all"`, "25", `"admin"`, "100", `"north"`, "12", `"f"`, `"yes"`}
	with := func(i int, v string) string {
		f := append([]string(nil), good...)
		f[i] = v
		return row(f...)
	}
	tests := []struct {
		name       string
		input      string
		sentinel   error
		line, col  int
		columnName string
		message    string
	}{
		{"empty file", "", dataset.ErrEmptyFile, 0, 0, "", "bank.csv: empty file: no header row"},
		{"missing column", strings.Replace(testHeader, `;"balance"`, "", 1) + "\n", dataset.ErrMissingColumn, 1, 0, "balance", `bank.csv:1 (column "balance"): missing column`},
		{"undeclared column", testHeader + `;"branch"` + "\n", dataset.ErrUndeclaredColumn, 1, 9, "branch", `bank.csv:1:9 (column "branch"): the file has column "branch"`},
		{"duplicate column", testHeader + `;"age"` + "\n", dataset.ErrDuplicateColumn, 1, 9, "age", "names column \"age\" twice"},
		{"bad number", testHeader + "\n" + row(good...) + "\n" + with(3, "12x"), dataset.ErrBadNumber, 3, 4, "balance", `bank.csv:3:4 (column "balance"): cannot parse "12x" as a number`},
		{"empty number", testHeader + "\n" + with(1, ""), dataset.ErrBadNumber, 2, 2, "age", "missing values are not supported"},
		{"NaN", testHeader + "\n" + with(3, "NaN"), dataset.ErrBadNumber, 2, 4, "balance", `"NaN" is not a finite number`},
		{"Inf", testHeader + "\n" + with(3, "-Inf"), dataset.ErrBadNumber, 2, 4, "balance", "not a finite number"},
		{"overflow", testHeader + "\n" + with(3, "1e999"), dataset.ErrBadNumber, 2, 4, "balance", "not a finite number"},
		{"unseen category", testHeader + "\n" + with(2, `"pilot"`), dataset.ErrUnseenCategory, 2, 3, "job", `bank.csv:2:3 (column "job"): unseen category "pilot"`},
		{"bad label", testHeader + "\n" + row(good...) + "\n" + row(good...) + "\n" + with(7, `"maybe"`), dataset.ErrBadLabel, 4, 8, "y", `bank.csv:4:8 (column "y"): cannot read "maybe" as a label`},
		{"too few fields", testHeader + "\n" + row(good[:7]...), dataset.ErrBadRow, 2, 0, "", "bank.csv:2: the row has 7 fields, the header has 8"},
		{"bare quote", testHeader + "\n" + with(1, `2"5`), dataset.ErrBadRow, 2, 0, "", "bare \""},
		{"banded sensitive feature", testHeader + "\n" + with(1, `"<30"`), dataset.ErrBadNumber, 2, 2, "age", `cannot parse "<30"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readString(t, s, tt.input)
			require.Error(t, err)
			require.ErrorIs(t, err, tt.sentinel)
			var ie *dataset.InputError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, "bank.csv", ie.File)
			assert.Equal(t, tt.line, ie.Line, "line")
			assert.Equal(t, tt.col, ie.Column, "column")
			assert.Equal(t, tt.columnName, ie.ColumnName)
			assert.Contains(t, err.Error(), tt.message)
		})
	}
}

func TestReadCSVUnquoted(t *testing.T) {
	s := testSchema(t)
	s.CSV = dataset.CSVFormat{Delimiter: "\t"}
	in := "\ufeffconsent\tage\tjob\tbalance\tregion\tduration\tgender\ty\r\n" +
		"all\t25\tadmin\t 3 \tnorth\t1\t\"f\"\tyes\r\n" + // quotes are plain characters
		"\r\n" +
		"all\t70\tblue\t4\tnorth\t1\tm\tno"
	d, err := readString(t, s, in)
	require.NoError(t, err)
	assert.Equal(t, [][]float64{{25, 3}, {70, 4}}, d.Numeric)
	assert.Equal(t, [][]string{{"<30", `"f"`}, {">=60", "m"}}, d.Groups)
	assert.Equal(t, []int{2, 4}, d.Line)

	_, err = readString(t, s, strings.Replace(in, "\t4\t", "\tfour\t", 1))
	var ie *dataset.InputError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, 4, ie.Line)
	assert.Equal(t, 4, ie.Column)
	require.ErrorIs(t, err, dataset.ErrBadNumber)
}

func TestReadCSVFormatOverride(t *testing.T) {
	s := testSchema(t)
	in := strings.ReplaceAll(testHeader+"\n"+`"all";25;"admin";100;"north";12;"f";"yes"`, ";", ",")
	d, err := dataset.ReadCSVWith(context.Background(), strings.NewReader(in), "x.csv", s,
		dataset.ReadOptions{Format: &dataset.CSVFormat{Delimiter: ",", Quote: `"`}})
	require.NoError(t, err)
	assert.Equal(t, 1, d.Len())

	_, err = dataset.ReadCSVWith(context.Background(), strings.NewReader(in), "x.csv", s,
		dataset.ReadOptions{Format: &dataset.CSVFormat{Delimiter: "\n"}})
	require.ErrorIs(t, err, dataset.ErrInvalidSchema)
}

func TestReadCSVPreBandedSensitiveColumn(t *testing.T) {
	s, err := dataset.ParseSchema("s.yaml", []byte(`
label: {column: y, positive: "1", negative: ["0"]}
numeric: [x]
consent: {tracked: false}
sensitive: [{column: income, bands: [1000]}]
`))
	require.NoError(t, err)
	d, err := readString(t, s, "x,income,y\n1,500,1\n2,>=1000,0\n3,1000,0\n")
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"<1000"}, {">=1000"}, {">=1000"}}, d.Groups)

	_, err = readString(t, s, "x,income,y\n1,lots,1\n")
	require.ErrorIs(t, err, dataset.ErrBadNumber)
}

func TestReadCSVLabelOptional(t *testing.T) {
	s := testSchema(t)
	noLabel := strings.TrimSuffix(testHeader, `;"y"`) + "\n" + `"all";25;"admin";1;"north";2;"f"` + "\n"
	_, err := readString(t, s, noLabel)
	require.ErrorIs(t, err, dataset.ErrMissingColumn)

	read := func(in string) (*dataset.Dataset, error) {
		return dataset.ReadCSVWith(context.Background(), strings.NewReader(in), "score.csv", s, dataset.ReadOptions{LabelOptional: true})
	}
	d, err := read(noLabel)
	require.NoError(t, err)
	require.Equal(t, 1, d.Len())
	assert.True(t, math.IsNaN(d.Label[0]))

	d, err = read(testHeader + "\n" + `"all";25;"admin";1;"north";2;"f";"yes"` + "\n")
	require.NoError(t, err)
	assert.Equal(t, []float64{1}, d.Label, "a present label is still read")
	_, err = read(testHeader + "\n" + `"all";25;"admin";1;"north";2;"f";"?"` + "\n")
	require.ErrorIs(t, err, dataset.ErrBadLabel, "and still checked")
}

func TestReadCSVHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := dataset.ReadCSVFrom(ctx, strings.NewReader(testHeader+"\n"), "bank.csv", testSchema(t))
	require.ErrorIs(t, err, context.Canceled)
}

func TestReadCSVRejectsInvalidSchema(t *testing.T) {
	_, err := dataset.ReadCSVFrom(context.Background(), strings.NewReader("a\n"), "x.csv", &dataset.Schema{})
	require.ErrorIs(t, err, dataset.ErrInvalidSchema)
}

func TestReadCSVPassesIOErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := dataset.ReadCSVFrom(context.Background(), &failingReader{data: testHeader + "\n", err: boom}, "x.csv", testSchema(t))
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "x.csv")
}

// failingReader returns data, then err.
type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}
