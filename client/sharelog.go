package client

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/task"
)

// ShareLogFile is the name of a member's share log in its state directory: one JSON line per
// decryption share it gave, appended and synced before the share leaves the member.
const ShareLogFile = "shares.jsonl"

// Bounds on a share log as it is read back (by the member at start, by `fedprop audit
// members` from files an operator hands it).
const (
	// MaxShareLogBytes bounds a whole log: a member giving three shares a round for a
	// thousand rounds of 10,000-contributor aggregates stays well inside it.
	MaxShareLogBytes = 4 << 30
	// maxShareLineBytes bounds one record: 100,000 contributors with their ids and digests.
	maxShareLineBytes = 64 << 20
	maxShareRunLen    = 128
	maxSharePoint     = 1 << 16
)

// ErrShareLog reports a share log that does not read: a line that is not a record, a field
// out of range, a log too large. The error names the file, the line and the field.
var ErrShareLog = errors.New("bad share log")

// shareLine is a ShareRecord as one line of the log: kinds by name, so the log reads.
type shareLine struct {
	Member              string   `json:"member"`
	Run                 string   `json:"run"`
	Round               int      `json:"round"`
	Purpose             string   `json:"purpose"`
	Contributors        int      `json:"contributors"`
	Digest              string   `json:"aggregate_sha256"`
	Active              []int    `json:"active"`
	ContributorIDs      []string `json:"contributor_ids"`
	ContributionDigests []string `json:"contribution_sha256"`
}

// MarshalShareRecord is the log line of r, without its newline.
func MarshalShareRecord(r ShareRecord) ([]byte, error) {
	return json.Marshal(shareLine{Member: r.Member, Run: r.Run, Round: r.Round, Purpose: r.Purpose.String(), Contributors: r.Contributors,
		Digest: r.Digest, Active: r.Active, ContributorIDs: r.ContributorIDs, ContributionDigests: r.ContributionDigests})
}

// purposes are the kinds of sum a share can be for, by name.
var purposes = map[string]task.Kind{"stats": task.KindStats, "train": task.KindTrain, "evaluate": task.KindEvaluate}

// ReadShareLog reads a share log (name is for errors) and checks every record: a member and a
// run, a round >= 0, a purpose, the aggregate's hex SHA-256, an active set of increasing
// committee points, and as many distinct contributor ids and hex digests as the aggregate
// counts. It reads at most MaxShareLogBytes.
func ReadShareLog(r io.Reader, name string) ([]ShareRecord, error) {
	sc := bufio.NewScanner(io.LimitReader(r, MaxShareLogBytes+1))
	sc.Buffer(make([]byte, 0, 64<<10), maxShareLineBytes)
	var (
		out   []ShareRecord
		read  int64
		line  int
		field = func(f, format string, args ...any) error {
			return fmt.Errorf("%w: %s, line %d, field %s: %s", ErrShareLog, name, line, f, fmt.Sprintf(format, args...))
		}
	)
	for sc.Scan() {
		line++
		b := sc.Bytes()
		read += int64(len(b)) + 1
		if read > MaxShareLogBytes {
			return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrShareLog, name, int64(MaxShareLogBytes))
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var l shareLine
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("%w: %s, line %d: %v", ErrShareLog, name, line, err)
		}
		purpose, ok := purposes[l.Purpose]
		switch {
		case pki.ValidName(l.Member) != nil:
			return nil, field("member", "%q is not a client id", clipString(l.Member))
		case l.Run == "" || len(l.Run) > maxShareRunLen:
			return nil, field("run", "empty or longer than %d bytes", maxShareRunLen)
		case l.Round < 0:
			return nil, field("round", "%d is negative", l.Round)
		case !ok:
			return nil, field("purpose", "%q is not stats, train or evaluate", clipString(l.Purpose))
		case !isHexDigest(l.Digest):
			return nil, field("aggregate_sha256", "not a hex SHA-256")
		case l.Contributors < 1 || l.Contributors != len(l.ContributorIDs):
			return nil, field("contributor_ids", "%d ids for %d contributors", len(l.ContributorIDs), l.Contributors)
		case len(l.ContributionDigests) != len(l.ContributorIDs):
			return nil, field("contribution_sha256", "%d digests for %d contributors", len(l.ContributionDigests), len(l.ContributorIDs))
		case len(l.Active) == 0:
			return nil, field("active", "empty")
		}
		for i, p := range l.Active {
			if p < 1 || p > maxSharePoint || (i > 0 && p <= l.Active[i-1]) {
				return nil, field("active", "point %d is out of [1, %d] or not increasing", p, maxSharePoint)
			}
		}
		seen := make(map[string]bool, len(l.ContributorIDs))
		for i, id := range l.ContributorIDs {
			if pki.ValidName(id) != nil || seen[id] {
				return nil, field("contributor_ids", "%q is not a client id, or is listed twice", clipString(id))
			}
			seen[id] = true
			if !isHexDigest(l.ContributionDigests[i]) {
				return nil, field("contribution_sha256", "entry %d is not a hex SHA-256", i)
			}
		}
		out = append(out, ShareRecord{Member: l.Member, Run: l.Run, Round: l.Round, Purpose: purpose, Contributors: l.Contributors, Digest: l.Digest,
			Active: l.Active, ContributorIDs: l.ContributorIDs, ContributionDigests: l.ContributionDigests})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: %s, line %d: longer than %d bytes", ErrShareLog, name, line+1, maxShareLineBytes)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrShareLog, name, err)
	}
	return out, nil
}

// ReadShareLogFile reads the share log at path (see ReadShareLog).
func ReadShareLogFile(path string) ([]ShareRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("share log: %w", err)
	}
	defer f.Close()
	return ReadShareLog(f, path)
}

// isHexDigest reports a lower-case hex SHA-256.
func isHexDigest(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32 && hex.EncodeToString(b) == s
}

// clipString shortens a hostile string before an error echoes it.
func clipString(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ShareLog returns the member's share log, or nil before its first share. Like the key files,
// a log others can read is refused: it names who contributed to what.
func (d StateDir) ShareLog() ([]ShareRecord, error) {
	path := filepath.Join(string(d), ShareLogFile)
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("share log %s has mode %v: it must be readable by its owner only (chmod 600)", path, info.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("share log: %w", err)
	}
	defer f.Close()
	// A crash in the middle of an append leaves a last line without its newline: the share
	// it records was never given (the record is written first), so it is left out.
	size, err := completeLines(f, info.Size())
	if err != nil {
		return nil, fmt.Errorf("share log %s: %w", path, err)
	}
	return ReadShareLog(io.NewSectionReader(f, 0, size), path)
}

// completeLines is the length of the first size bytes of r up to and including its last
// newline (0 when there is none).
func completeLines(r io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := r.ReadAt(b, start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// AppendShare appends r to the member's share log and syncs it (a MemberConfig.LogShare
// function): the record is on disk before the share leaves the member.
func (d StateDir) AppendShare(r ShareRecord) error {
	line, err := MarshalShareRecord(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(string(d), ShareLogFile)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("share log: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("share log %s: %w", path, err)
	}
	return nil
}
