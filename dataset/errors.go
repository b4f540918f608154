package dataset

import (
	"errors"
	"fmt"
)

// Sentinel errors that an *InputError unwraps to; check them with errors.Is.
var (
	// ErrMissingColumn: a column the schema needs is not in the file's header.
	ErrMissingColumn = errors.New("missing column")
	// ErrUndeclaredColumn: the file has a column the schema neither uses nor excludes.
	ErrUndeclaredColumn = errors.New("undeclared column")
	// ErrDuplicateColumn: the header names the same column twice.
	ErrDuplicateColumn = errors.New("duplicate column")
	// ErrBadNumber: a numeric field is empty, unparseable, NaN or infinite.
	ErrBadNumber = errors.New("bad number")
	// ErrUnseenCategory: a categorical value outside the vocabulary under the "error" policy.
	ErrUnseenCategory = errors.New("unseen category")
	// ErrEmptyFile: the input has no header row.
	ErrEmptyFile = errors.New("empty file")
	// ErrBadLabel: a label value that is neither the positive nor a negative value.
	ErrBadLabel = errors.New("bad label")
	// ErrBadRow: a row that cannot be split into the header's fields (wrong field count,
	// broken quoting, a line too long).
	ErrBadRow = errors.New("bad row")
	// ErrMissingValue: a missing value (a csv.missing token, a Parquet null) in a column
	// whose missing-value policy rejects it, or in the label. A missing label comes with
	// ErrBadLabel.
	ErrMissingValue = errors.New("missing value")
	// ErrBadFile: the input is not a readable file of its format (a Parquet file whose
	// footer or pages cannot be decoded).
	ErrBadFile = errors.New("bad file")
	// ErrBadColumnType: a column of a typed format (Parquet) whose type the reader cannot
	// use for the column's role (a timestamp as a number, a list as a category).
	ErrBadColumnType = errors.New("bad column type")
	// ErrLineTooLong: a line, or a record whose quoted fields span lines, is longer than
	// the reader's limit (ReadOptions.MaxLineBytes). It comes with ErrBadRow.
	ErrLineTooLong = errors.New("line too long")
)

// ErrInvalidSchema is wrapped by every error LoadSchema, ParseSchema and Schema.Validate
// return for a schema that is malformed or inconsistent.
var ErrInvalidSchema = errors.New("invalid schema")

// InputError locates a problem in a CSV (or Parquet) input. It unwraps to one of the sentinel errors
// above (and, for low-level CSV syntax errors, to the encoding/csv error as well).
type InputError struct {
	// File is the name of the input, as given to the reader.
	File string
	// Line is the 1-based line of the problem; 0 when it is about the input as a whole. In
	// a Parquet input, which has no lines, it is the 1-based row number.
	Line int
	// Column is the 1-based field position in the row (in a Parquet input, the column's
	// position in the file's schema); 0 when the problem is about the file, the header or
	// the row as a whole.
	Column int
	// ColumnName is the header name of the column concerned, when there is one.
	ColumnName string
	// Err says what is wrong.
	Err error
}

// Error reads like `bank.csv:17:5 (column "balance"): cannot parse "12x" as a number`. It
// never carries a whole record: a value is quoted only as a short prefix, and never from the
// consent column or a sensitive attribute.
func (e *InputError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, e.Line)
		if e.Column > 0 {
			loc = fmt.Sprintf("%s:%d", loc, e.Column)
		}
	}
	if e.ColumnName != "" {
		return fmt.Sprintf("%s (column %q): %v", loc, e.ColumnName, e.Err)
	}
	return fmt.Sprintf("%s: %v", loc, e.Err)
}

// Unwrap returns the underlying error.
func (e *InputError) Unwrap() error { return e.Err }

// reasonError is a human sentence that unwraps to a sentinel (and optionally a cause)
// without the sentinel's text being appended to the sentence.
type reasonError struct {
	msg      string
	sentinel error
	cause    error
}

func (e *reasonError) Error() string { return e.msg }

func (e *reasonError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.sentinel, e.cause}
	}
	return []error{e.sentinel}
}

func reason(sentinel error, format string, args ...any) error {
	return &reasonError{msg: fmt.Sprintf(format, args...), sentinel: sentinel}
}

// Reason is an input error worded as msg alone that unwraps to sentinel (and cause, when not
// nil), as this package words its own: for readers of other formats (dataset/parquet).
func Reason(sentinel, cause error, msg string) error {
	return &reasonError{msg: msg, sentinel: sentinel, cause: cause}
}
