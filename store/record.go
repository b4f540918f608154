package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Sentinels of a Store, checked with errors.Is.
var (
	// ErrNotFound: the store has no such run or version.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a commit would duplicate or skip a version, or audit entries do not follow
	// the stored head; nothing was written.
	ErrConflict = errors.New("conflict")
	// ErrFork: audit entries that do not continue the stored head (a second writer, or a
	// writer that lost track of the head). Errors wrapping it also wrap ErrConflict.
	ErrFork = errors.New("audit entries do not follow the log's head")
	// ErrCorrupt: a stored record does not match its checksum, does not decode, or is not
	// where it belongs; or the store's file is empty, truncated or not a store. The error is
	// a *CorruptError naming the record or file.
	ErrCorrupt = errors.New("store damaged")
	// ErrOldFormat: the store was written by an older fedprop, whose records carry no
	// checksums and whose audit log lived outside the store.
	ErrOldFormat = errors.New("store written by an older fedprop")
)

// CorruptError names a damaged record and says what is wrong with it.
type CorruptError struct {
	// Record is the record's name: "version 17", `run "q3"`, "audit entry 12", "audit head", or
	// the store's file.
	Record string
	// Reason says what is wrong.
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: %v: %s", e.Record, ErrCorrupt, e.Reason)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Kinds of stored record, as RecordChecksum binds them.
const (
	RecordRun     = "run"
	RecordVersion = "version"
	RecordAudit   = "audit"
	RecordHead    = "audit head"
)

// RecordName is how messages name a record: "version 17", `run "q3"`, "audit entry 12".
func RecordName(kind, key string) string {
	switch kind {
	case RecordRun:
		return fmt.Sprintf("run %q", key)
	case RecordAudit:
		return "audit entry " + key
	case RecordHead:
		return RecordHead
	}
	return kind + " " + key
}

// recordTag starts what RecordChecksum hashes, so that no other hash can be taken for a
// record's.
const recordTag = "fedprop.record/v1"

// RecordChecksum is a stored record's checksum: hex SHA-256 over recordTag, the record's kind,
// its key and its canonical bytes, each length-prefixed. Binding the kind and key means a
// record copied over another (version 3's bytes as version 4) does not verify either.
func RecordChecksum(kind, key string, body []byte) string {
	h := sha256.New()
	for _, f := range [][]byte{[]byte(recordTag), []byte(kind), []byte(key), body} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(f))))
		h.Write(f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sealPrefix starts a sealed record: the tag, a space, the checksum and a newline.
const sealPrefix = recordTag + " "

// SealRecord returns the stored form of a record for a store that keeps one value per record
// (store/bolt): a header line with its checksum, then its canonical bytes.
func SealRecord(kind, key string, body []byte) []byte {
	sum := RecordChecksum(kind, key, body)
	b := make([]byte, 0, len(sealPrefix)+len(sum)+1+len(body))
	b = append(b, sealPrefix...)
	b = append(b, sum...)
	b = append(b, '\n')
	return append(b, body...)
}

// UnsealRecord checks a sealed record against its checksum and returns its canonical bytes
// (aliasing stored) and the checksum. A record that does not match is a *CorruptError naming it.
func UnsealRecord(kind, key string, stored []byte) (body []byte, sum string, err error) {
	n := len(sealPrefix) + 64
	if len(stored) <= n || string(stored[:len(sealPrefix)]) != sealPrefix || stored[n] != '\n' {
		return nil, "", &CorruptError{Record: RecordName(kind, key), Reason: "no checksum header: not a record this fedprop wrote"}
	}
	sum, body = string(stored[len(sealPrefix):n]), stored[n+1:]
	if err := VerifyRecord(kind, key, body, sum); err != nil {
		return nil, "", err
	}
	return body, sum, nil
}

// VerifyRecord checks a record's canonical bytes against the checksum stored with them.
func VerifyRecord(kind, key string, body []byte, sum string) error {
	if got := RecordChecksum(kind, key, body); got != sum {
		return &CorruptError{Record: RecordName(kind, key),
			Reason: fmt.Sprintf("checksum mismatch: stored %.12s..., its content hashes to %.12s...: it was changed outside fedprop, or the disk damaged it", sum, got)}
	}
	return nil
}

// VersionKey is a version record's key: its number.
func VersionKey(version uint64) string { return strconv.FormatUint(version, 10) }

// EntryKey is an audit entry's key: its sequence number.
func EntryKey(seq uint64) string { return strconv.FormatUint(seq, 10) }

// ParseRun reads the indexed fields of a run record stored under key id, whose checksum the
// store has verified: a record that is not a JSON object, or holds another run, is a
// *CorruptError naming it. The record's Body is body, not a copy.
func ParseRun(id string, body []byte) (Run, error) {
	var h struct {
		ID            string `json:"id"`
		LastRound     int    `json:"last_round"`
		LatestVersion uint64 `json:"latest_version"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return Run{}, &CorruptError{Record: RecordName(RecordRun, id), Reason: "does not decode: " + err.Error()}
	}
	if h.ID != id {
		return Run{}, &CorruptError{Record: RecordName(RecordRun, id), Reason: fmt.Sprintf("holds run %q", h.ID)}
	}
	return Run{ID: id, LastRound: h.LastRound, LatestVersion: h.LatestVersion, Body: body}, nil
}

// ParseVersion reads the indexed fields of a version record stored under key version, as
// ParseRun does.
func ParseVersion(version uint64, body []byte) (Version, error) {
	var h struct {
		Version uint64    `json:"version"`
		RunID   string    `json:"run_id"`
		Round   int       `json:"round"`
		Created time.Time `json:"created"`
	}
	name := RecordName(RecordVersion, VersionKey(version))
	if err := json.Unmarshal(body, &h); err != nil {
		return Version{}, &CorruptError{Record: name, Reason: "does not decode: " + err.Error()}
	}
	if h.Version != version {
		return Version{}, &CorruptError{Record: name, Reason: fmt.Sprintf("holds version %d", h.Version)}
	}
	return Version{Version: version, RunID: h.RunID, Round: h.Round, Created: h.Created, Body: body}, nil
}

// ParseEntry reads the indexed fields of an audit entry stored under key seq, as ParseRun
// does.
func ParseEntry(seq uint64, body []byte) (Entry, error) {
	var h struct {
		Seq      uint64 `json:"seq"`
		PrevHash string `json:"prev_hash"`
		Hash     string `json:"hash"`
	}
	name := RecordName(RecordAudit, EntryKey(seq))
	if err := json.Unmarshal(body, &h); err != nil {
		return Entry{}, &CorruptError{Record: name, Reason: "does not decode: " + err.Error()}
	}
	if h.Seq != seq {
		return Entry{}, &CorruptError{Record: name, Reason: fmt.Sprintf("holds entry %d", h.Seq)}
	}
	return Entry{Seq: seq, PrevHash: h.PrevHash, Hash: h.Hash, Body: body}, nil
}
