package dataset

import (
	"fmt"
)

// Dataset is the parsed, consent-filtered content of one file (or a synthetic draw): raw
// typed values, not yet standardised. Rows are views into flat backing arrays, so a
// million rows cost a handful of allocations; treat a Dataset as read-only and use Subset
// or Concat for a modified copy.
type Dataset struct {
	// Schema is the schema the rows follow.
	Schema *Schema
	// Source names where the rows came from (a file name), for messages.
	Source string
	// Numeric holds [row][i] for Schema.Numeric[i]: NaN for a missing value the schema
	// imputes (MissingImpute), which Stats skips and the Encoder encodes as the mean.
	Numeric [][]float64
	// Category holds [row][j], an index into Schema.Categorical[j].Values (a missing value
	// is the index of MissingCategory); the index len(Values) is the "other" bucket.
	Category [][]int32
	// Label is 1 for a positive row and 0 for a negative one (NaN for every row of data
	// read for scoring without a label column, see ReadOptions.LabelOptional).
	Label []float64
	// Groups holds [row][k], the group of Schema.Sensitive[k]: a band label such as "<30"
	// for a banded attribute, the raw value otherwise.
	Groups [][]string
	// Line is the 1-based source line of each row: its line in a CSV file (counting a
	// header and skipped lines), its row number in a Parquet file, 0 for a synthetic row.
	Line []int
	// ExcludedNoConsent counts the records read but left out because their consent does
	// not grant the schema's purpose.
	ExcludedNoConsent int
}

// Len returns the number of rows.
func (d *Dataset) Len() int { return len(d.Label) }

// Positives returns the number of rows labelled 1.
func (d *Dataset) Positives() int {
	n := 0
	for _, y := range d.Label {
		if y == 1 {
			n++
		}
	}
	return n
}

// Subset returns a copy of the given rows, in the given order; it shares no mutable state
// with d. ExcludedNoConsent is 0 in the copy: the records it counts are in no row.
func (d *Dataset) Subset(rows []int) *Dataset {
	b := newBuilder(d.Schema, d.Source, len(rows))
	for _, r := range rows {
		b.appendFrom(d, r)
	}
	return b.finish()
}

// Concat returns the rows of all parts, in order, in a new Dataset that shares no mutable
// state with them, and the sum of their ExcludedNoConsent. The parts must follow the same
// schema (the first part's schema is used); mixing layouts is a programming error and
// panics.
func Concat(parts ...*Dataset) *Dataset {
	if len(parts) == 0 {
		return &Dataset{}
	}
	total, excluded := 0, 0
	for _, p := range parts {
		total += p.Len()
		excluded += p.ExcludedNoConsent
	}
	first := parts[0]
	source := first.Source
	if len(parts) > 1 {
		source = fmt.Sprintf("%s (+%d more)", first.Source, len(parts)-1)
	}
	b := newBuilder(first.Schema, source, total)
	for _, p := range parts {
		if p.Schema != first.Schema && !sameLayout(p.Schema, first.Schema) {
			panic(fmt.Sprintf("dataset.Concat: %s and %s follow different schemas", first.Source, p.Source))
		}
		for r := range p.Len() {
			b.appendFrom(p, r)
		}
	}
	out := b.finish()
	out.ExcludedNoConsent = excluded
	return out
}

// sameLayout reports whether two schemas produce rows of the same shape.
func sameLayout(a, b *Schema) bool {
	if a == nil || b == nil {
		return a == b
	}
	return len(a.Numeric) == len(b.Numeric) && len(a.Categorical) == len(b.Categorical) && len(a.Sensitive) == len(b.Sensitive)
}

// Builder appends rows into flat backing arrays and slices them into a Dataset at the end.
// It is for code that produces rows itself (the synthetic generator); readers get a
// Dataset from ReadCSV.
type Builder struct {
	schema                    *Schema
	source                    string
	numWidth, catWidth, sensW int
	numeric                   []float64
	category                  []int32
	groups                    []string
	label                     []float64
	line                      []int
}

// NewBuilder returns a Builder for rows of schema, with room for capacity rows.
func NewBuilder(schema *Schema, source string, capacity int) *Builder {
	return newBuilder(schema, source, capacity)
}

func newBuilder(schema *Schema, source string, capacity int) *Builder {
	b := &Builder{schema: schema, source: source}
	if schema != nil {
		b.numWidth, b.catWidth, b.sensW = len(schema.Numeric), len(schema.Categorical), len(schema.Sensitive)
	}
	b.numeric = make([]float64, 0, capacity*b.numWidth)
	b.category = make([]int32, 0, capacity*b.catWidth)
	b.groups = make([]string, 0, capacity*b.sensW)
	b.label = make([]float64, 0, capacity)
	b.line = make([]int, 0, capacity)
	return b
}

// Append adds one row. The slices must have the schema's widths; they are copied.
func (b *Builder) Append(numeric []float64, category []int32, groups []string, label float64, line int) {
	if len(numeric) != b.numWidth || len(category) != b.catWidth || len(groups) != b.sensW {
		panic(fmt.Sprintf("dataset.Builder.Append: row has %d numeric, %d categorical, %d sensitive values; the schema has %d, %d, %d",
			len(numeric), len(category), len(groups), b.numWidth, b.catWidth, b.sensW))
	}
	b.numeric = append(b.numeric, numeric...)
	b.category = append(b.category, category...)
	b.groups = append(b.groups, groups...)
	b.label = append(b.label, label)
	b.line = append(b.line, line)
}

func (b *Builder) appendFrom(d *Dataset, r int) {
	b.Append(d.Numeric[r], d.Category[r], d.Groups[r], d.Label[r], d.Line[r])
}

// Len returns the number of rows appended so far.
func (b *Builder) Len() int { return len(b.label) }

// Finish returns the Dataset; the Builder must not be used afterwards.
func (b *Builder) Finish() *Dataset { return b.finish() }

func (b *Builder) finish() *Dataset {
	n := len(b.label)
	d := &Dataset{
		Schema:   b.schema,
		Source:   b.source,
		Numeric:  rowsOf(b.numeric, n, b.numWidth),
		Category: rowsOf(b.category, n, b.catWidth),
		Groups:   rowsOf(b.groups, n, b.sensW),
		Label:    b.label,
		Line:     b.line,
	}
	*b = Builder{}
	return d
}

// rowsOf slices a flat array into n rows of the given width; each row's capacity ends at
// its own width, so an append to one row cannot overwrite the next.
func rowsOf[T any](flat []T, n, width int) [][]T {
	rows := make([][]T, n)
	for i := range rows {
		rows[i] = flat[i*width : (i+1)*width : (i+1)*width]
	}
	return rows
}
