// Package store is what the coordinator's stores have in common: the interfaces they implement
// (Store, AuditedStore, Checker), the records they keep, their sentinels, and the checksums
// that bind each stored record to its kind and key.
//
// A store keeps records, not the coordinator's types. A run, a model version and an audit entry
// are each a record: its canonical bytes (Body, a JSON object the coordinator encodes and
// decodes: coordinator.Records) and the few fields a store indexes or checks, which the body
// holds too: a run's id, last round and latest version; a version's number, run, round and
// time; an entry's sequence number, previous hash and hash. So a store links only what it
// stores: this package imports only the standard library, and store/bolt adds bbolt,
// store/postgres pgx, and neither the coordinator, its model types nor the PKI behind the
// audit log's signatures.
//
// Implementations: store/bolt (embedded, the default), store/postgres (replicas) and store/mem
// (tests, simulator). Each must pass store/storetest. A store on disk or on a server keeps a
// checksum with every record (RecordChecksum) and verifies it on every read: a damaged record
// is an error wrapping ErrCorrupt that names it, never a changed value.
package store

import (
	"context"
	"strings"
	"time"
)

// Store keeps the coordinator's durable state: run records and committed model versions.
type Store interface {
	// SaveRun writes a run record.
	SaveRun(ctx context.Context, r Run) error
	// Run reads a run record; ErrNotFound when there is none.
	Run(ctx context.Context, id string) (Run, error)
	// Runs lists every run record, oldest first.
	Runs(ctx context.Context) ([]Run, error)
	// Commit writes a model version and its run's record in one transaction. It fails with
	// ErrConflict, writing nothing, unless CheckCommit passes on what the store holds: no
	// version is ever lost, skipped or committed twice.
	Commit(ctx context.Context, v Version, r Run) error
	// Version reads one version; ErrNotFound when there is none.
	Version(ctx context.Context, version uint64) (Version, error)
	// Latest reads the newest version; ErrNotFound when there is none.
	Latest(ctx context.Context) (Version, error)
	// Versions lists every version, oldest first.
	Versions(ctx context.Context) ([]Version, error)
	Close() error
}

// AuditedStore is a Store that keeps the audit log itself: each entry is written in the same
// transaction as the state it records (a run's start with the run's first record, a commit
// with its version), together with the log's head, so that neither can be lost, reordered or
// recorded without the other. store/bolt and store/postgres are AuditedStores; with a Store that
// is not (store/mem), the coordinator writes the log elsewhere after the state.
//
// Every append checks, inside its transaction, that the entries follow the stored head
// (Follows), and fails with an error wrapping ErrConflict and ErrFork, writing nothing,
// otherwise. Whether each entry's hash matches its content is the writer's to check (the
// store does not decode entries beyond their sequence number and hashes).
type AuditedStore interface {
	Store
	// SaveRunAudited is SaveRun that also appends log.
	SaveRunAudited(ctx context.Context, r Run, log []Entry) error
	// CommitAudited is Commit that also appends log.
	CommitAudited(ctx context.Context, v Version, r Run, log []Entry) error
	// AppendAudit appends log alone: a decision records no state but itself.
	AppendAudit(ctx context.Context, log []Entry) error
	// AuditLog returns every entry, oldest first, and the head the store records. Each entry
	// is checked against its checksum; the chain is the caller's to verify.
	AuditLog(ctx context.Context) ([]Entry, Head, error)
}

// Run is a run record as a store keeps it.
type Run struct {
	// ID is the run's id, its key.
	ID string
	// LastRound and LatestVersion are the run's last committed round and version, which
	// Commit checks the next commit against.
	LastRound     int
	LatestVersion uint64
	// Body is the record's canonical bytes: a JSON object whose "id", "last_round" and
	// "latest_version" are the fields above (ParseRun).
	Body []byte
}

// Version is a model version record as a store keeps it.
type Version struct {
	// Version is its number, its key: 1, 2, 3, ... across runs.
	Version uint64
	// RunID and Round are the run and round that committed it.
	RunID string
	Round int
	// Created is when it was committed.
	Created time.Time
	// Body is the record's canonical bytes: a JSON object whose "version", "run_id", "round"
	// and "created" are the fields above (ParseVersion).
	Body []byte
}

// Checksum is the version's checksum (RecordChecksum): its content hash, which approvers sign.
func (v Version) Checksum() string {
	return RecordChecksum(RecordVersion, VersionKey(v.Version), v.Body)
}

// Checksum is the run record's checksum (RecordChecksum).
func (r Run) Checksum() string { return RecordChecksum(RecordRun, r.ID, r.Body) }

// Entry is an audit log entry as a store keeps it.
type Entry struct {
	// Seq is its sequence number, its key: 1, 2, 3, ...
	Seq uint64
	// PrevHash is the previous entry's Hash (Genesis for the first); Hash is the entry's own.
	PrevHash, Hash string
	// Body is the entry's canonical bytes: its line in an audit export without the newline, a
	// JSON object whose "seq", "prev_hash" and "hash" are the fields above (ParseEntry).
	Body []byte
}

// Checksum is the entry's checksum (RecordChecksum).
func (e Entry) Checksum() string { return RecordChecksum(RecordAudit, EntryKey(e.Seq), e.Body) }

// Checker is a store that can check every record it holds (`fedprop store check`): each
// checksum and key, and what its backend can check of its own structure. Unlike a read,
// which stops at the first damaged record, Check names them all.
type Checker interface {
	Check(ctx context.Context) (CheckReport, error)
}

// CheckReport is what Check found.
type CheckReport struct {
	// Runs, Versions and Entries count the records read intact.
	Runs, Versions, Entries int
	// Head is the audit head the store records.
	Head Head
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
