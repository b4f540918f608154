package parquet_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/dataset/parquet"
)

func TestParquetFromADatasetReadsAsTheCSV(t *testing.T) {
	s := pqSchema(t)
	want := readCSV(t, s, pqCSV)
	require.Equal(t, 4, want.Len())
	require.True(t, math.IsNaN(want.Numeric[1][0]), "the CSV has a missing age")
	require.Equal(t, int32(2), want.Category[2][0], "and a missing job, its own level")
	require.Equal(t, []string{dataset.MissingCategory, "m", ">=1000"}, want.Groups[1], "the missing age's group, and income banded before export")
	require.Equal(t, []string{">=60", dataset.MissingCategory, dataset.MissingCategory}, want.Groups[2], "missing gender and income")

	got, err := readParquet(t, s, datasetAsParquet(t, want), dataset.ReadOptions{})
	require.NoError(t, err)
	requireSameRows(t, want, got)
	assert.Equal(t, []int{1, 2, 3, 4}, got.Line, "a Parquet row's line is its row number")
	assert.Equal(t, "pq.parquet", got.Source)
}

func TestParquetCopyOfACSVReadsTheSame(t *testing.T) {
	s := pqSchema(t)
	want := readCSV(t, s, pqCSV)
	header, rows := records(pqCSV)
	// id, consent, age, job, balance, region, gender, income, y
	tests := []struct {
		name     string
		kinds    []string
		rowGroup int
	}{
		{"every field as text", nil, 0},
		{"typed, missing values as nulls", []string{asInt64, asDict, asInt64, asNullText, asFloat64, asDict, asNullText, asText, asNullText}, 0},
		{"narrow integers and float32", []string{asUint16, asText, asInt8, asDict, asFloat32, asText, asDict, asNullText, asDict}, 0},
		{"a decimal", []string{asInt64, asText, asInt64, asText, asDecimal}, 0},
		{"row groups of two rows", []string{asInt64, asDict, asInt64, asNullText, asFloat64, asDict, asNullText, asText, asNullText}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readParquet(t, s, copyAsParquet(t, s, header, rows, tt.kinds, tt.rowGroup), dataset.ReadOptions{})
			require.NoError(t, err)
			requireSameRows(t, want, got)
			assert.Equal(t, want.ExcludedNoConsent, got.ExcludedNoConsent, "the same records left out")
			for i := range want.Line {
				assert.Equal(t, want.Line[i]-1, got.Line[i], "row numbers are CSV lines without the header")
			}
		})
	}
}

func TestParquetManyRowsAcrossBatchesAndRowGroups(t *testing.T) {
	s := pqSchema(t)
	var b strings.Builder
	b.WriteString("id,consent,age,job,balance,region,gender,income,y\n")
	for i := range 10000 {
		age := fmt.Sprint(18 + i%70)
		if i%97 == 0 {
			age = "?"
		}
		fmt.Fprintf(&b, "%d,all,%s,%s,%d.25,north,%s,%d,%s\n", i, age, []string{"admin", "blue", "?"}[i%3], i, []string{"f", "m"}[i%2], i%2000, []string{"yes", "no"}[i%2])
	}
	want := readCSV(t, s, b.String())
	header, rows := records(b.String())
	data := copyAsParquet(t, s, header, rows, []string{asInt64, asText, asInt64, asDict, asFloat64}, 3000)
	got, err := readParquet(t, s, data, dataset.ReadOptions{})
	require.NoError(t, err)
	requireSameRows(t, want, got)
	assert.Equal(t, 10000, got.Line[len(got.Line)-1])

	st, err := got.Stats().Standardization()
	require.NoError(t, err)
	wantSt, err := want.Stats().Standardization()
	require.NoError(t, err)
	assert.Equal(t, wantSt, st, "the same standardisation, missing ages left out of both")
}

func TestParquetEmptyFile(t *testing.T) {
	s := pqSchema(t)
	header, _ := records(pqCSV)
	d, err := readParquet(t, s, copyAsParquet(t, s, header, nil, nil, 0), dataset.ReadOptions{})
	require.NoError(t, err)
	assert.Equal(t, 0, d.Len())
}

// column is one Parquet column for the error tests.
type column struct {
	name   string
	values arrow.Array
}

func texts(values ...string) arrow.Array {
	b := array.NewStringBuilder(memory.DefaultAllocator)
	defer b.Release()
	for _, v := range values {
		if v == "<null>" {
			b.AppendNull()
		} else {
			b.Append(v)
		}
	}
	return b.NewArray()
}

func floats(values ...float64) arrow.Array {
	b := array.NewFloat64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues(values, nil)
	return b.NewArray()
}

// table writes columns as a Parquet file; every column has the same length.
func table(t *testing.T, cols ...column) []byte {
	t.Helper()
	var fields []arrow.Field
	var arrays []arrow.Array
	for _, c := range cols {
		fields = append(fields, arrow.Field{Name: c.name, Type: c.values.DataType(), Nullable: true})
		arrays = append(arrays, c.values)
	}
	return writeParquet(t, array.NewRecordBatch(arrow.NewSchema(fields, nil), arrays, int64(arrays[0].Len())), 0)
}

// good is a valid table of two rows for pqSchemaYAML, with column name replaced by values
// (or dropped when values is nil, or added when name is new; "" changes nothing).
func good(t *testing.T, name string, values arrow.Array) []byte {
	t.Helper()
	base := []column{
		{"id", texts("1", "2")},
		{"consent", texts("all", "all")},
		{"age", floats(30, 40)},
		{"job", texts("admin", "blue")},
		{"balance", floats(1, 2)},
		{"region", texts("north", "south")},
		{"gender", texts("f", "m")},
		{"income", texts("500", "1500")},
		{"y", texts("yes", "no")},
	}
	var cols []column
	found := false
	for _, c := range base {
		if c.name == name {
			found = true
			if values == nil {
				continue
			}
			c.values = values
		}
		cols = append(cols, c)
	}
	if !found && name != "" {
		cols = append(cols, column{name, values})
	}
	return table(t, cols...)
}

func timestamps(n int) arrow.Array {
	b := array.NewTimestampBuilder(memory.DefaultAllocator, &arrow.TimestampType{Unit: arrow.Second})
	defer b.Release()
	for i := range n {
		b.Append(arrow.Timestamp(i))
	}
	return b.NewArray()
}

func lists(n int) arrow.Array {
	b := array.NewListBuilder(memory.DefaultAllocator, arrow.PrimitiveTypes.Int64)
	defer b.Release()
	for i := range n {
		b.Append(true)
		b.ValueBuilder().(*array.Int64Builder).Append(int64(i))
	}
	return b.NewArray()
}

func TestParquetErrors(t *testing.T) {
	s := pqSchema(t)
	reject, err := dataset.ParseSchema("pq.yaml", []byte(strings.Replace(pqSchemaYAML, "  balance: impute\n", "", 1)))
	require.NoError(t, err)
	tests := []struct {
		name       string
		schema     *dataset.Schema
		data       func(t *testing.T) []byte
		opts       dataset.ReadOptions
		sentinels  []error
		line, col  int
		columnName string
		message    string
		never      string
	}{
		{"a missing column", s, func(t *testing.T) []byte { return good(t, "gender", nil) }, dataset.ReadOptions{},
			[]error{dataset.ErrMissingColumn}, 0, 0, "gender", `pq.parquet (column "gender"): missing column`, ""},
		{"an undeclared column", s, func(t *testing.T) []byte { return good(t, "salary", floats(1, 2)) }, dataset.ReadOptions{},
			[]error{dataset.ErrUndeclaredColumn}, 0, 10, "salary", `the file has column "salary" but the schema neither uses it nor lists it under exclude`, ""},
		{"a bad number in a text column", s, func(t *testing.T) []byte { return good(t, "balance", texts("1", "12x")) }, dataset.ReadOptions{},
			[]error{dataset.ErrBadNumber}, 2, 5, "balance", `pq.parquet:2:5 (column "balance"): cannot parse "12x" as a number`, ""},
		{"a NaN", s, func(t *testing.T) []byte { return good(t, "balance", floats(math.NaN(), 1)) }, dataset.ReadOptions{},
			[]error{dataset.ErrBadNumber}, 1, 5, "balance", `"NaN" is not a finite number`, ""},
		{"a null where missing values are rejected", reject, func(t *testing.T) []byte {
			return good(t, "balance", func() arrow.Array {
				b := array.NewFloat64Builder(memory.DefaultAllocator)
				defer b.Release()
				b.Append(1)
				b.AppendNull()
				return b.NewArray()
			}())
		}, dataset.ReadOptions{},
			[]error{dataset.ErrMissingValue}, 2, 5, "balance", "the value is missing (a null) and missing.balance is reject", ""},
		{"a token where missing values are rejected", reject, func(t *testing.T) []byte { return good(t, "balance", texts("?", "1")) }, dataset.ReadOptions{},
			[]error{dataset.ErrMissingValue}, 1, 5, "balance", "the value is missing (one of csv.missing)", "?"},
		{"a label in neither list", s, func(t *testing.T) []byte { return good(t, "y", texts("yes", "maybe")) }, dataset.ReadOptions{},
			[]error{dataset.ErrBadLabel}, 2, 9, "y", `cannot read "maybe" as a label`, ""},
		{"a null label", s, func(t *testing.T) []byte { return good(t, "y", texts("<null>", "no")) }, dataset.ReadOptions{},
			[]error{dataset.ErrMissingValue, dataset.ErrBadLabel}, 1, 9, "y", "the label is missing", ""},
		{"an unseen category", s, func(t *testing.T) []byte { return good(t, "job", texts("admin", "pilot")) }, dataset.ReadOptions{},
			[]error{dataset.ErrUnseenCategory}, 2, 4, "job", `unseen category "pilot"`, ""},
		{"a sensitive value is never shown", s, func(t *testing.T) []byte { return good(t, "income", texts("4111-1111", "1")) }, dataset.ReadOptions{},
			[]error{dataset.ErrBadNumber}, 1, 8, "income", "(value not shown: a sensitive column)", "4111"},
		{"a timestamp as a number", s, func(t *testing.T) []byte { return good(t, "balance", timestamps(2)) }, dataset.ReadOptions{},
			[]error{dataset.ErrBadColumnType}, 0, 5, "balance", "the column has Parquet type timestamp[ms], which the reader cannot use", ""},
		{"a list as a category", s, func(t *testing.T) []byte { return good(t, "job", lists(2)) }, dataset.ReadOptions{},
			[]error{dataset.ErrBadColumnType}, 0, 4, "job", "which the reader cannot use", ""},
		{"a value past the limit", s, func(t *testing.T) []byte { return good(t, "job", texts("admin", strings.Repeat("x", 200))) }, dataset.ReadOptions{MaxLineBytes: 100},
			[]error{dataset.ErrLineTooLong, dataset.ErrBadRow}, 2, 4, "job", "the value is longer than 100 bytes", "xxx"},
		{"not a Parquet file", s, func(*testing.T) []byte { return []byte(pqCSV) }, dataset.ReadOptions{},
			[]error{dataset.ErrBadFile}, 0, 0, "", "pq.parquet: not a readable Parquet file", ""},
		{"a truncated file", s, func(t *testing.T) []byte { d := good(t, "", nil); return d[:len(d)/2] }, dataset.ReadOptions{},
			[]error{dataset.ErrBadFile}, 0, 0, "", "not a readable Parquet file", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readParquet(t, tt.schema, tt.data(t), tt.opts)
			require.Error(t, err)
			for _, s := range tt.sentinels {
				require.ErrorIs(t, err, s)
			}
			var ie *dataset.InputError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, "pq.parquet", ie.File)
			assert.Equal(t, tt.line, ie.Line, "row")
			assert.Equal(t, tt.col, ie.Column, "column")
			assert.Equal(t, tt.columnName, ie.ColumnName)
			assert.Contains(t, err.Error(), tt.message)
			if tt.never != "" {
				assert.NotContains(t, err.Error(), tt.never)
			}
		})
	}
}

func TestParquetExcludedColumnsMayHoldAnything(t *testing.T) {
	d, err := readParquet(t, pqSchema(t), good(t, "id", lists(2)), dataset.ReadOptions{})
	require.NoError(t, err)
	assert.Equal(t, 2, d.Len())
}

func TestParquetLabelOptional(t *testing.T) {
	s := pqSchema(t)
	d, err := readParquet(t, s, good(t, "y", nil), dataset.ReadOptions{LabelOptional: true})
	require.NoError(t, err)
	require.Equal(t, 2, d.Len())
	assert.True(t, math.IsNaN(d.Label[0]))
}

func TestParquetHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := good(t, "", nil)
	_, err := parquet.ReadFrom(ctx, bytes.NewReader(data), int64(len(data)), "pq.parquet", pqSchema(t), dataset.ReadOptions{})
	require.ErrorIs(t, err, context.Canceled)
}

func TestReadPicksTheFormat(t *testing.T) {
	s := pqSchema(t)
	dir := t.TempDir()
	header, rows := records(pqCSV)
	pq := copyAsParquet(t, s, header, rows, nil, 0)
	for name, data := range map[string][]byte{"a.csv": []byte(pqCSV), "a.parquet": pq, "a.PARQUET": pq, "pq-data.bin": pq, "csv-data.bin": []byte(pqCSV)} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	want := readCSV(t, s, pqCSV)
	asParquet := *s
	asParquet.Format = dataset.FormatParquet
	for _, tt := range []struct {
		file   string
		schema *dataset.Schema
	}{
		{"a.csv", s},
		{"a.parquet", s},
		{"a.PARQUET", s},
		{"pq-data.bin", &asParquet},
		{"csv-data.bin", s},
	} {
		t.Run(tt.file, func(t *testing.T) {
			d, err := parquet.Read(context.Background(), filepath.Join(dir, tt.file), tt.schema, dataset.ReadOptions{})
			require.NoError(t, err)
			requireSameRows(t, want, d)
			assert.Equal(t, filepath.Join(dir, tt.file), d.Source)
		})
	}
	_, err := parquet.Read(context.Background(), filepath.Join(dir, "csv-data.bin"), &asParquet, dataset.ReadOptions{})
	require.ErrorIs(t, err, dataset.ErrBadFile, "the schema's format wins over the name")
	_, err = parquet.ReadFile(context.Background(), filepath.Join(dir, "absent.parquet"), s, dataset.ReadOptions{})
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestParquetRejectsAnInvalidSchema(t *testing.T) {
	data := good(t, "", nil)
	_, err := readParquet(t, &dataset.Schema{}, data, dataset.ReadOptions{})
	require.ErrorIs(t, err, dataset.ErrInvalidSchema)
}

func TestParquetBooleanLabel(t *testing.T) {
	s, err := dataset.ParseSchema("b.yaml", []byte(`
label: {column: subscribed, positive: "true", negative: ["false"]}
numeric: [age]
consent: {tracked: false}
`))
	require.NoError(t, err)
	csv := "age,subscribed\n30,true\n40,false\n"
	header, rows := records(csv)
	got, err := readParquet(t, s, copyAsParquet(t, s, header, rows, []string{asInt64, asBool}, 0), dataset.ReadOptions{})
	require.NoError(t, err)
	requireSameRows(t, readCSV(t, s, csv), got)
	assert.Equal(t, []float64{1, 0}, got.Label)
}
