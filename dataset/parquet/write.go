package parquet

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	apq "github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/fedprop/fedprop/dataset"
)

// Write writes the rows of d as a Parquet file as a bank would export the table: numbers as
// doubles and every other column as strings, a missing value as a null, in the schema's Columns
// order (the label first), the consent column holding its first grant. Read gives d's rows back.
func Write(w io.Writer, d *dataset.Dataset) error {
	s := d.Schema
	if s == nil {
		return fmt.Errorf("write parquet: %s has no schema", d.Source)
	}
	var fields []arrow.Field
	for _, c := range s.Columns() {
		typ := arrow.DataType(arrow.BinaryTypes.String)
		if slices.Contains(s.Numeric, c) {
			typ = arrow.PrimitiveTypes.Float64
		}
		fields = append(fields, arrow.Field{Name: c, Type: typ, Nullable: true})
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, nil))
	defer b.Release()
	text := func(k int, v string) {
		if v == dataset.MissingCategory {
			b.Field(k).AppendNull()
			return
		}
		b.Field(k).(*array.StringBuilder).Append(v)
	}
	for i := range d.Len() {
		k := 0
		label := s.Label.Negative[0]
		if d.Label[i] == 1 {
			label = s.Label.Positive
		}
		text(k, label)
		k++
		for _, v := range d.Numeric[i] {
			if math.IsNaN(v) {
				b.Field(k).AppendNull()
			} else {
				b.Field(k).(*array.Float64Builder).Append(v)
			}
			k++
		}
		for j, idx := range d.Category[i] {
			values := s.Categorical[j].Values
			if int(idx) < len(values) {
				text(k, values[idx])
			} else {
				text(k, dataset.OtherCategory)
			}
			k++
		}
		if s.Consent.Tracked {
			text(k, s.Consent.Grants[0])
			k++
		}
		for g, sa := range s.Sensitive {
			if slices.Contains(s.Numeric, sa.Column) || slices.ContainsFunc(s.Categorical, func(c dataset.CategoricalSpec) bool { return c.Column == sa.Column }) {
				continue
			}
			text(k, d.Groups[i][g])
			k++
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	fw, err := pqarrow.NewFileWriter(rec.Schema(), w, apq.NewWriterProperties(), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return fmt.Errorf("write parquet: %w", err)
	}
	if err := fw.Write(rec); err != nil {
		return fmt.Errorf("write parquet: %w", err)
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("write parquet: %w", err)
	}
	return nil
}
