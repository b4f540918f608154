package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fedprop/fedprop/audit"
)

// Store keeps the coordinator's durable state: run records and committed model versions.
// Implementations: store/bolt (embedded, the default), store/postgres (replicas) and store/mem
// (tests, simulator). Each must pass store/storetest. A store on disk or on a server keeps a
// checksum with every record (RecordChecksum) and verifies it on every read: a damaged record
// is an error wrapping ErrCorrupt that names it, never a changed value.
type Store interface {
	// SaveRun writes a run record.
	SaveRun(ctx context.Context, r RunState) error
	// Run reads a run record; ErrNotFound when there is none.
	Run(ctx context.Context, id string) (RunState, error)
	// Runs lists every run record, oldest first.
	Runs(ctx context.Context) ([]RunState, error)
	// Commit writes a model version and its run's record in one transaction. It fails with
	// ErrConflict, writing nothing, unless v.Version is exactly one past the latest stored
	// version and v.Round one past the run's stored last round: no version is ever lost,
	// skipped or committed twice.
	Commit(ctx context.Context, v ModelVersion, r RunState) error
	// Version reads one version; ErrNotFound when there is none.
	Version(ctx context.Context, version uint64) (ModelVersion, error)
	// Latest reads the newest version; ErrNotFound when there is none.
	Latest(ctx context.Context) (ModelVersion, error)
	// Versions lists every version, oldest first.
	Versions(ctx context.Context) ([]ModelVersion, error)
	Close() error
}

// CheckCommit is the rule every Store applies inside its commit transaction: the version must
// follow the latest stored one and the round must follow the run's last stored round.
func CheckCommit(latestVersion uint64, lastRound int, v ModelVersion, r RunState) error {
	if v.Version != latestVersion+1 {
		return fmt.Errorf("commit version %d: the latest stored version is %d: %w", v.Version, latestVersion, ErrConflict)
	}
	if v.Round != lastRound+1 {
		return fmt.Errorf("commit version %d of run %s: round %d does not follow stored round %d: %w", v.Version, r.ID, v.Round, lastRound, ErrConflict)
	}
	if v.RunID != r.ID || r.LastRound != v.Round || r.LatestVersion != v.Version {
		return fmt.Errorf("commit version %d: run record (run %s, round %d, version %d) does not match it: %w",
			v.Version, r.ID, r.LastRound, r.LatestVersion, ErrConflict)
	}
	return nil
}

// AuditedStore is a Store that keeps the audit log itself: each entry is written in the same
// transaction as the state it records (a run's start with the run's first record, a commit
// with its version), together with the log's head, so that neither can be lost, reordered or
// recorded without the other. store/bolt and store/postgres are AuditedStores; with a Store that
// is not (store/mem), the coordinator writes the log to ServerConfig.Audit after the state.
//
// Every append checks, inside its transaction, that the entries follow the stored head
// (audit.Follows), and fails with an error wrapping ErrConflict, writing nothing, otherwise.
type AuditedStore interface {
	Store
	// SaveRunAudited is SaveRun that also appends log.
	SaveRunAudited(ctx context.Context, r RunState, log []audit.Entry) error
	// CommitAudited is Commit that also appends log.
	CommitAudited(ctx context.Context, v ModelVersion, r RunState, log []audit.Entry) error
	// AppendAudit appends log alone: a decision records no state but itself.
	AppendAudit(ctx context.Context, log []audit.Entry) error
	// AuditLog returns every entry, oldest first, and the head the store records. Each entry
	// is checked against its checksum; the chain is the caller's to verify (VerifyAudit).
	AuditLog(ctx context.Context) ([]audit.Entry, audit.Head, error)
	// ContentHash returns a stored version's content hash: the checksum of its stored record
	// (RecordChecksum), which approvers sign. ErrNotFound when there is no such version.
	ContentHash(ctx context.Context, version uint64) (string, error)
}

// Checker is a store that can check every record it holds (`fedprop store check`): each
// checksum and encoding, and what its backend can check of its own structure. Unlike a read,
// which stops at the first damaged record, Check names them all.
type Checker interface {
	Check(ctx context.Context) (CheckReport, error)
}

// CheckReport is what Check found.
type CheckReport struct {
	// Runs, Versions and Entries count the records read intact.
	Runs, Versions, Entries int
	// Head is the audit head the store records.
	Head audit.Head
	// Damaged lists every damaged record, each named.
	Damaged []Damage
}

// Damage is one damaged record or structure.
type Damage struct {
	// Record names it as messages do: "version 17", `run "q3"`, "audit entry 12", a file.
	Record string
	Err    error
}

func (d Damage) String() string {
	if msg := d.Err.Error(); strings.HasPrefix(msg, d.Record) {
		return msg
	}
	return d.Record + ": " + d.Err.Error()
}

// More sentinels of the Store, checked with errors.Is.
var (
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

// EncodeVersion returns the canonical bytes a store keeps for v, and their checksum: the
// version's content hash.
func EncodeVersion(v ModelVersion) ([]byte, string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, "", fmt.Errorf("encode version %d: %w", v.Version, err)
	}
	return b, RecordChecksum(RecordVersion, VersionKey(v.Version), b), nil
}

// DecodeVersion decodes a version record read under key version, whose checksum the store
// has verified.
func DecodeVersion(version uint64, body []byte) (ModelVersion, error) {
	var v ModelVersion
	if err := json.Unmarshal(body, &v); err != nil {
		return v, &CorruptError{Record: RecordName(RecordVersion, VersionKey(version)), Reason: "does not decode: " + err.Error()}
	}
	if v.Version != version {
		return v, &CorruptError{Record: RecordName(RecordVersion, VersionKey(version)), Reason: fmt.Sprintf("holds version %d", v.Version)}
	}
	return v, nil
}

// EncodeRun returns the canonical bytes a store keeps for r, and their checksum.
func EncodeRun(r RunState) ([]byte, string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, "", fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	return b, RecordChecksum(RecordRun, r.ID, b), nil
}

// DecodeRun decodes a run record read under key id, whose checksum the store has verified.
func DecodeRun(id string, body []byte) (RunState, error) {
	var r RunState
	if err := json.Unmarshal(body, &r); err != nil {
		return r, &CorruptError{Record: RecordName(RecordRun, id), Reason: "does not decode: " + err.Error()}
	}
	if r.ID != id {
		return r, &CorruptError{Record: RecordName(RecordRun, id), Reason: fmt.Sprintf("holds run %q", r.ID)}
	}
	return r, nil
}

// EncodeEntry returns the canonical bytes a store keeps for an audit entry (its log line
// without the newline), and their checksum.
func EncodeEntry(e audit.Entry) ([]byte, string, error) {
	line, err := audit.EncodeLine(e)
	if err != nil {
		return nil, "", err
	}
	b := line[:len(line)-1]
	return b, RecordChecksum(RecordAudit, EntryKey(e.Seq), b), nil
}

// DecodeEntry decodes an audit entry read under key seq, whose checksum the store has
// verified, and checks its hash against its content.
func DecodeEntry(seq uint64, body []byte) (audit.Entry, error) {
	var e audit.Entry
	name := RecordName(RecordAudit, EntryKey(seq))
	if err := json.Unmarshal(body, &e); err != nil {
		return e, &CorruptError{Record: name, Reason: "does not decode: " + err.Error()}
	}
	if e.Seq != seq {
		return e, &CorruptError{Record: name, Reason: fmt.Sprintf("holds entry %d", e.Seq)}
	}
	if e.ComputeHash() != e.Hash {
		return e, &CorruptError{Record: name, Reason: "its content does not match its hash"}
	}
	return e, nil
}
