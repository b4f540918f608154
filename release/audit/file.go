package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// A log file is the log as JSON lines: one entry per line, in the exact encoding EncodeLine
// gives, each line ending in a newline. It is the export format: the log itself lives in the
// coordinator's store.

// MaxLineBytes bounds one line of a log file, so that a damaged file cannot make a reader
// buffer without limit.
const MaxLineBytes = 1 << 20

// EncodeLine returns e's line in a log file, newline included.
func EncodeLine(e Entry) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode audit entry %d: %w", e.Seq, err)
	}
	return append(b, '\n'), nil
}

// WriteEntries writes entries as a log file: one line each, in EncodeLine's encoding, the
// format `fedprop audit export` archives and ReadEntries reads back.
func WriteEntries(w io.Writer, entries []Entry) error {
	bw := bufio.NewWriter(w)
	for _, e := range entries {
		line, err := EncodeLine(e)
		if err != nil {
			return err
		}
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadFile reads the log file at path (an export) with ReadEntries; errors name the file.
func ReadFile(ctx context.Context, path string) ([]Entry, error) {
	f, err := os.Open(path) // #nosec G304 -- the caller names the export to read
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	entries, err := ReadEntries(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	return entries, nil
}

// ReadEntries decodes a log file. Every line must be exactly the encoding EncodeLine gives its
// entry, so that any change to the file, even one that decodes to the same entry (another
// spacing, a key in other case), is detected; a line that is not is a *ChainError naming the
// entry (the sequence number its position gives) and the line. ReadEntries does not check the
// chain: pass the entries to Verify.
func ReadEntries(ctx context.Context, r io.Reader) ([]Entry, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var entries []Entry
	for lineNo := 1; ; lineNo++ {
		if lineNo%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		bad := func(reason string) error {
			return &ChainError{Seq: uint64(len(entries)) + 1, Line: lineNo, Reason: reason}
		}
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return entries, nil
		}
		switch {
		case errors.Is(err, errLineTooLong):
			return nil, bad(fmt.Sprintf("the line is longer than %d bytes", MaxLineBytes))
		case errors.Is(err, io.EOF):
			return nil, bad("the last line does not end in a newline: the file was cut or edited")
		case err != nil:
			return nil, err
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, bad(fmt.Sprintf("the line is not an audit entry: %v", err))
		}
		canonical, err := EncodeLine(e)
		if err != nil || !bytes.Equal(canonical[:len(canonical)-1], line) {
			return nil, bad("the line is not in the log's exact encoding: it was edited")
		}
		entries = append(entries, e)
	}
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline; io.EOF with a non-empty line means the
// last line has no newline.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > MaxLineBytes+1 {
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}
