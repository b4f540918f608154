package dataset

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// WriteCSV renders d as CSV in its schema's format: a header, then one row per record,
// with the consent column (holding the first granting value) when consent is tracked.
// Reading the output back with the same schema gives the same rows. Numbers are written in
// the shortest form that parses back to the same float64; a row in a categorical "other"
// bucket gets OtherCategory; a banded sensitive column that is not a feature gets its band
// label, which the reader accepts. A missing value (a NaN number, the MissingCategory level
// or group) is written as the schema's first csv.missing token; without one, a missing
// number cannot be written, and a missing level is written as MissingCategory, which reads
// back as that level. Under header: false the columns come in csv.columns order, an excluded
// one empty, and skip_lines writes as many empty lines first.
func WriteCSV(w io.Writer, d *Dataset) error {
	cw, err := NewCSVWriter(w, d.Schema)
	if err != nil {
		return err
	}
	if err := cw.WriteHeader(); err != nil {
		return err
	}
	for i := range d.Len() {
		if err := cw.WriteRow(d, i); err != nil {
			return err
		}
	}
	return cw.Flush()
}

// CSVWriter writes rows of Datasets that follow one schema, for callers that interleave
// rows of several Datasets or need a consent value other than the first granting one
// (the synthetic generator writes its opted-out customers this way).
type CSVWriter struct {
	schema   *Schema
	header   []string
	sensOnly []int // indexes of sensitive attributes that are not features
	order    []int // under header: false, per csv.columns entry its index in header, or -1
	record   []string
	ordered  []string
	quoted   *csv.Writer
	plain    *bufio.Writer
	sep      string
}

// NewCSVWriter returns a writer of schema's CSV format to w.
func NewCSVWriter(w io.Writer, schema *Schema) (*CSVWriter, error) {
	if err := schema.Validate(); err != nil {
		return nil, fmt.Errorf("write csv: %w", err)
	}
	cw := &CSVWriter{schema: schema, sep: string(schema.CSV.Comma())}
	if schema.Consent.Tracked {
		cw.header = append(cw.header, schema.Consent.Column)
	}
	cw.header = append(cw.header, schema.Numeric...)
	for _, c := range schema.Categorical {
		cw.header = append(cw.header, c.Column)
	}
	for k, sa := range schema.Sensitive {
		if !sa.ModelInput {
			cw.sensOnly = append(cw.sensOnly, k)
			cw.header = append(cw.header, sa.Column)
		}
	}
	cw.header = append(cw.header, schema.Label.Column)
	if !schema.CSV.HasHeader() {
		// The reader finds columns by position: write them where csv.columns says.
		for _, c := range schema.CSV.Columns {
			cw.order = append(cw.order, slices.Index(cw.header, c))
		}
	}
	if schema.CSV.Quoted() {
		cw.quoted = csv.NewWriter(w)
		cw.quoted.Comma = schema.CSV.Comma()
	} else {
		cw.plain = bufio.NewWriter(w)
	}
	return cw, nil
}

// Header returns the column names in the order they are written.
func (cw *CSVWriter) Header() []string {
	if cw.order != nil {
		return slices.Clone(cw.schema.CSV.Columns)
	}
	return slices.Clone(cw.header)
}

// WriteHeader writes what comes before the rows: skip_lines empty lines, then the header row
// unless the schema says header: false.
func (cw *CSVWriter) WriteHeader() error {
	for range cw.schema.CSV.SkipLines {
		if err := cw.write(nil); err != nil {
			return err
		}
	}
	if !cw.schema.CSV.HasHeader() {
		return nil
	}
	return cw.write(cw.header)
}

// WriteRow writes row i of d, with the first granting consent value.
func (cw *CSVWriter) WriteRow(d *Dataset, i int) error {
	consent := ""
	if cw.schema.Consent.Tracked {
		consent = cw.schema.Consent.Grants[0]
	}
	return cw.WriteRowWithConsent(d, i, consent)
}

// WriteRowWithConsent writes row i of d with the given consent value (ignored when the
// schema does not track consent).
func (cw *CSVWriter) WriteRowWithConsent(d *Dataset, i int, consent string) error {
	s := cw.schema
	if !sameLayout(d.Schema, s) {
		return fmt.Errorf("write csv: %s does not follow schema %q", d.Source, s.Name)
	}
	token, hasToken := "", len(s.CSV.Missing) > 0
	if hasToken {
		token = s.CSV.Missing[0]
	}
	rec := cw.record[:0]
	if s.Consent.Tracked {
		rec = append(rec, consent)
	}
	for j, v := range d.Numeric[i] {
		switch {
		case !math.IsNaN(v):
			rec = append(rec, strconv.FormatFloat(v, 'g', -1, 64))
		case hasToken:
			rec = append(rec, token)
		default:
			return fmt.Errorf("write csv: row %d, column %q: a missing value cannot be written: the schema declares no csv.missing token", i, s.Numeric[j])
		}
	}
	for j, idx := range d.Category[i] {
		values := s.Categorical[j].Values
		switch {
		case int(idx) >= 0 && int(idx) < len(values) && values[idx] == MissingCategory && hasToken:
			rec = append(rec, token)
		case int(idx) >= 0 && int(idx) < len(values):
			rec = append(rec, values[idx])
		default:
			rec = append(rec, OtherCategory)
		}
	}
	for _, k := range cw.sensOnly {
		g := d.Groups[i][k]
		switch {
		case g == MissingCategory && hasToken:
			g = token
		case g == MissingCategory && len(s.Sensitive[k].Bands) > 0:
			return fmt.Errorf("write csv: row %d, column %q: a missing value cannot be written: the schema declares no csv.missing token", i, s.Sensitive[k].Column)
		}
		rec = append(rec, g)
	}
	if d.Label[i] == 1 {
		rec = append(rec, s.Label.Positive)
	} else {
		rec = append(rec, s.Label.Negative[0])
	}
	cw.record = rec
	if cw.order != nil {
		out := cw.ordered[:0]
		for _, j := range cw.order {
			if j < 0 {
				out = append(out, "") // an excluded column: never read
			} else {
				out = append(out, rec[j])
			}
		}
		cw.ordered = out
		rec = out
	}
	return cw.write(rec)
}

func (cw *CSVWriter) write(rec []string) error {
	if cw.quoted != nil {
		if err := cw.quoted.Write(rec); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
		return nil
	}
	for i, f := range rec {
		if strings.Contains(f, cw.sep) || strings.ContainsAny(f, "\r\n") {
			return fmt.Errorf("write csv: column %q: value %q cannot be written without quoting", cw.Header()[i], f)
		}
		// A bufio.Writer's error sticks: the newline's check below reports any.
		if i > 0 {
			_, _ = cw.plain.WriteString(cw.sep)
		}
		_, _ = cw.plain.WriteString(f)
	}
	if _, err := cw.plain.WriteString("\n"); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// Flush writes any buffered data to the underlying writer.
func (cw *CSVWriter) Flush() error {
	if cw.quoted != nil {
		cw.quoted.Flush()
		if err := cw.quoted.Error(); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
		return nil
	}
	if err := cw.plain.Flush(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}
