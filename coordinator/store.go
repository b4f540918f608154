package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
)

// The coordinator keeps its durable state in a store.Store (store/bolt, store/postgres,
// store/mem), which keeps records, not the coordinator's types: Records encodes runs, versions
// and audit entries into the records a store keeps, and decodes what it reads back.

// ErrCorrupt: a stored record does not match its checksum, does not decode, or is not where it
// belongs (store.ErrCorrupt); the error is a *store.CorruptError naming it.
var ErrCorrupt = store.ErrCorrupt

// errNoAuditLog: an audited write or read of a store that keeps no audit log.
var errNoAuditLog = errors.New("the store keeps no audit log (not a store.AuditedStore)")

// Records is the coordinator's typed view of a store: runs as RunState, versions as
// ModelVersion, audit entries as audit.Entry. A record that does not decode, or does not hold
// what its key says, is an error wrapping ErrCorrupt that names it. The audited methods need a
// store.AuditedStore, and fail otherwise.
type Records struct {
	Store store.Store
}

// SaveRun writes a run record.
func (s Records) SaveRun(ctx context.Context, r RunState) error {
	rec, err := EncodeRun(r)
	if err != nil {
		return err
	}
	return s.Store.SaveRun(ctx, rec)
}

// Run reads a run record; ErrNotFound when there is none.
func (s Records) Run(ctx context.Context, id string) (RunState, error) {
	rec, err := s.Store.Run(ctx, id)
	if err != nil {
		return RunState{}, err
	}
	return DecodeRun(rec)
}

// Runs lists every run record, oldest first.
func (s Records) Runs(ctx context.Context) ([]RunState, error) {
	recs, err := s.Store.Runs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RunState, 0, len(recs))
	for _, rec := range recs {
		r, err := DecodeRun(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Commit writes a model version and its run's record in one transaction; ErrConflict, with
// nothing written, unless v.Version is exactly one past the latest stored version and v.Round
// one past the run's stored last round (store.CheckCommit).
func (s Records) Commit(ctx context.Context, v ModelVersion, r RunState) error {
	vrec, rrec, err := encodeCommit(v, r)
	if err != nil {
		return err
	}
	return s.Store.Commit(ctx, vrec, rrec)
}

func encodeCommit(v ModelVersion, r RunState) (store.Version, store.Run, error) {
	vrec, err := EncodeVersion(v)
	if err != nil {
		return vrec, store.Run{}, err
	}
	rrec, err := EncodeRun(r)
	return vrec, rrec, err
}

// Version reads one version; ErrNotFound when there is none.
func (s Records) Version(ctx context.Context, version uint64) (ModelVersion, error) {
	rec, err := s.Store.Version(ctx, version)
	if err != nil {
		return ModelVersion{}, err
	}
	return DecodeVersion(rec)
}

// Latest reads the newest version; ErrNotFound when there is none.
func (s Records) Latest(ctx context.Context) (ModelVersion, error) {
	rec, err := s.Store.Latest(ctx)
	if err != nil {
		return ModelVersion{}, err
	}
	return DecodeVersion(rec)
}

// Versions lists every version, oldest first.
func (s Records) Versions(ctx context.Context) ([]ModelVersion, error) {
	recs, err := s.Store.Versions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ModelVersion, 0, len(recs))
	for _, rec := range recs {
		v, err := DecodeVersion(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// ContentHash returns a stored version's content hash, which approvers sign: the checksum of
// its stored bytes (store.Version.Checksum). ErrNotFound when there is no such version.
func (s Records) ContentHash(ctx context.Context, version uint64) (string, error) {
	rec, err := s.Store.Version(ctx, version)
	if err != nil {
		return "", err
	}
	return rec.Checksum(), nil
}

// Audited reports whether the store keeps the audit log itself (store.AuditedStore).
func (s Records) Audited() bool {
	_, ok := s.Store.(store.AuditedStore)
	return ok
}

func (s Records) audited() (store.AuditedStore, error) {
	as, ok := s.Store.(store.AuditedStore)
	if !ok {
		return nil, errNoAuditLog
	}
	return as, nil
}

// SaveRunAudited is SaveRun that also appends log, in one transaction.
func (s Records) SaveRunAudited(ctx context.Context, r RunState, log []audit.Entry) error {
	as, err := s.audited()
	if err != nil {
		return err
	}
	rec, err := EncodeRun(r)
	if err != nil {
		return err
	}
	es, err := encodeLog(log)
	if err != nil {
		return err
	}
	return auditError(as.SaveRunAudited(ctx, rec, es))
}

// CommitAudited is Commit that also appends log, in one transaction.
func (s Records) CommitAudited(ctx context.Context, v ModelVersion, r RunState, log []audit.Entry) error {
	as, err := s.audited()
	if err != nil {
		return err
	}
	vrec, rrec, err := encodeCommit(v, r)
	if err != nil {
		return err
	}
	es, err := encodeLog(log)
	if err != nil {
		return err
	}
	return auditError(as.CommitAudited(ctx, vrec, rrec, es))
}

// AppendAudit appends log alone: a decision records no state but itself.
func (s Records) AppendAudit(ctx context.Context, log []audit.Entry) error {
	as, err := s.audited()
	if err != nil {
		return err
	}
	es, err := encodeLog(log)
	if err != nil {
		return err
	}
	return auditError(as.AppendAudit(ctx, es))
}

// AuditLog returns every entry, oldest first, each checked against its checksum and its hash
// against its content, and the head the store records. The chain is the caller's to verify
// (audit.Verify, VerifyAudit).
func (s Records) AuditLog(ctx context.Context) ([]audit.Entry, audit.Head, error) {
	as, err := s.audited()
	if err != nil {
		return nil, audit.Head{}, err
	}
	recs, head, err := as.AuditLog(ctx)
	if err != nil {
		return nil, audit.Head(head), err
	}
	out := make([]audit.Entry, 0, len(recs))
	for _, rec := range recs {
		e, err := DecodeEntry(rec)
		if err != nil {
			return nil, audit.Head(head), err
		}
		out = append(out, e)
	}
	return out, audit.Head(head), nil
}

// encodeLog encodes entries to append, refusing one whose hash does not match its content:
// a store checks only that entries follow its head.
func encodeLog(log []audit.Entry) ([]store.Entry, error) {
	out := make([]store.Entry, 0, len(log))
	for _, e := range log {
		if e.ComputeHash() != e.Hash {
			return nil, &audit.ChainError{Seq: e.Seq, Reason: "its content does not match its hash"}
		}
		rec, err := EncodeEntry(e)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// forkError is a store's refusal of entries that do not follow its head (store.ErrFork): for
// the audit log, audit.ErrFork.
type forkError struct{ error }

func (e forkError) Is(target error) bool { return target == audit.ErrFork }
func (e forkError) Unwrap() error        { return e.error }

func auditError(err error) error {
	if errors.Is(err, store.ErrFork) {
		return forkError{err}
	}
	return err
}

// EncodeVersion returns the record a store keeps for v: its canonical bytes (JSON) and the
// fields a store indexes. Its checksum (store.Version.Checksum) is the version's content hash.
func EncodeVersion(v ModelVersion) (store.Version, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return store.Version{}, fmt.Errorf("encode version %d: %w", v.Version, err)
	}
	return store.Version{Version: v.Version, RunID: v.RunID, Round: v.Round, Created: v.Created, Body: b}, nil
}

// DecodeVersion decodes a version record a store read, whose checksum it has verified.
func DecodeVersion(rec store.Version) (ModelVersion, error) {
	var v ModelVersion
	name := store.RecordName(store.RecordVersion, store.VersionKey(rec.Version))
	if err := json.Unmarshal(rec.Body, &v); err != nil {
		return v, &store.CorruptError{Record: name, Reason: "does not decode: " + err.Error()}
	}
	if v.Version != rec.Version {
		return v, &store.CorruptError{Record: name, Reason: fmt.Sprintf("holds version %d", v.Version)}
	}
	return v, nil
}

// EncodeRun returns the record a store keeps for r: its canonical bytes (JSON) and the fields
// a store indexes.
func EncodeRun(r RunState) (store.Run, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return store.Run{}, fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	return store.Run{ID: r.ID, LastRound: r.LastRound, LatestVersion: r.LatestVersion, Body: b}, nil
}

// DecodeRun decodes a run record a store read, whose checksum it has verified.
func DecodeRun(rec store.Run) (RunState, error) {
	var r RunState
	name := store.RecordName(store.RecordRun, rec.ID)
	if err := json.Unmarshal(rec.Body, &r); err != nil {
		return r, &store.CorruptError{Record: name, Reason: "does not decode: " + err.Error()}
	}
	if r.ID != rec.ID {
		return r, &store.CorruptError{Record: name, Reason: fmt.Sprintf("holds run %q", r.ID)}
	}
	return r, nil
}

// EncodeEntry returns the record a store keeps for an audit entry: its canonical bytes (its
// log line without the newline) and the fields a store indexes.
func EncodeEntry(e audit.Entry) (store.Entry, error) {
	line, err := audit.EncodeLine(e)
	if err != nil {
		return store.Entry{}, err
	}
	return store.Entry{Seq: e.Seq, PrevHash: e.PrevHash, Hash: e.Hash, Body: line[:len(line)-1]}, nil
}

// DecodeEntry decodes an audit entry a store read, whose checksum it has verified, and checks
// its hash against its content.
func DecodeEntry(rec store.Entry) (audit.Entry, error) {
	var e audit.Entry
	name := store.RecordName(store.RecordAudit, store.EntryKey(rec.Seq))
	if err := json.Unmarshal(rec.Body, &e); err != nil {
		return e, &store.CorruptError{Record: name, Reason: "does not decode: " + err.Error()}
	}
	if e.Seq != rec.Seq {
		return e, &store.CorruptError{Record: name, Reason: fmt.Sprintf("holds entry %d", e.Seq)}
	}
	if e.ComputeHash() != e.Hash {
		return e, &store.CorruptError{Record: name, Reason: "its content does not match its hash"}
	}
	return e, nil
}
