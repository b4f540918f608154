package parquet_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
	apq "github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/dataset/parquet"
)

// pqSchemaYAML has a numeric and a categorical feature with missing values (imputed, and a
// level of their own), an "other" bucket, consent, a banded sensitive feature, a sensitive
// attribute with a missing group, a banded sensitive column that is no feature, an excluded
// column and label value lists.
const pqSchemaYAML = `
name: pq
csv:
  delimiter: ","
  trim_space: true
  missing: ["?", ""]
label:
  column: y
  positive: ["yes", "Y"]
  negative: ["no"]
numeric: [age, balance]
categorical:
  - column: job
    values: [admin, blue]
  - column: region
    values: [north, south]
    unseen: other
exclude: [id]
consent:
  tracked: true
  column: consent
  grants: [all]
sensitive:
  - column: age
    model_input: true
    bands: [30, 60]
  - column: gender
    groups: [f, m]
  - column: income
    bands: [1000]
missing:
  age: impute
  balance: impute
  job: category
  gender: category
  income: category
`

// pqCSV is a CSV file for pqSchemaYAML with every case: a refused and a missing consent,
// missing values of each kind, an unseen region, a value banded before export, spaces.
const pqCSV = `id,consent,age,job,balance,region,gender,income,y
1,all,25,admin,100.5,north,f,500,yes
2,none,40,blue,7,south,m,2000,no
3,all,?,blue,-3,east,m,>=1000,Y
4,all,61,?,0.1,south,?,?,no
5,?,30,admin,?,north,f,999,no
6,all, 45 , admin ,,north, f ,1500, yes
`

func pqSchema(t testing.TB) *dataset.Schema {
	t.Helper()
	s, err := dataset.ParseSchema("pq.yaml", []byte(pqSchemaYAML))
	require.NoError(t, err)
	return s
}

// records splits a CSV text without quotes into its header and rows.
func records(csv string) (header []string, rows [][]string) {
	for _, line := range strings.Split(strings.TrimSuffix(csv, "\n"), "\n") {
		fields := strings.Split(line, ",")
		if header == nil {
			header = fields
			continue
		}
		rows = append(rows, fields)
	}
	return header, rows
}

// The kinds of Parquet column copyAsParquet writes.
const (
	asText     = "text"      // every field as written
	asNullText = "null-text" // as written, but a missing-value token is a null
	asDict     = "dict"      // a dictionary of strings, a token a null
	asInt64    = "int64"     // the trimmed field parsed, a token a null
	asInt8     = "int8"
	asUint16   = "uint16"
	asFloat64  = "float64"
	asFloat32  = "float32"
	asDecimal  = "decimal" // decimal(12, 3)
	asBool     = "bool"    // "true" or "false"
)

// copyAsParquet writes CSV records as a Parquet file whose column k has kind kinds[k] (text
// when kinds is short), in row groups of rowGroup rows (0: one).
func copyAsParquet(t testing.TB, s *dataset.Schema, header []string, rows [][]string, kinds []string, rowGroup int) []byte {
	t.Helper()
	kind := func(k int) string {
		if k < len(kinds) {
			return kinds[k]
		}
		return asText
	}
	fields := make([]arrow.Field, len(header))
	for k, name := range header {
		var typ arrow.DataType
		switch kind(k) {
		case asText, asNullText:
			typ = arrow.BinaryTypes.String
		case asDict:
			typ = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
		case asInt64:
			typ = arrow.PrimitiveTypes.Int64
		case asInt8:
			typ = arrow.PrimitiveTypes.Int8
		case asUint16:
			typ = arrow.PrimitiveTypes.Uint16
		case asFloat64:
			typ = arrow.PrimitiveTypes.Float64
		case asFloat32:
			typ = arrow.PrimitiveTypes.Float32
		case asDecimal:
			typ = &arrow.Decimal128Type{Precision: 12, Scale: 3}
		case asBool:
			typ = arrow.FixedWidthTypes.Boolean
		default:
			t.Fatalf("unknown kind %q", kind(k))
		}
		fields[k] = arrow.Field{Name: name, Type: typ, Nullable: true}
	}
	as := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	for _, r := range rows {
		for k, v := range r {
			token := s.CSV.IsMissing(strings.TrimSpace(v))
			fb := b.Field(k)
			if token && kind(k) != asText {
				fb.AppendNull()
				continue
			}
			trimmed := strings.TrimSpace(v)
			switch fb := fb.(type) {
			case *array.StringBuilder:
				fb.Append(v)
			case *array.BinaryDictionaryBuilder:
				require.NoError(t, fb.AppendString(v))
			case *array.Int64Builder:
				x, err := strconv.ParseInt(trimmed, 10, 64)
				require.NoError(t, err)
				fb.Append(x)
			case *array.Int8Builder:
				x, err := strconv.ParseInt(trimmed, 10, 8)
				require.NoError(t, err)
				fb.Append(int8(x))
			case *array.Uint16Builder:
				x, err := strconv.ParseUint(trimmed, 10, 16)
				require.NoError(t, err)
				fb.Append(uint16(x))
			case *array.Float64Builder:
				x, err := strconv.ParseFloat(trimmed, 64)
				require.NoError(t, err)
				fb.Append(x)
			case *array.Float32Builder:
				x, err := strconv.ParseFloat(trimmed, 32)
				require.NoError(t, err)
				fb.Append(float32(x))
			case *array.Decimal128Builder:
				x, err := decimal128.FromString(trimmed, 12, 3)
				require.NoError(t, err)
				fb.Append(x)
			case *array.BooleanBuilder:
				x, err := strconv.ParseBool(trimmed)
				require.NoError(t, err)
				fb.Append(x)
			}
		}
	}
	return writeParquet(t, b.NewRecordBatch(), rowGroup)
}

// writeParquet writes one batch of rows as a Parquet file, with the Arrow schema stored as
// pyarrow and arrow-go store it (ReadFrom ignores it).
func writeParquet(t testing.TB, rec arrow.RecordBatch, rowGroup int) []byte {
	t.Helper()
	defer rec.Release()
	var buf bytes.Buffer
	props := []apq.WriterProperty{}
	if rowGroup > 0 {
		props = append(props, apq.WithMaxRowGroupLength(int64(rowGroup)))
	}
	w, err := pqarrow.NewFileWriter(rec.Schema(), &buf, apq.NewWriterProperties(props...), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	require.NoError(t, err)
	require.NoError(t, w.Write(rec))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// datasetAsParquet writes the rows of d as Write does.
func datasetAsParquet(t testing.TB, d *dataset.Dataset) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, parquet.Write(&buf, d))
	return buf.Bytes()
}

func readParquet(t testing.TB, s *dataset.Schema, data []byte, opts dataset.ReadOptions) (*dataset.Dataset, error) {
	t.Helper()
	return parquet.ReadFrom(context.Background(), bytes.NewReader(data), int64(len(data)), "pq.parquet", s, opts)
}

func readCSV(t testing.TB, s *dataset.Schema, csv string) *dataset.Dataset {
	t.Helper()
	d, err := dataset.ReadCSVFrom(context.Background(), strings.NewReader(csv), "pq.csv", s)
	require.NoError(t, err)
	return d
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

// requireSameRows checks that two Datasets hold the same records.
func requireSameRows(t testing.TB, want, got *dataset.Dataset) {
	t.Helper()
	require.Equal(t, want.Len(), got.Len(), "rows")
	assert.Equal(t, numbersOf(want), numbersOf(got))
	assert.Equal(t, want.Category, got.Category)
	assert.Equal(t, want.Label, got.Label)
	assert.Equal(t, want.Groups, got.Groups)
}
