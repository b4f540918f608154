// Package bolt is the coordinator's embedded store on go.etcd.io/bbolt: one file, no server to
// install. It is a coordinator.AuditedStore: runs, versions and the audit log live in the one
// file, a commit writes the version, its run's record and its audit entries in one transaction,
// and the log's head is kept in the file with them.
//
// Every record is kept sealed (coordinator.SealRecord): its canonical bytes behind a header with
// their SHA-256 checksum, bound to the record's kind and key, and every read verifies it, so a
// changed byte is an error wrapping coordinator.ErrCorrupt that names the record, never a
// silently different model.
//
// The head is also written to a small file beside the store (FILE.audit-head) after every
// transaction that moves it. bbolt would silently initialise an empty file as a new store, and
// a replaced or rolled-back file would look like a healthy shorter one; the head file is how
// Open tells: it refuses a missing, empty, unrecognised, truncated or older store file next to
// a head it does not reach.
package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/fedprop/fedprop/audit"
	"github.com/fedprop/fedprop/coordinator"
)

// Format is the store format this package writes, recorded in the file.
const Format = "fedprop.store/v2"

// HeadFileSuffix names the file beside a store that records its audit head: FILE.audit-head.
const HeadFileSuffix = ".audit-head"

var (
	bucketMeta     = []byte("meta")
	bucketRuns     = []byte("runs")
	bucketRunOrder = []byte("run_order")
	bucketVersions = []byte("versions")
	bucketAudit    = []byte("audit")

	keyFormat = []byte("format")
	keyHead   = []byte("audit_head")

	// oldBuckets are those of the format before this one, which had no meta bucket.
	oldBuckets = [][]byte{bucketRuns, bucketRunOrder, bucketVersions}
)

// Store is a coordinator.AuditedStore in one bbolt file.
type Store struct {
	db       *bolt.DB
	path     string
	readOnly bool
	// headProblem is, in a store opened read-only, how the store and the head file beside it
	// disagree; AuditLog and Check report it. Open refuses such a store.
	headProblem error
}

// Open opens (creating if needed) the store at path for the coordinator. It waits up to a few
// seconds for another process's lock on the file, then fails with an error that says so. It
// refuses, with an error wrapping coordinator.ErrCorrupt that says what to do, a store file
// that is empty, unrecognised or truncated, and a missing or different store file next to a
// head file it does not reach; and a store of an older fedprop with coordinator.ErrOldFormat.
func Open(path string) (*Store, error) { return open(path, false) }

// OpenReadOnly opens an existing store for reading (`fedprop store check`, `backup`, `audit
// verify`), next to a coordinator that is not running: bbolt lets one process hold the file.
// A store that disagrees with its head file opens, and AuditLog and Check report it.
func OpenReadOnly(path string) (*Store, error) { return open(path, true) }

func open(path string, readOnly bool) (*Store, error) {
	headPath := path + HeadFileSuffix
	recorded, hasHead, err := readHeadFile(headPath)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	restore := fmt.Sprintf("restore it from a backup (fedprop store restore --from BACKUP --store %s)", path)
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && hasHead && recorded.Seq > 0:
		return nil, &coordinator.CorruptError{Record: path, Reason: fmt.Sprintf(
			"the store file does not exist, but %s records its audit log up to entry %d: the store was deleted or moved; %s, or remove %s to start a new store deliberately",
			headPath, recorded.Seq, restore, headPath)}
	case errors.Is(err, fs.ErrNotExist) && readOnly:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	case !info.Mode().IsRegular():
		return nil, &coordinator.CorruptError{Record: path, Reason: "not a regular file"}
	case info.Size() == 0:
		hint := "it is not a fedprop store: remove it to create a new store"
		if hasHead && recorded.Seq > 0 {
			hint = fmt.Sprintf("%s records its audit log up to entry %d, so a store was here: %s", headPath, recorded.Seq, restore)
		}
		return nil, &coordinator.CorruptError{Record: path, Reason: "the store file is empty (0 bytes), and fedprop does not start a new store over it: " + hint}
	default:
		if err := checkFileSize(path, info.Size()); err != nil {
			return nil, &coordinator.CorruptError{Record: path, Reason: err.Error() + ": " + restore}
		}
	}
	db, err := openBolt(path, readOnly)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path, readOnly: readOnly}
	if err := s.start(headPath, recorded, hasHead, restore); err != nil {
		_ = db.Close() // the error that failed the open is the one to report
		return nil, err
	}
	return s, nil
}

// openBolt opens the bbolt file. bbolt panics on some damaged files rather than failing; the
// panic becomes a *coordinator.CorruptError naming the file.
func openBolt(path string, readOnly bool) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, &coordinator.CorruptError{Record: path, Reason: fmt.Sprintf("not a readable bbolt file: %v", r)}
		}
	}()
	timeout := 5 * time.Second
	if readOnly {
		timeout = time.Second
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open store %s: another process holds it (a running coordinator? the embedded store admits one process at a time): %w", path, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, &coordinator.CorruptError{Record: path, Reason: fmt.Sprintf("not a fedprop store (unrecognised file: %v)", err)}
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// start checks the format and the head file, and creates the buckets of a new store.
func (s *Store) start(headPath string, recorded audit.Head, hasHead bool, restore string) error {
	var (
		format string
		old    bool
		stored = audit.Head{Hash: audit.Genesis}
	)
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			for _, b := range oldBuckets {
				old = old || tx.Bucket(b) != nil
			}
			return nil
		}
		format = string(meta.Get(keyFormat))
		var err error
		stored, err = getHead(tx)
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("open store %s: %w", s.path, err)
	case old:
		return fmt.Errorf("open store %s: %w: its records carry no checksums and its audit log was the separate file %s.audit.jsonl; this fedprop cannot use it: keep the older fedprop for it, or start a new store",
			s.path, coordinator.ErrOldFormat, s.path)
	case format != "" && format != Format:
		return fmt.Errorf("open store %s: its format is %q, this fedprop reads %q: written by a newer fedprop?", s.path, format, Format)
	}
	if hasHead {
		if problem := s.compareHead(headPath, stored, recorded, restore); problem != nil {
			if !s.readOnly {
				return problem
			}
			s.headProblem = problem
		}
	}
	if s.readOnly {
		if format == "" {
			return fmt.Errorf("open store %s: %w: not initialised", s.path, fs.ErrNotExist)
		}
		return nil
	}
	if format == "" {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketMeta, bucketRuns, bucketRunOrder, bucketVersions, bucketAudit} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bucketMeta).Put(keyFormat, []byte(Format)); err != nil {
				return err
			}
			return putHead(tx, stored)
		})
		if err != nil {
			return fmt.Errorf("open store %s: %w", s.path, err)
		}
	}
	if stored != recorded && (hasHead || stored.Seq > 0) {
		// The head file lags after a crash between a commit and its update, or is missing.
		return s.writeHeadFile(stored)
	}
	return nil
}

// compareHead says how the store's head and the head file disagree, or nil: the store must
// reach the recorded head, through the very entry recorded.
func (s *Store) compareHead(headPath string, stored, recorded audit.Head, restore string) error {
	if stored.Seq < recorded.Seq {
		return &coordinator.CorruptError{Record: s.path, Reason: fmt.Sprintf(
			"the store's audit log ends at entry %d, but %s records entry %d: the store file was replaced by an older or another store, or rolled back; %s",
			stored.Seq, headPath, recorded.Seq, restore)}
	}
	if recorded.Seq == 0 {
		return nil
	}
	var hash string
	err := s.view(func(tx *bolt.Tx) error {
		e, err := getEntry(tx, recorded.Seq)
		hash = e.Hash
		return err
	})
	if err != nil {
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	if hash != recorded.Hash {
		return &coordinator.CorruptError{Record: s.path, Reason: fmt.Sprintf(
			"its audit entry %d is %.12s..., but %s records %.12s...: the store file was replaced by another store; %s",
			recorded.Seq, hash, headPath, recorded.Hash, restore)}
	}
	return nil
}

// maxHeadFileBytes bounds the head file: one head, a few dozen bytes.
const maxHeadFileBytes = 256

func readHeadFile(path string) (audit.Head, bool, error) {
	f, err := os.Open(path) // #nosec G304 -- beside the store the operator names
	if errors.Is(err, fs.ErrNotExist) {
		return audit.Head{}, false, nil
	}
	if err != nil {
		return audit.Head{}, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHeadFileBytes+1))
	if err != nil {
		return audit.Head{}, false, err
	}
	h, err := audit.ParseHead(strings.TrimSuffix(string(b), "\n"))
	if err != nil || len(b) > maxHeadFileBytes {
		return audit.Head{}, false, &coordinator.CorruptError{Record: path, Reason: "not an audit head file (one line, SEQ:HASH)"}
	}
	return h, true, nil
}

// writeHeadFile replaces the head file atomically: a new file, synced, renamed over the old.
func (s *Store) writeHeadFile(h audit.Head) error {
	path := s.path + HeadFileSuffix
	if err := writeFileAtomic(path, []byte(h.String()+"\n")); err != nil {
		return fmt.Errorf("store %s: record the audit head beside it: %w", s.path, err)
	}
	return nil
}

// writeFileAtomic writes data to path through a synced temporary file renamed over it.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) // #nosec G304 -- beside the store
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir) // #nosec G304 -- the store's directory
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// bbolt's on-disk meta page (go.etcd.io/bbolt internal/common/meta.go, format version 2): a
// 16-byte page header, then magic, version, page size, flags (4 bytes each), the root bucket
// (16), the freelist page (8), the high-water page id (8), the transaction id (8) and an FNV-64a
// checksum of everything before it, in the machine's byte order.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16
	boltMetaSumFrom = 56
)

// checkFileSize refuses a bbolt file shorter than its own header says: one cut off, whose
// missing pages bbolt would read as garbage (or panic on) long after it opened. Headers that do
// not validate are left to bbolt, which names them.
func checkFileSize(path string, size int64) error {
	f, err := os.Open(path) // #nosec G304 -- the operator's store
	if err != nil {
		return err
	}
	defer f.Close()
	m0, ok0 := readMeta(f, 0)
	off := int64(os.Getpagesize()) // where bbolt puts meta 1 when meta 0 does not tell
	if ok0 {
		off = int64(m0.pageSize)
	}
	m1, ok1 := readMeta(f, off)
	m := m0
	switch {
	case !ok0 && !ok1:
		return nil
	case !ok0 || (ok1 && m1.txid > m0.txid):
		m = m1
	}
	if want := int64(m.pgid) * int64(m.pageSize); size < want {
		return fmt.Errorf("the store file is truncated: %d bytes, but its header says %d (%d pages of %d bytes)", size, want, m.pgid, m.pageSize)
	}
	return nil
}

type boltMeta struct {
	pageSize   uint32
	pgid, txid uint64
}

// readMeta reads and validates the meta page at off.
func readMeta(f *os.File, off int64) (boltMeta, bool) {
	buf := make([]byte, boltPageHeader+boltMetaSumFrom+8)
	if _, err := f.ReadAt(buf, off); err != nil {
		return boltMeta{}, false
	}
	m := buf[boltPageHeader:]
	ne := binary.NativeEndian
	h := fnv.New64a()
	_, _ = h.Write(m[:boltMetaSumFrom]) // a hash.Hash never fails to write
	if ne.Uint32(m[0:]) != boltMagic || ne.Uint32(m[4:]) != boltVersion || ne.Uint64(m[boltMetaSumFrom:]) != h.Sum64() {
		return boltMeta{}, false
	}
	meta := boltMeta{pageSize: ne.Uint32(m[8:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}
	return meta, meta.pageSize > 0
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Close implements coordinator.Store.
func (s *Store) Close() error { return s.db.Close() }

// view runs a read transaction; a panic of bbolt on a damaged page becomes a
// *coordinator.CorruptError naming the file.
func (s *Store) view(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &coordinator.CorruptError{Record: s.path, Reason: fmt.Sprintf("a bbolt page is damaged: %v", r)}
		}
	}()
	return s.db.View(fn)
}

// update runs a write transaction; when fn moves the audit head, the head file follows once
// the transaction has committed.
func (s *Store) update(fn func(tx *bolt.Tx) (*audit.Head, error)) error {
	var head *audit.Head
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		head, err = fn(tx)
		return err
	})
	if err != nil {
		return err
	}
	if head != nil {
		return s.writeHeadFile(*head)
	}
	return nil
}

func seqKey(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

func putRun(tx *bolt.Tx, r coordinator.RunState) error {
	body, _, err := coordinator.EncodeRun(r)
	if err != nil {
		return err
	}
	runs := tx.Bucket(bucketRuns)
	if runs.Get([]byte(r.ID)) == nil {
		order := tx.Bucket(bucketRunOrder)
		seq, err := order.NextSequence()
		if err != nil {
			return err
		}
		if err := order.Put(seqKey(seq), []byte(r.ID)); err != nil {
			return err
		}
	}
	return runs.Put([]byte(r.ID), coordinator.SealRecord(coordinator.RecordRun, r.ID, body))
}

func getRun(tx *bolt.Tx, id string) (coordinator.RunState, error) {
	b := tx.Bucket(bucketRuns).Get([]byte(id))
	if b == nil {
		return coordinator.RunState{}, fmt.Errorf("run %q: %w", id, coordinator.ErrNotFound)
	}
	body, _, err := coordinator.UnsealRecord(coordinator.RecordRun, id, b)
	if err != nil {
		return coordinator.RunState{}, err
	}
	return coordinator.DecodeRun(id, body)
}

func getVersion(tx *bolt.Tx, version uint64) (coordinator.ModelVersion, string, error) {
	b := tx.Bucket(bucketVersions).Get(seqKey(version))
	if b == nil {
		return coordinator.ModelVersion{}, "", fmt.Errorf("version %d: %w", version, coordinator.ErrNotFound)
	}
	return decodeVersion(version, b)
}

func decodeVersion(version uint64, b []byte) (coordinator.ModelVersion, string, error) {
	body, sum, err := coordinator.UnsealRecord(coordinator.RecordVersion, coordinator.VersionKey(version), b)
	if err != nil {
		return coordinator.ModelVersion{}, "", err
	}
	v, err := coordinator.DecodeVersion(version, body)
	return v, sum, err
}

func getEntry(tx *bolt.Tx, seq uint64) (audit.Entry, error) {
	b := tx.Bucket(bucketAudit).Get(seqKey(seq))
	if b == nil {
		return audit.Entry{}, &coordinator.CorruptError{Record: coordinator.RecordName(coordinator.RecordAudit, coordinator.EntryKey(seq)), Reason: "missing"}
	}
	return decodeEntry(seq, b)
}

func decodeEntry(seq uint64, b []byte) (audit.Entry, error) {
	body, _, err := coordinator.UnsealRecord(coordinator.RecordAudit, coordinator.EntryKey(seq), b)
	if err != nil {
		return audit.Entry{}, err
	}
	return coordinator.DecodeEntry(seq, body)
}

func getHead(tx *bolt.Tx) (audit.Head, error) {
	b := tx.Bucket(bucketMeta).Get(keyHead)
	if b == nil {
		return audit.Head{}, &coordinator.CorruptError{Record: coordinator.RecordHead, Reason: "missing"}
	}
	body, _, err := coordinator.UnsealRecord(coordinator.RecordHead, "", b)
	if err != nil {
		return audit.Head{}, err
	}
	h, err := audit.ParseHead(string(body))
	if err != nil {
		return audit.Head{}, &coordinator.CorruptError{Record: coordinator.RecordHead, Reason: err.Error()}
	}
	return h, nil
}

func putHead(tx *bolt.Tx, h audit.Head) error {
	return tx.Bucket(bucketMeta).Put(keyHead, coordinator.SealRecord(coordinator.RecordHead, "", []byte(h.String())))
}

// appendAudit writes entries after the stored head, and the new head, inside tx.
func appendAudit(tx *bolt.Tx, entries []audit.Entry) (*audit.Head, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	head, err := getHead(tx)
	if err != nil {
		return nil, err
	}
	if err := audit.Follows(head, entries); err != nil {
		return nil, fmt.Errorf("append audit entry %d: %w: %w", entries[0].Seq, coordinator.ErrConflict, err)
	}
	b := tx.Bucket(bucketAudit)
	for _, e := range entries {
		body, _, err := coordinator.EncodeEntry(e)
		if err != nil {
			return nil, err
		}
		if err := b.Put(seqKey(e.Seq), coordinator.SealRecord(coordinator.RecordAudit, coordinator.EntryKey(e.Seq), body)); err != nil {
			return nil, err
		}
	}
	h := audit.HeadOf(entries)
	return &h, putHead(tx, h)
}

// SaveRun implements coordinator.Store.
func (s *Store) SaveRun(ctx context.Context, r coordinator.RunState) error {
	return s.SaveRunAudited(ctx, r, nil)
}

// SaveRunAudited implements coordinator.AuditedStore.
func (s *Store) SaveRunAudited(_ context.Context, r coordinator.RunState, log []audit.Entry) error {
	return s.update(func(tx *bolt.Tx) (*audit.Head, error) {
		if err := putRun(tx, r); err != nil {
			return nil, err
		}
		return appendAudit(tx, log)
	})
}

// AppendAudit implements coordinator.AuditedStore.
func (s *Store) AppendAudit(_ context.Context, log []audit.Entry) error {
	return s.update(func(tx *bolt.Tx) (*audit.Head, error) { return appendAudit(tx, log) })
}

// Run implements coordinator.Store.
func (s *Store) Run(_ context.Context, id string) (r coordinator.RunState, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		r, err = getRun(tx, id)
		return err
	})
	return r, err
}

// Runs implements coordinator.Store.
func (s *Store) Runs(context.Context) ([]coordinator.RunState, error) {
	var out []coordinator.RunState
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRunOrder).ForEach(func(_, id []byte) error {
			r, err := getRun(tx, string(id))
			if errors.Is(err, coordinator.ErrNotFound) {
				return &coordinator.CorruptError{Record: coordinator.RecordName(coordinator.RecordRun, string(id)), Reason: "listed in the run order, but not stored"}
			}
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Commit implements coordinator.Store.
func (s *Store) Commit(ctx context.Context, v coordinator.ModelVersion, r coordinator.RunState) error {
	return s.CommitAudited(ctx, v, r, nil)
}

// CommitAudited implements coordinator.AuditedStore.
func (s *Store) CommitAudited(_ context.Context, v coordinator.ModelVersion, r coordinator.RunState, log []audit.Entry) error {
	body, _, err := coordinator.EncodeVersion(v)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) (*audit.Head, error) {
		var latest uint64
		if k, _ := tx.Bucket(bucketVersions).Cursor().Last(); k != nil {
			latest = binary.BigEndian.Uint64(k)
		}
		lastRound := 0
		if stored, err := getRun(tx, r.ID); err == nil {
			lastRound = stored.LastRound
		} else if !errors.Is(err, coordinator.ErrNotFound) {
			return nil, err
		}
		if err := coordinator.CheckCommit(latest, lastRound, v, r); err != nil {
			return nil, err
		}
		sealed := coordinator.SealRecord(coordinator.RecordVersion, coordinator.VersionKey(v.Version), body)
		if err := tx.Bucket(bucketVersions).Put(seqKey(v.Version), sealed); err != nil {
			return nil, err
		}
		if err := putRun(tx, r); err != nil {
			return nil, err
		}
		return appendAudit(tx, log)
	})
}

// Version implements coordinator.Store.
func (s *Store) Version(_ context.Context, version uint64) (v coordinator.ModelVersion, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v, _, err = getVersion(tx, version)
		return err
	})
	return v, err
}

// ContentHash implements coordinator.AuditedStore.
func (s *Store) ContentHash(_ context.Context, version uint64) (sum string, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		_, sum, err = getVersion(tx, version)
		return err
	})
	return sum, err
}

// Latest implements coordinator.Store.
func (s *Store) Latest(context.Context) (v coordinator.ModelVersion, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		k, b := tx.Bucket(bucketVersions).Cursor().Last()
		if k == nil {
			return fmt.Errorf("latest version: %w", coordinator.ErrNotFound)
		}
		n, err := versionOfKey(k)
		if err != nil {
			return err
		}
		v, _, err = decodeVersion(n, b)
		return err
	})
	return v, err
}

func versionOfKey(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, &coordinator.CorruptError{Record: fmt.Sprintf("version key %x", k), Reason: "not an 8-byte version number"}
	}
	return binary.BigEndian.Uint64(k), nil
}

// Versions implements coordinator.Store.
func (s *Store) Versions(context.Context) ([]coordinator.ModelVersion, error) {
	var out []coordinator.ModelVersion
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVersions).ForEach(func(k, b []byte) error {
			n, err := versionOfKey(k)
			if err != nil {
				return err
			}
			v, _, err := decodeVersion(n, b)
			if err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

// AuditLog implements coordinator.AuditedStore.
func (s *Store) AuditLog(context.Context) ([]audit.Entry, audit.Head, error) {
	var (
		out  []audit.Entry
		head audit.Head
	)
	if s.headProblem != nil {
		return nil, head, s.headProblem
	}
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		if head, err = getHead(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketAudit).ForEach(func(k, b []byte) error {
			n, err := versionOfKey(k)
			if err != nil {
				return err
			}
			e, err := decodeEntry(n, b)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, head, fmt.Errorf("store %s: %w", s.path, err)
	}
	return out, head, nil
}

// Check implements coordinator.Checker: bbolt's own check of the file's pages, then every
// record against its checksum and its key, the run order against the runs, and the head file.
func (s *Store) Check(ctx context.Context) (coordinator.CheckReport, error) {
	var rep coordinator.CheckReport
	damaged := func(record string, err error) {
		rep.Damaged = append(rep.Damaged, coordinator.Damage{Record: record, Err: err})
	}
	if s.headProblem != nil {
		damaged(s.path+HeadFileSuffix, s.headProblem)
	}
	err := s.view(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			damaged(s.path, &coordinator.CorruptError{Record: s.path, Reason: "bbolt: " + err.Error()})
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if rep.Head, err = getHead(tx); err != nil {
			damaged(coordinator.RecordHead, err)
		}
		stored := map[string]bool{}
		_ = tx.Bucket(bucketRuns).ForEach(func(k, _ []byte) error {
			id := string(k)
			stored[id] = false
			if _, err := getRun(tx, id); err != nil {
				damaged(coordinator.RecordName(coordinator.RecordRun, id), err)
				return nil
			}
			rep.Runs++
			return nil
		})
		_ = tx.Bucket(bucketRunOrder).ForEach(func(_, id []byte) error {
			if _, ok := stored[string(id)]; !ok {
				damaged(coordinator.RecordName(coordinator.RecordRun, string(id)), &coordinator.CorruptError{
					Record: coordinator.RecordName(coordinator.RecordRun, string(id)), Reason: "listed in the run order, but not stored"})
			}
			stored[string(id)] = true
			return nil
		})
		for id, listed := range stored {
			if !listed {
				damaged(coordinator.RecordName(coordinator.RecordRun, id), &coordinator.CorruptError{
					Record: coordinator.RecordName(coordinator.RecordRun, id), Reason: "stored, but missing from the run order"})
			}
		}
		_ = tx.Bucket(bucketVersions).ForEach(func(k, b []byte) error {
			n, err := versionOfKey(k)
			if err == nil {
				_, _, err = decodeVersion(n, b)
			}
			if err != nil {
				damaged(recordOf(err, fmt.Sprintf("version key %x", k)), err)
				return nil
			}
			rep.Versions++
			return nil
		})
		return tx.Bucket(bucketAudit).ForEach(func(k, b []byte) error {
			n, err := versionOfKey(k)
			if err == nil {
				_, err = decodeEntry(n, b)
			}
			if err != nil {
				damaged(recordOf(err, fmt.Sprintf("audit key %x", k)), err)
				return nil
			}
			rep.Entries++
			return nil
		})
	})
	if err != nil {
		var corrupt *coordinator.CorruptError
		if !errors.As(err, &corrupt) {
			return rep, err
		}
		damaged(corrupt.Record, err)
	}
	return rep, nil
}

// recordOf is the record a read error names, or def.
func recordOf(err error, def string) string {
	var corrupt *coordinator.CorruptError
	if errors.As(err, &corrupt) {
		return corrupt.Record
	}
	return def
}

// Backup writes a consistent snapshot of the whole store to w (one read transaction: what it
// writes is the store as of one instant, whatever commits after), and returns the bytes
// written.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("back up store %s: %w", s.path, err)
	}
	return n, nil
}
