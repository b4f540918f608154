package dataset

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// WriteCSV renders d as CSV in its schema's format: a header, then one row per record,
// with the consent column (holding the first granting value) when consent is tracked.
// Reading the output back with the same schema gives the same rows. Numbers are written in
// the shortest form that parses back to the same float64; a row in a categorical "other"
// bucket gets OtherCategory; a banded sensitive column that is not a feature gets its band
// label, which the reader accepts.
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
	record   []string
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
	if schema.CSV.Quoted() {
		cw.quoted = csv.NewWriter(w)
		cw.quoted.Comma = schema.CSV.Comma()
	} else {
		cw.plain = bufio.NewWriter(w)
	}
	return cw, nil
}

// Header returns the column names in the order they are written.
func (cw *CSVWriter) Header() []string { return slices.Clone(cw.header) }

// WriteHeader writes the header row.
func (cw *CSVWriter) WriteHeader() error { return cw.write(cw.header) }

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
	rec := cw.record[:0]
	if s.Consent.Tracked {
		rec = append(rec, consent)
	}
	for _, v := range d.Numeric[i] {
		rec = append(rec, strconv.FormatFloat(v, 'g', -1, 64))
	}
	for j, idx := range d.Category[i] {
		values := s.Categorical[j].Values
		if int(idx) >= 0 && int(idx) < len(values) {
			rec = append(rec, values[idx])
		} else {
			rec = append(rec, OtherCategory)
		}
	}
	for _, k := range cw.sensOnly {
		rec = append(rec, d.Groups[i][k])
	}
	if d.Label[i] == 1 {
		rec = append(rec, s.Label.Positive)
	} else {
		rec = append(rec, s.Label.Negative[0])
	}
	cw.record = rec
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
			return fmt.Errorf("write csv: column %q: value %q cannot be written without quoting", cw.header[i], f)
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
