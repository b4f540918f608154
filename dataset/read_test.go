package dataset_test

import (
	"bytes"
	"context"
	"errors"
	"io"
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
		{"empty number", testHeader + "\n" + with(3, ""), dataset.ErrBadNumber, 2, 4, "balance", "the field is empty (missing values are not supported)"},
		{"NaN", testHeader + "\n" + with(3, "NaN"), dataset.ErrBadNumber, 2, 4, "balance", `"NaN" is not a finite number`},
		{"Inf", testHeader + "\n" + with(3, "-Inf"), dataset.ErrBadNumber, 2, 4, "balance", "not a finite number"},
		{"overflow", testHeader + "\n" + with(3, "1e999"), dataset.ErrBadNumber, 2, 4, "balance", "not a finite number"},
		{"unseen category", testHeader + "\n" + with(2, `"pilot"`), dataset.ErrUnseenCategory, 2, 3, "job", `bank.csv:2:3 (column "job"): unseen category "pilot"`},
		{"bad label", testHeader + "\n" + row(good...) + "\n" + row(good...) + "\n" + with(7, `"maybe"`), dataset.ErrBadLabel, 4, 8, "y", `bank.csv:4:8 (column "y"): cannot read "maybe" as a label`},
		{"too few fields", testHeader + "\n" + row(good[:7]...), dataset.ErrBadRow, 2, 0, "", "bank.csv:2: the row has 7 fields, the header has 8"},
		{"bare quote", testHeader + "\n" + with(1, `2"5`), dataset.ErrBadRow, 2, 0, "", "bare \""},
		{"banded sensitive feature", testHeader + "\n" + with(1, `"<30"`), dataset.ErrBadNumber, 2, 2, "age", `cannot parse (value not shown: a sensitive column) as a number`},
		{"long bad number", testHeader + "\n" + with(3, strings.Repeat("9", 40)+"x"), dataset.ErrBadNumber, 2, 4, "balance", `cannot parse "9999999999999999"... (41 bytes) as a number`},
		{"headerless file", row(good...) + "\n" + row(good...) + "\n", dataset.ErrMissingColumn, 1, 0, "y", `bank.csv:1 (column "y"): missing column`},
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

// TestReadCSVErrorsKeepRecordContentOutOfMessages reads rows whose bad values belong to a
// customer: an error names file, line, column and column name, quotes at most a short prefix
// of a value, and never quotes a value of a sensitive attribute or of the consent column.
func TestReadCSVErrorsKeepRecordContentOutOfMessages(t *testing.T) {
	s := testSchema(t)
	secret := "4111-1111-1111-1111 Jane Doe"
	row := func(fields ...string) string { return testHeader + "\n" + strings.Join(fields, ";") + "\n" }
	tests := []struct {
		name       string
		input      string
		line, col  int
		columnName string
		want       string
		never      []string
	}{
		{"sensitive numeric feature", row(`"all"`, secret, `"admin"`, "1", `"north"`, "1", `"f"`, `"yes"`), 2, 2, "age",
			"cannot parse (value not shown: a sensitive column) as a number", []string{secret, "4111"}},
		{"long value of an ordinary column", row(`"all"`, "30", `"admin"`, `"`+secret+strings.Repeat("x", 5000)+`"`, `"north"`, "1", `"f"`, `"yes"`), 2, 4, "balance",
			`cannot parse "4111-1111-1111-1"... (5028 bytes) as a number`, []string{secret, "xxxx"}},
		{"unseen category", row(`"all"`, "30", `"`+secret+`"`, "1", `"north"`, "1", `"f"`, `"yes"`), 2, 3, "job",
			`unseen category "4111-1111-1111-1"... (28 bytes)`, []string{secret}},
		{"control characters cannot forge a log line", row(`"all"`, "30", `"admin"`, "\"1\nlevel=ERROR\"", `"north"`, "1", `"f"`, `"yes"`), 2, 4, "balance",
			`cannot parse "1\nlevel=ERROR" as a number`, []string{"1\nlevel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readString(t, s, tt.input)
			var ie *dataset.InputError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tt.line, ie.Line, "line")
			assert.Equal(t, tt.col, ie.Column, "column")
			assert.Equal(t, tt.columnName, ie.ColumnName)
			assert.Contains(t, err.Error(), tt.want)
			for _, n := range tt.never {
				assert.NotContains(t, err.Error(), n)
			}
			assert.Less(t, len(err.Error()), 300, "the message stays short")
		})
	}
}

// endlessField is a CSV header and a first row whose balance field never ends: the input of
// a 200 MB field, without holding 200 MB.
type endlessField struct {
	head  string
	fill  byte
	limit int64 // bytes of the field to produce before EOF; reading stops far earlier
	read  int64 // bytes handed out so far
}

func (e *endlessField) Read(p []byte) (int, error) {
	if e.head != "" {
		n := copy(p, e.head)
		e.head = e.head[n:]
		e.read += int64(n)
		return n, nil
	}
	if e.read >= e.limit {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), e.limit-e.read))
	for i := range p[:n] {
		p[i] = e.fill
	}
	e.read += int64(n)
	return n, nil
}

func TestReadCSVCapsLineLength(t *testing.T) {
	s := testSchema(t)
	tab := *s
	tab.CSV = dataset.CSVFormat{Delimiter: "\t"}
	const field200MB = 200 << 20
	tests := []struct {
		name    string
		schema  *dataset.Schema
		input   func() io.Reader
		maxLine int
		line    int
	}{
		{"200 MB quoted field, default limit", s, func() io.Reader {
			return &endlessField{head: testHeader + "\n" + `"all";30;"admin";"`, fill: '7', limit: field200MB}
		}, 0, 2},
		{"200 MB unquoted field, default limit", &tab, func() io.Reader {
			return &endlessField{head: "consent\tage\tjob\tbalance\tregion\tduration\tgender\ty\nall\t30\tadmin\t", fill: '7', limit: field200MB}
		}, 0, 2},
		{"header without a newline", s, func() io.Reader { return &endlessField{fill: 'h', limit: field200MB} }, 0, 1},
		{"quoted field spanning lines past a small limit", s, func() io.Reader {
			return strings.NewReader(testHeader + "\n" + `"all";30;"admin";1;"north";1;"f";"yes"` + "\n" + `"all";30;"` + strings.Repeat("ab\n", 40) + `";1;"north";1;"f";"yes"` + "\n")
		}, 100, 3},
		{"one line past a small limit", s, func() io.Reader {
			return strings.NewReader(testHeader + "\n" + `"all";30;"admin";1;"north";1;"f";"yes"` + "\n" + `"all";30;"admin";` + strings.Repeat("1", 100) + `;"north";1;"f";"yes"` + "\n")
		}, 100, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.input()
			_, err := dataset.ReadCSVWith(context.Background(), in, "big.csv", tt.schema, dataset.ReadOptions{MaxLineBytes: tt.maxLine})
			require.ErrorIs(t, err, dataset.ErrLineTooLong)
			require.ErrorIs(t, err, dataset.ErrBadRow)
			var ie *dataset.InputError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, "big.csv", ie.File)
			assert.Equal(t, tt.line, ie.Line, "the line the record began on")
			assert.Less(t, len(err.Error()), 200, "the field is not echoed")
			if e, ok := in.(*endlessField); ok {
				assert.Less(t, e.read, int64(dataset.DefaultMaxLineBytes+128<<10), "the reader stopped soon after the limit, not at the end of the field")
			}
		})
	}
}

func TestReadCSVLineLimitAdmitsLinesUpToIt(t *testing.T) {
	s := testSchema(t)
	line := `"all";30;"admin";1;"north";1;"f";"yes"`
	for _, tt := range []struct {
		name    string
		input   string
		maxLine int
		want    error
	}{
		{"exactly the limit, with CRLF", testHeader + "\r\n" + line + "\r\n", len(testHeader), nil},
		// "ye\ns" is no label: the record was read whole, not cut at its quoted newline.
		{"a quoted newline does not end the record", testHeader + "\n" + strings.Replace(line, `"yes"`, "\"ye\ns\"", 1) + "\n", len(testHeader), dataset.ErrBadLabel},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dataset.ReadCSVWith(context.Background(), strings.NewReader(tt.input), "ok.csv", s, dataset.ReadOptions{MaxLineBytes: tt.maxLine})
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
	_, err := dataset.ReadCSVWith(context.Background(), bytes.NewReader(nil), "x.csv", s, dataset.ReadOptions{MaxLineBytes: -1})
	require.Error(t, err, "a negative limit is refused")
}
