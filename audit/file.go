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
	"sync"
)

// MaxLineBytes bounds one line of a log file, so that a damaged file cannot make a reader
// buffer without limit.
const MaxLineBytes = 1 << 20

// FileStore keeps a log as a file of JSON lines: one entry per line, in the exact encoding
// EncodeLine gives, each line ending in a newline. It appends with O_APPEND and syncs every
// entry to disk before Append returns. Only one process may append to a file at a time.
type FileStore struct {
	mu   sync.Mutex
	path string
}

// NewFileStore returns a store for the file at path, created on the first Append.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Path returns the file's path.
func (f *FileStore) Path() string { return f.path }

// EncodeLine returns e's line in a log file, newline included.
func EncodeLine(e Entry) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode audit entry %d: %w", e.Seq, err)
	}
	return append(b, '\n'), nil
}

// Append writes e as the file's last line and syncs the file.
func (f *FileStore) Append(ctx context.Context, e Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := EncodeLine(e)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	file, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if _, err := file.Write(line); err != nil {
		_ = file.Close()
		return fmt.Errorf("audit log %s: %w", f.path, err)
	}
	if err := file.Sync(); err != nil {
		_ = file.Close()
		return fmt.Errorf("audit log %s: %w", f.path, err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("audit log %s: %w", f.path, err)
	}
	return nil
}

// Entries reads every entry of the file (none when it does not exist yet).
func (f *FileStore) Entries(ctx context.Context) ([]Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	file, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer file.Close()
	entries, err := ReadEntries(ctx, file)
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", f.path, err)
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
