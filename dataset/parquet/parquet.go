// Package parquet reads Apache Parquet files into Datasets with the schema of a CSV file, so
// that a Parquet copy of a CSV file gives the identical Dataset and the same errors. It is a
// package of its own because Apache Arrow's Go library is large: a binary that never reads
// Parquet (the coordinator, the demo) does not link it.
//
// Columns are found by name in the file's schema, as in a CSV header. Each value goes
// through the same dataset.RecordDecoder as a CSV field: a string is matched as CSV text
// (trimmed under csv.trim_space, compared with csv.missing), a number is taken as it is, and
// a null is a missing value whatever csv.missing says. Errors are *dataset.InputError values
// whose Line is the 1-based row number and whose Column is the column's position in the
// file's schema.
package parquet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/fedprop/fedprop/dataset"
)

// batchRows is how many rows the reader decodes at a time: the memory it holds beyond the
// Dataset, and how often it checks its context.
const batchRows = 4096

// Read reads the data file at path in the format dataset.FormatOf gives for it: a Parquet
// file with ReadFile, anything else as CSV with dataset.ReadCSVWith. It is the one call a
// client or the simulator needs to accept both.
func Read(ctx context.Context, path string, schema *dataset.Schema, opts dataset.ReadOptions) (*dataset.Dataset, error) {
	if dataset.FormatOf(schema, path) == dataset.FormatParquet {
		return ReadFile(ctx, path, schema, opts)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read csv: %w", err)
	}
	defer f.Close()
	return dataset.ReadCSVWith(ctx, f, path, schema, opts)
}

// ReadFile reads the Parquet file at path with schema; see ReadFrom.
func ReadFile(ctx context.Context, path string, schema *dataset.Schema, opts dataset.ReadOptions) (*dataset.Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read parquet: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read parquet: %w", err)
	}
	return ReadFrom(ctx, f, info.Size(), path, schema, opts)
}

// ReadFrom reads a Parquet file of size bytes from r, naming it name in errors. The file's
// top-level columns must include every column the schema uses and no column the schema
// neither uses nor excludes; an excluded column is never decoded, whatever its type. A used
// column must be flat: a string or binary (read as text; a dictionary-encoded column is no
// different), an integer, float or decimal (a number; a float32 is read as its shortest
// decimal text, as a CSV file would write it), or a boolean ("true" or "false"). Dates and
// timestamps are not numbers here. opts apply as to a CSV read: the
// CSV format's trim_space and missing, LabelOptional, and MaxLineBytes as the bound on one
// text value. A file that is not Parquet, or that the Arrow reader fails on, is an
// *dataset.InputError wrapping dataset.ErrBadFile.
func ReadFrom(ctx context.Context, r io.ReaderAt, size int64, name string, schema *dataset.Schema, opts dataset.ReadOptions) (d *dataset.Dataset, err error) {
	if err := schema.Validate(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	maxText := opts.MaxLineBytes
	switch {
	case maxText == 0:
		maxText = dataset.DefaultMaxLineBytes
	case maxText < 0:
		return nil, fmt.Errorf("read %s: max line bytes must be positive, got %d", name, maxText)
	}
	badFile := func(err error) error {
		return &dataset.InputError{File: name, Err: dataset.Reason(dataset.ErrBadFile, err, fmt.Sprintf("not a readable Parquet file: %v", err))}
	}
	// The Arrow reader trusts the file's metadata more than a reader of files from outside
	// should, and some corrupt files make it panic: that is a bad file, not a crash of the
	// client that reads it.
	defer func() {
		if p := recover(); p != nil {
			d, err = nil, badFile(fmt.Errorf("the reader failed: %v", p))
		}
	}()

	pf, err := file.NewParquetReader(io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, badFile(err)
	}
	defer pf.Close()
	// The Arrow schema a writer may store in the footer ("ARROW:schema") is a flatbuffer
	// whose lengths the Arrow reader believes: a corrupt one asks for gigabytes. The reader
	// needs no more than the Parquet schema (dictionaries then read as plain strings), so
	// the stored one is dropped before anything decodes it.
	pf.MetaData().FileMetaData.KeyValueMetadata = nil
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: batchRows}, memory.DefaultAllocator)
	if err != nil {
		return nil, badFile(err)
	}
	fields := fr.Manifest.Fields
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Field.Name
	}
	dec, err := dataset.NewRecordDecoder(schema, name, names, 0, opts)
	if err != nil {
		return nil, err
	}
	var leaves []int // the leaf columns of the used fields, in schema order
	for i, f := range fields {
		if !dec.Used(i) {
			continue
		}
		if !f.IsLeaf() || !supported(f.Field.Type) {
			return nil, &dataset.InputError{File: name, Column: i + 1, ColumnName: f.Field.Name, Err: reason(dataset.ErrBadColumnType,
				"the column has Parquet type %s, which the reader cannot use: a used column must hold strings, numbers or booleans", f.Field.Type)}
		}
		leaves = append(leaves, f.ColIndex)
	}
	rr, err := fr.GetRecordReader(ctx, leaves, nil)
	if err != nil {
		return nil, badFile(err)
	}
	defer rr.Release()

	values := make([]dataset.Value, len(fields))
	columns := make([]column, 0, len(leaves))
	row := 0
	for rr.Next() {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		batch := rr.RecordBatch()
		columns = columns[:0]
		for i := range fields {
			if !dec.Used(i) {
				continue
			}
			idx := batch.Schema().FieldIndices(names[i])
			if len(idx) != 1 {
				return nil, badFile(fmt.Errorf("column %q is not in the rows read", names[i]))
			}
			columns = append(columns, column{field: i, values: batch.Column(idx[0])})
		}
		for k := range int(batch.NumRows()) {
			row++
			for _, c := range columns {
				v, err := value(c.values, k, maxText)
				if err != nil {
					return nil, &dataset.InputError{File: name, Line: row, Column: c.field + 1, ColumnName: names[c.field], Err: err}
				}
				values[c.field] = v
			}
			if err := dec.Decode(row, values); err != nil {
				return nil, err
			}
		}
	}
	if err := rr.Err(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("read %s: %w", name, ctxErr)
		}
		return nil, badFile(err)
	}
	return dec.Dataset(), nil
}

// column is one used column of a batch of rows.
type column struct {
	field  int // its position among the file's columns
	values arrow.Array
}

// supported reports whether the reader can turn values of type t into dataset.Values.
func supported(t arrow.DataType) bool {
	// The types pqarrow gives Parquet's own types and annotations when no Arrow schema is
	// stored (ReadFrom drops it): no dictionary, large or view variants.
	switch t.ID() {
	case arrow.STRING, arrow.BINARY,
		arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT32, arrow.FLOAT64, arrow.DECIMAL128, arrow.DECIMAL256, arrow.BOOL, arrow.NULL:
		return true
	}
	return false
}

// value is row i of a as a dataset.Value. A text longer than maxText is an error.
func value(a arrow.Array, i, maxText int) (dataset.Value, error) {
	if a.IsNull(i) {
		return dataset.NullValue(), nil
	}
	text := func(s string) (dataset.Value, error) {
		if len(s) > maxText {
			return dataset.Value{}, dataset.Reason(dataset.ErrBadRow, dataset.ErrLineTooLong, fmt.Sprintf("the value is longer than %d bytes, the reader's limit", maxText))
		}
		return dataset.TextValue(s), nil
	}
	switch a := a.(type) {
	case *array.String:
		return text(a.Value(i))
	case *array.Binary:
		return text(a.ValueString(i))
	case *array.Int8:
		return integer(int64(a.Value(i))), nil
	case *array.Int16:
		return integer(int64(a.Value(i))), nil
	case *array.Int32:
		return integer(int64(a.Value(i))), nil
	case *array.Int64:
		return integer(a.Value(i)), nil
	case *array.Uint8:
		return unsigned(uint64(a.Value(i))), nil
	case *array.Uint16:
		return unsigned(uint64(a.Value(i))), nil
	case *array.Uint32:
		return unsigned(uint64(a.Value(i))), nil
	case *array.Uint64:
		return unsigned(a.Value(i)), nil
	case *array.Float32:
		// The float32 nearest a CSV's "0.1" is not the float64 nearest it; its shortest
		// text is "0.1", which parses to the float64 the CSV gives.
		return decimalText(strconv.FormatFloat(float64(a.Value(i)), 'g', -1, 32)), nil
	case *array.Float64:
		return dataset.NumberValue(a.Value(i), ""), nil
	case *array.Decimal128:
		return decimalText(a.ValueStr(i)), nil
	case *array.Decimal256:
		return decimalText(a.ValueStr(i)), nil
	case *array.Boolean:
		return dataset.TextValue(strconv.FormatBool(a.Value(i))), nil
	}
	// supported() admitted the type, so only a NULL column, all of whose values are null,
	// comes here: the check above has returned for it.
	return dataset.Value{}, reason(dataset.ErrBadColumnType, "values of Parquet type %s cannot be read", a.DataType())
}

func integer(v int64) dataset.Value {
	return dataset.NumberValue(float64(v), strconv.FormatInt(v, 10))
}

func unsigned(v uint64) dataset.Value {
	return dataset.NumberValue(float64(v), strconv.FormatUint(v, 10))
}

// decimalText is a number known by its decimal text, parsed as a CSV field is.
func decimalText(s string) dataset.Value {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return dataset.TextValue(s) // the decoder reports it as a bad number
	}
	return dataset.NumberValue(v, s)
}

// reason words an input error as package dataset does (dataset.Reason).
func reason(sentinel error, format string, args ...any) error {
	return dataset.Reason(sentinel, nil, fmt.Sprintf(format, args...))
}
