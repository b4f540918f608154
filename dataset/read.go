package dataset

import (
	"bufio"
	"bytes"
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
	"unicode/utf8"
)

// DefaultMaxLineBytes is the longest line the reader accepts unless ReadOptions says
// otherwise: far beyond any record of customer data, and small enough that a corrupt or
// hostile file (a field of 200 MB, a file without newlines) is refused after reading 1 MiB
// of it instead of being buffered whole.
const DefaultMaxLineBytes = 1 << 20

// maxShownValue is how much of a bad value an error quotes: enough to recognise a typo or a
// shifted column, too little to carry a customer's record into a log.
const maxShownValue = 16

// maxShownName bounds a header name quoted in an error.
const maxShownName = 64

// ctxCheckRows is how many rows the reader reads between two checks of its context.
const ctxCheckRows = 4096

// ReadOptions adjusts a read; the zero value reads in the schema's CSV format.
type ReadOptions struct {
	// Format, when non-nil, replaces the schema's CSV format.
	Format *CSVFormat
	// LabelOptional lets the label column be absent, for data to be scored: every row's
	// Label is then NaN. A label column that is present is still checked.
	LabelOptional bool
	// MaxLineBytes bounds one line, and one record whose quoted fields span lines, in bytes
	// (without its line ending); 0 means DefaultMaxLineBytes. A longer one stops the read
	// with an error wrapping ErrLineTooLong, after at most this many bytes of it were read.
	MaxLineBytes int
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
// input are *InputError values naming name, line, column and the column's name; the read
// stops at the first. Errors quote at most a short prefix of a bad value, and never a value
// of the consent column or of a sensitive attribute: they end up in logs.
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
	maxLine := opts.MaxLineBytes
	switch {
	case maxLine == 0:
		maxLine = DefaultMaxLineBytes
	case maxLine < 0:
		return nil, fmt.Errorf("read %s: max line bytes must be positive, got %d", name, maxLine)
	}
	rr := newRecordReader(r, format, maxLine)
	fail := func(line, field int, column string, err error) error {
		return &InputError{File: name, Line: line, Column: field, ColumnName: clipName(column), Err: err}
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
			if label, err = parseLabel(schema.Label, rec[p.label], p.hidden[p.label]); err != nil {
				return nil, at(p.label, err)
			}
		}
		for i, f := range p.numeric {
			v, err := parseNumber(rec[f], p.hidden[f])
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
					return nil, at(f, reason(ErrUnseenCategory, "unseen category %s: not one of the %d values in the schema's vocabulary (unseen: other would bucket it)", shown(rec[f], p.hidden[f]), len(spec.Values)))
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
			v, err := parseNumber(raw, p.hidden[f])
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
	hidden      []bool     // per field: its values never appear in an error
}

// shown is how an error names a value v: a short quoted prefix, or, for a hidden column (the
// consent column, a sensitive attribute), only that it is not shown. Only error paths call it.
func shown(v string, hidden bool) string {
	if hidden {
		return "(value not shown: a sensitive column)"
	}
	return showValue(v)
}

// showValue quotes at most maxShownValue bytes of v, escaping control characters and invalid
// UTF-8 so that a value cannot forge a log line.
func showValue(v string) string {
	if len(v) <= maxShownValue {
		return strconv.Quote(v)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(prefix(v, maxShownValue)), len(v))
}

// clipName shortens a header name before an error quotes it.
func clipName(name string) string {
	if len(name) <= maxShownName {
		return name
	}
	return prefix(name, maxShownName) + "..."
}

// prefix is v cut to at most n bytes at a rune boundary.
func prefix(v string, n int) string {
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return v[:n]
}

func newPlan(s *Schema, header []string, labelOptional bool, fail func(field int, column string, err error) error) (*plan, error) {
	header = slices.Clone(header) // the record slice is reused by the reader
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff") // a UTF-8 byte order mark
	}
	pos := make(map[string]int, len(header))
	dup := -1
	for i, h := range header {
		if _, seen := pos[h]; seen {
			if dup < 0 {
				dup = i
			}
			continue
		}
		pos[h] = i
	}
	// Missing columns first: a file without a header row then fails on a schema column's
	// name, not by quoting its first record as column names.
	_, hasLabel := pos[s.Label.Column]
	for _, c := range s.Columns() {
		if c == s.Label.Column && labelOptional && !hasLabel {
			continue
		}
		if _, ok := pos[c]; !ok {
			return nil, fail(0, c, reason(ErrMissingColumn, "missing column: the schema needs %q but the header does not have it", c))
		}
	}
	if dup >= 0 {
		h := header[dup]
		return nil, fail(dup+1, h, reason(ErrDuplicateColumn, "the header names column %q twice (fields %d and %d)", clipName(h), pos[h]+1, dup+1))
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
			return nil, fail(i+1, h, reason(ErrUndeclaredColumn, "the file has column %q but the schema neither uses it nor lists it under exclude", clipName(h)))
		}
	}

	p := &plan{header: header, fields: len(header), label: -1, consent: -1, hidden: make([]bool, len(header))}
	if hasLabel {
		p.label = pos[s.Label.Column]
	}
	if s.Consent.Tracked {
		p.consent = pos[s.Consent.Column]
		p.hidden[p.consent] = true
	}
	for _, sa := range s.Sensitive {
		p.hidden[pos[sa.Column]] = true
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

// parseLabel maps a label value to 1 or 0; an error quotes v unless it is hidden.
func parseLabel(spec LabelSpec, v string, hidden bool) (float64, error) {
	switch {
	case v == spec.Positive:
		return 1, nil
	case slices.Contains(spec.Negative, v):
		return 0, nil
	}
	return 0, reason(ErrBadLabel, "cannot read %s as a label: want %q (positive) or one of %q (negative)", shown(v, hidden), spec.Positive, spec.Negative)
}

// parseNumber parses a finite float, allowing surrounding spaces; an error quotes field
// unless it is hidden.
func parseNumber(field string, hidden bool) (float64, error) {
	s := strings.TrimSpace(field)
	if s == "" {
		return 0, reason(ErrBadNumber, "the field is empty (missing values are not supported)")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, reason(ErrBadNumber, "cannot parse %s as a number", shown(field, hidden))
	}
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, reason(ErrBadNumber, "%s is not a finite number", shown(field, hidden))
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

func newRecordReader(r io.Reader, f CSVFormat, maxLine int) recordReader {
	var quote byte
	if f.Quoted() {
		quote = f.Quote[0]
	}
	// encoding/csv and bufio.Scanner would both buffer a whole record before looking at it;
	// the bound stops the input after maxLine bytes of one.
	bounded := &boundedLines{r: r, quote: quote, max: maxLine, line: 1, start: 1}
	if f.Quoted() {
		cr := csv.NewReader(bounded)
		cr.Comma = f.Comma()
		cr.FieldsPerRecord = -1 // the reader reports a wrong field count with the column names
		cr.ReuseRecord = true
		return cr
	}
	sc := bufio.NewScanner(bounded)
	// Room for the longest line the bound lets through, with its line ending.
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine+2)), maxLine+2)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		// The scanner hands out what it has when its input fails; a line the bound cut
		// short is not a line.
		if atEOF && bounded.err != nil && bytes.IndexByte(data, '\n') < 0 {
			return 0, nil, bounded.err
		}
		return bufio.ScanLines(data, atEOF)
	})
	return &plainReader{sc: sc, sep: string(f.Comma())}
}

// boundedLines passes its input through until one record exceeds max bytes, then fails with
// a *lineError naming the line the record began on. A record ends at a newline outside
// quotes: after an even number of quote characters since it began, as RFC 4180 has it (a
// doubled quote inside a quoted field counts twice). With quote 0, every line is a record.
type boundedLines struct {
	r       io.Reader
	quote   byte
	max     int
	n       int // bytes of the current record, without its line ending
	inQuote bool
	line    int // the line of the next byte
	start   int // the line the current record began on
	err     error
}

func (b *boundedLines) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	for i, c := range p[:n] {
		if c == '\n' {
			b.line++
			if !b.inQuote {
				b.n, b.start = 0, b.line
				continue
			}
		}
		if c == '\r' {
			continue // part of a line ending, or harmless
		}
		b.n++
		if b.n > b.max {
			b.err = &lineError{line: b.start, err: &reasonError{
				msg:      fmt.Sprintf("the line (or a quoted record from it) is longer than %d bytes, the reader's limit", b.max),
				sentinel: ErrBadRow,
				cause:    ErrLineTooLong,
			}}
			// Hand over what came before; the reader meets the error on its next call.
			if i == 0 {
				return 0, b.err
			}
			return i, nil
		}
		if b.quote != 0 && c == b.quote {
			b.inQuote = !b.inQuote
		}
	}
	return n, err
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
			// The bound below the scanner stops first; this is the scanner's own guard.
			return nil, &lineError{line: p.line + 1, err: &reasonError{
				msg: "the line is longer than the reader's limit", sentinel: ErrBadRow, cause: ErrLineTooLong}}
		}
		return nil, err
	}
	return nil, io.EOF
}

func (p *plainReader) FieldPos(int) (line, column int) { return p.line, 1 }
