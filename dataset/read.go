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
	// Format, when non-nil, replaces the schema's CSV format, all of it (a file of the same
	// data whose layout differs: another delimiter, a title line to skip); it is checked
	// against the schema as the schema's own is. A Parquet read uses its TrimSpace and
	// Missing only.
	Format *CSVFormat
	// LabelOptional lets the label column be absent, for data to be scored: every row's
	// Label is then NaN. A label column that is present is still checked.
	LabelOptional bool
	// MaxLineBytes bounds one line (skipped ones too), and one record whose quoted fields
	// span lines, in bytes (without its line ending); 0 means DefaultMaxLineBytes. A longer
	// one stops the read with an error wrapping ErrLineTooLong, after at most this many bytes
	// of it were read. A Parquet read applies it to each text value.
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

// ReadCSVWith streams CSV from r into a Dataset. After the schema's skip_lines, the first
// row is the header, unless the schema says header: false and names the columns under
// csv.columns: either way the columns must include every column the schema uses and no
// column the schema neither uses nor excludes. Each data row must have that many fields. A
// row whose consent does not grant the schema's purpose (or whose consent value is missing)
// is counted in ExcludedNoConsent and not parsed further. A missing value (see
// CSVFormat.Missing) follows its column's policy (Schema.Missing). Problems in the input are
// *InputError values naming name, line, column and the column's name; the read stops at the
// first. Errors quote at most a short prefix of a bad value, never a missing value, and never
// a value of the consent column or of a sensitive attribute: they end up in logs.
func ReadCSVWith(ctx context.Context, r io.Reader, name string, schema *Schema, opts ReadOptions) (*Dataset, error) {
	if err := schema.Validate(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	format := schema.CSV
	if opts.Format != nil {
		format = *opts.Format
		with := *schema
		with.CSV = format
		if err := with.Validate(); err != nil {
			return nil, fmt.Errorf("read %s: csv format: %w", name, err)
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

	columns, headerLine := format.Columns, 0
	if format.HasHeader() {
		header, err := rr.Read()
		if errors.Is(err, io.EOF) {
			return nil, &InputError{File: name, Err: reason(ErrEmptyFile, "empty file: no header row")}
		}
		if err != nil {
			return nil, readError(name, err)
		}
		headerLine, _ = rr.FieldPos(0)
		columns = slices.Clone(header) // the record slice is reused by the reader
		if format.TrimSpace {
			for i, c := range columns {
				columns[i] = strings.TrimSpace(c)
			}
		}
	}
	dec, err := NewRecordDecoder(schema, name, columns, headerLine, opts)
	if err != nil {
		return nil, err
	}

	values := make([]Value, 0, dec.Fields())
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
		if line == 1 && len(rec) > 0 {
			rec[0] = strings.TrimPrefix(rec[0], "\ufeff") // a byte order mark before a headerless file's first record
		}
		values = values[:0]
		for _, f := range rec {
			values = append(values, Value{Kind: KindText, Text: f})
		}
		if err := dec.Decode(line, values); err != nil {
			return nil, err
		}
	}
	return dec.Dataset(), nil
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
	used        []bool     // per field: read by the decoder (not excluded)
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
	header = slices.Clone(header) // the caller's slice may be reused
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

	p := &plan{header: header, fields: len(header), label: -1, consent: -1, hidden: make([]bool, len(header)), used: make([]bool, len(header))}
	for _, c := range s.Columns() {
		if i, ok := pos[c]; ok {
			p.used[i] = true
		}
	}
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
	case v == spec.Positive || slices.Contains(spec.PositiveAliases, v):
		return 1, nil
	case slices.Contains(spec.Negative, v):
		return 0, nil
	}
	return 0, reason(ErrBadLabel, "cannot read %s as a label: want one of %q (positive) or of %q (negative)", shown(v, hidden), spec.Positives(), spec.Negative)
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
	// the bound stops the input after maxLine bytes of one. It also drops the skipped lines,
	// so that a junk line is never parsed as CSV.
	var comment byte
	if f.Comment != "" {
		comment = f.Comment[0]
	}
	bounded := &boundedLines{r: r, quote: quote, comment: comment, max: maxLine, line: 1, start: 1, skip: f.SkipLines}
	if f.Quoted() {
		cr := csv.NewReader(bounded)
		cr.Comma = f.Comma()
		cr.Comment = rune(comment)
		cr.FieldsPerRecord = -1 // the reader reports a wrong field count with the column names
		cr.ReuseRecord = true
		cr.TrimLeadingSpace = f.TrimSpace // `a, "b"`: the space before the quote is not data
		if f.SkipLines == 0 {
			return cr
		}
		return &offsetRecords{Reader: cr, off: f.SkipLines}
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
	return &plainReader{sc: sc, sep: string(f.Comma()), comment: comment, line: f.SkipLines}
}

// offsetRecords numbers the lines of a csv.Reader that starts after skipped lines as lines
// of the whole file.
type offsetRecords struct {
	*csv.Reader
	off int
}

func (o *offsetRecords) Read() ([]string, error) {
	rec, err := o.Reader.Read()
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		pe.StartLine += o.off
		pe.Line += o.off
	}
	return rec, err
}

func (o *offsetRecords) FieldPos(field int) (line, column int) {
	line, column = o.Reader.FieldPos(field)
	return line + o.off, column
}

// boundedLines passes its input through until one record exceeds max bytes, then fails with
// a *lineError naming the line the record began on. A record ends at a newline outside
// quotes: after an even number of quote characters since it began, as RFC 4180 has it (a
// doubled quote inside a quoted field counts twice). With quote 0, every line is a record.
// The first skip lines are dropped: bounded like any other, counted, but neither passed on
// nor looked at for quotes; nor is a quote looked at in a comment line.
type boundedLines struct {
	r         io.Reader
	quote     byte
	comment   byte
	max       int
	skip      int
	n         int // bytes of the current record, without its line ending
	inQuote   bool
	inComment bool
	line      int // the line of the next byte
	start     int // the line the current record began on
	err       error
}

func (b *boundedLines) Read(p []byte) (int, error) {
	for {
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.r.Read(p)
		out := 0 // the bytes passed on, moved to the front of p
		for _, c := range p[:n] {
			if c == '\n' && (b.line <= b.skip || !b.inQuote) {
				b.line++
				b.n, b.start, b.inComment = 0, b.line, false
				if b.line > b.skip+1 { // the end of a record, not of a skipped line
					p[out] = c
					out++
				}
				continue
			}
			if c == '\n' {
				b.line++ // inside quotes: part of the record
			}
			if c != '\r' { // '\r' is part of a line ending, or harmless
				b.n++
				if b.n > b.max {
					b.err = &lineError{line: b.start, err: &reasonError{
						msg:      fmt.Sprintf("the line (or a quoted record from it) is longer than %d bytes, the reader's limit", b.max),
						sentinel: ErrBadRow,
						cause:    ErrLineTooLong,
					}}
					// Hand over what came before; the reader meets the error on its next call.
					if out == 0 {
						return 0, b.err
					}
					return out, nil
				}
				if b.comment != 0 && c == b.comment && b.n == 1 && !b.inQuote {
					b.inComment = true
				}
				if b.quote != 0 && c == b.quote && b.line > b.skip && !b.inComment {
					b.inQuote = !b.inQuote
				}
			}
			if b.line > b.skip {
				p[out] = c
				out++
			}
		}
		if out == 0 && n > 0 && err == nil {
			continue // every byte was in skipped lines: read on, rather than return 0, nil
		}
		return out, err
	}
}

// plainReader splits lines at every delimiter, with no quoting. Empty lines and comment
// lines are skipped, as encoding/csv skips them, and a trailing carriage return is dropped.
type plainReader struct {
	sc      *bufio.Scanner
	sep     string
	comment byte
	line    int
	record  []string
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
		if text == "" || (p.comment != 0 && text[0] == p.comment) {
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
