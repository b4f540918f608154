package dataset

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// maxLineBytes bounds one line of an unquoted file, so a file without newlines cannot
// make the reader buffer without limit.
const maxLineBytes = 16 << 20

// ctxCheckRows is how many rows the reader reads between two checks of its context.
const ctxCheckRows = 4096

// ReadOptions adjusts a read; the zero value reads in the schema's CSV format.
type ReadOptions struct {
	// Format, when non-nil, replaces the schema's CSV format.
	Format *CSVFormat
	// LabelOptional lets the label column be absent, for data to be scored: every row's
	// Label is then NaN. A label column that is present is still checked.
	LabelOptional bool
}

// ReadCSV reads the file at path with schema; see ReadCSVWith.
func ReadCSV(ctx context.Context, path string, schema *Schema) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read csv: %w", err)
	}
	defer f.Close()
	return ReadCSVWith(ctx, f, path, schema, ReadOptions{})
}

// ReadCSVFrom reads CSV from r with schema, naming it name in errors; see ReadCSVWith.
func ReadCSVFrom(ctx context.Context, r io.Reader, name string, schema *Schema) (*Dataset, error) {
	return ReadCSVWith(ctx, r, name, schema, ReadOptions{})
}

// ReadCSVWith streams CSV from r into a Dataset. The first row is the header: it must hold
// every column the schema uses and no column the schema neither uses nor excludes. Each
// data row must have the header's field count. A row whose consent does not grant the
// schema's purpose is counted in ExcludedNoConsent and not parsed further. Problems in the
// input are *InputError values naming name, line and column; the read stops at the first.
func ReadCSVWith(ctx context.Context, r io.Reader, name string, schema *Schema, opts ReadOptions) (*Dataset, error) {
	if err := schema.Validate(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	format := schema.CSV
	if opts.Format != nil {
		format = *opts.Format
		if problems := format.validate(); len(problems) > 0 {
			return nil, fmt.Errorf("read %s: %w: %s", name, ErrInvalidSchema, strings.Join(problems, "; "))
		}
	}
	rr := newRecordReader(r, format)
	fail := func(line, field int, column string, err error) error {
		return &InputError{File: name, Line: line, Column: field, ColumnName: column, Err: err}
	}

	header, err := rr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fail(0, 0, "", reason(ErrEmptyFile, "empty file: no header row"))
	}
	if err != nil {
		return nil, readError(name, err)
	}
	headerLine, _ := rr.FieldPos(0)
	p, err := newPlan(schema, header, opts.LabelOptional, func(field int, column string, err error) error {
		return fail(headerLine, field, column, err)
	})
	if err != nil {
		return nil, err
	}

	b := newBuilder(schema, name, 0)
	num := make([]float64, len(schema.Numeric))
	cat := make([]int32, len(schema.Categorical))
	groups := make([]string, len(schema.Sensitive))
	intern := map[string]string{}
	excluded := 0
	for rowsRead := 0; ; rowsRead++ {
		if rowsRead%ctxCheckRows == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
		}
		rec, err := rr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, readError(name, err)
		}
		line, _ := rr.FieldPos(0)
		if len(rec) != p.fields {
			return nil, fail(line, 0, "", reason(ErrBadRow, "the row has %d fields, the header has %d", len(rec), p.fields))
		}
		at := func(field int, err error) error { return fail(line, field+1, p.header[field], err) }

		if p.consent >= 0 && !schema.Consent.Granted(rec[p.consent]) {
			excluded++
			continue
		}
		label := math.NaN() // scoring data without a label column
		if p.label >= 0 {
			var err error
			if label, err = parseLabel(schema.Label, rec[p.label]); err != nil {
				return nil, at(p.label, err)
			}
		}
		for i, f := range p.numeric {
			v, err := parseNumber(rec[f])
			if err != nil {
				return nil, at(f, err)
			}
			num[i] = v
		}
		for j, f := range p.categorical {
			idx, ok := p.vocab[j][rec[f]]
			if !ok {
				spec := schema.Categorical[j]
				if spec.Policy() != UnseenOther {
					return nil, at(f, reason(ErrUnseenCategory, "unseen category %q: not one of the %d values in the schema's vocabulary (unseen: other would bucket it)", rec[f], len(spec.Values)))
				}
				idx = int32(len(spec.Values))
			}
			cat[j] = idx
		}
		for k, f := range p.sensitive {
			spec := schema.Sensitive[k]
			raw := rec[f]
			if len(spec.Bands) == 0 {
				g, ok := intern[raw]
				if !ok {
					g = strings.Clone(raw)
					intern[g] = g
				}
				groups[k] = g
				continue
			}
			v, err := parseNumber(raw)
			switch {
			case err == nil:
				groups[k] = p.bands[k][spec.Band(v)]
			case slices.Contains(p.bands[k], raw):
				// A value banded before export; a numeric feature column would have
				// failed to parse above, so this is a sensitive-only column.
				groups[k] = p.bands[k][slices.Index(p.bands[k], raw)]
			default:
				return nil, at(f, err)
			}
		}
		b.Append(num, cat, groups, label, line)
	}
	d := b.finish()
	d.ExcludedNoConsent = excluded
	return d, nil
}

// plan maps the schema's columns to field positions of one header.
type plan struct {
	header      []string
	fields      int
	label       int // -1 when an optional label is absent
	consent     int // -1 when consent is not tracked
	numeric     []int
	categorical []int
	vocab       []map[string]int32
	sensitive   []int
	bands       [][]string // band labels per sensitive attribute (nil when unbanded)
}

func newPlan(s *Schema, header []string, labelOptional bool, fail func(field int, column string, err error) error) (*plan, error) {
	header = slices.Clone(header) // the record slice is reused by the reader
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff") // a UTF-8 byte order mark
	}
	pos := make(map[string]int, len(header))
	for i, h := range header {
		if _, dup := pos[h]; dup {
			return nil, fail(i+1, h, reason(ErrDuplicateColumn, "the header names column %q twice (fields %d and %d)", h, pos[h]+1, i+1))
		}
		pos[h] = i
	}
	_, hasLabel := pos[s.Label.Column]
	for _, c := range s.Columns() {
		if c == s.Label.Column && labelOptional && !hasLabel {
			continue
		}
		if _, ok := pos[c]; !ok {
			return nil, fail(0, c, reason(ErrMissingColumn, "missing column: the schema needs %q but the header does not have it", c))
		}
	}
	declared := map[string]bool{}
	for _, c := range s.Columns() {
		declared[c] = true
	}
	for _, c := range s.Exclude {
		declared[c] = true
	}
	for i, h := range header {
		if !declared[h] {
			return nil, fail(i+1, h, reason(ErrUndeclaredColumn, "the file has column %q but the schema neither uses it nor lists it under exclude", h))
		}
	}

	p := &plan{header: header, fields: len(header), label: -1, consent: -1}
	if hasLabel {
		p.label = pos[s.Label.Column]
	}
	if s.Consent.Tracked {
		p.consent = pos[s.Consent.Column]
	}
	for _, c := range s.Numeric {
		p.numeric = append(p.numeric, pos[c])
	}
	for _, c := range s.Categorical {
		p.categorical = append(p.categorical, pos[c.Column])
		v := make(map[string]int32, len(c.Values))
		for i, val := range c.Values {
			v[val] = int32(i)
		}
		p.vocab = append(p.vocab, v)
	}
	for _, sa := range s.Sensitive {
		p.sensitive = append(p.sensitive, pos[sa.Column])
		p.bands = append(p.bands, sa.BandLabels())
	}
	return p, nil
}

// parseLabel maps a label value to 1 or 0.
func parseLabel(spec LabelSpec, v string) (float64, error) {
	switch {
	case v == spec.Positive:
		return 1, nil
	case slices.Contains(spec.Negative, v):
		return 0, nil
	}
	return 0, reason(ErrBadLabel, "cannot read %q as a label: want %q (positive) or one of %q (negative)", v, spec.Positive, spec.Negative)
}

// parseNumber parses a finite float, allowing surrounding spaces.
func parseNumber(field string) (float64, error) {
	s := strings.TrimSpace(field)
	if s == "" {
		return 0, reason(ErrBadNumber, "cannot parse %q as a number (missing values are not supported)", field)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, reason(ErrBadNumber, "cannot parse %q as a number", field)
	}
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, reason(ErrBadNumber, "%q is not a finite number", field)
	}
	return v, nil
}

// readError turns an error of the record reader into an *InputError where it locates one.
func readError(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &InputError{File: name, Line: pe.Line, Err: &reasonError{
			msg:      fmt.Sprintf("%v (at byte %d of the line)", pe.Err, pe.Column),
			sentinel: ErrBadRow,
			cause:    pe.Err,
		}}
	}
	var le *lineError
	if errors.As(err, &le) {
		return &InputError{File: name, Line: le.line, Err: le.err}
	}
	return fmt.Errorf("read %s: %w", name, err)
}

// recordReader is the part of *csv.Reader the reader uses, so that unquoted files can be
// split by a simpler reader.
type recordReader interface {
	Read() ([]string, error)
	FieldPos(field int) (line, column int)
}

func newRecordReader(r io.Reader, f CSVFormat) recordReader {
	if f.Quoted() {
		cr := csv.NewReader(r)
		cr.Comma = f.Comma()
		cr.FieldsPerRecord = -1 // the reader reports a wrong field count with the column names
		cr.ReuseRecord = true
		return cr
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	return &plainReader{sc: sc, sep: string(f.Comma())}
}

// plainReader splits lines at every delimiter, with no quoting. Empty lines are skipped,
// as encoding/csv skips them, and a trailing carriage return is dropped.
type plainReader struct {
	sc     *bufio.Scanner
	sep    string
	line   int
	record []string
}

// lineError is a problem the plainReader locates on a line.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *lineError) Unwrap() error { return e.err }

func (p *plainReader) Read() ([]string, error) {
	for p.sc.Scan() {
		p.line++
		text := strings.TrimSuffix(p.sc.Text(), "\r")
		if text == "" {
			continue
		}
		p.record = p.record[:0]
		for {
			field, rest, found := strings.Cut(text, p.sep)
			p.record = append(p.record, field)
			if !found {
				break
			}
			text = rest
		}
		return p.record, nil
	}
	if err := p.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &lineError{line: p.line + 1, err: &reasonError{
				msg: fmt.Sprintf("the line is longer than %d bytes", maxLineBytes), sentinel: ErrBadRow, cause: err}}
		}
		return nil, err
	}
	return nil, io.EOF
}

func (p *plainReader) FieldPos(int) (line, column int) { return p.line, 1 }
