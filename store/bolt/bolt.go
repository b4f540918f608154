// Package bolt is the coordinator's embedded store on go.etcd.io/bbolt: one file, no server to
// install. It is a store.AuditedStore: runs, versions and the audit log live in the one
// file, a commit writes the version, its run's record and its audit entries in one transaction,
// and the log's head is kept in the file with them. It keeps records as package store defines
// them (bytes, and the fields it indexes read back from them), and links only store and bbolt.
//
// Every record is kept sealed (store.SealRecord): its canonical bytes behind a header with
// their SHA-256 checksum, bound to the record's kind and key, and every read verifies it, so a
// changed byte is an error wrapping store.ErrCorrupt that names the record, never a
// silently different model.
//
// The head is also written to a small file beside the store (FILE.audit-head) after every
// transaction that moves it. bbolt would silently initialise an empty file as a new store, and
// a replaced or rolled-back file would look like a healthy shorter one; the head file is how
// Open tells: it refuses a missing, empty, unrecognised, truncated or older store file next to
// a head it does not reach.
package bolt

import (
	"bytes"
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

	"github.com/fedprop/fedprop/store"
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

// Store is a store.AuditedStore in one bbolt file.
type Store struct {
	db       *bolt.DB
	path     string
	readOnly bool
	// headProblem is, in a store opened read-only, how the store and the head file beside it
	// disagree; AuditLog and Check report it. Open refuses such a store.
	headProblem error
}

// Open opens (creating if needed) the store at path for the store. It waits up to a few
// seconds for another process's lock on the file, then fails with an error that says so. It
// refuses, with an error wrapping store.ErrCorrupt that says what to do, a store file
// that is empty, unrecognised or truncated, and a missing or different store file next to a
// head file it does not reach; and a store of an older fedprop with store.ErrOldFormat.
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
		return nil, &store.CorruptError{Record: path, Reason: fmt.Sprintf(
			"the store file does not exist, but %s records its audit log up to entry %d: the store was deleted or moved; %s, or remove %s to start a new store deliberately",
			headPath, recorded.Seq, restore, headPath)}
	case errors.Is(err, fs.ErrNotExist) && readOnly:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	case !info.Mode().IsRegular():
		return nil, &store.CorruptError{Record: path, Reason: "not a regular file"}
	case info.Size() == 0:
		hint := "it is not a fedprop store: remove it to create a new store"
		if hasHead && recorded.Seq > 0 {
			hint = fmt.Sprintf("%s records its audit log up to entry %d, so a store was here: %s", headPath, recorded.Seq, restore)
		}
		return nil, &store.CorruptError{Record: path, Reason: "the store file is empty (0 bytes), and fedprop does not start a new store over it: " + hint}
	default:
		if err := checkFileSize(path, info.Size()); err != nil {
			return nil, &store.CorruptError{Record: path, Reason: err.Error() + ": " + restore}
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
// panic becomes a *store.CorruptError naming the file.
func openBolt(path string, readOnly bool) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, &store.CorruptError{Record: path, Reason: fmt.Sprintf("not a readable bbolt file: %v", r)}
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
		return nil, &store.CorruptError{Record: path, Reason: fmt.Sprintf("not a fedprop store (unrecognised file: %v)", err)}
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// start checks the format and the head file, and creates the buckets of a new store.
func (s *Store) start(headPath string, recorded store.Head, hasHead bool, restore string) error {
	var (
		format string
		old    bool
		stored = store.Head{Hash: store.Genesis}
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
			s.path, store.ErrOldFormat, s.path)
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
func (s *Store) compareHead(headPath string, stored, recorded store.Head, restore string) error {
	if stored.Seq < recorded.Seq {
		return &store.CorruptError{Record: s.path, Reason: fmt.Sprintf(
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
		return &store.CorruptError{Record: s.path, Reason: fmt.Sprintf(
			"its audit entry %d is %.12s..., but %s records %.12s...: the store file was replaced by another store; %s",
			recorded.Seq, hash, headPath, recorded.Hash, restore)}
	}
	return nil
}

// maxHeadFileBytes bounds the head file: one head, a few dozen bytes.
const maxHeadFileBytes = 256

func readHeadFile(path string) (store.Head, bool, error) {
	f, err := os.Open(path) // #nosec G304 -- beside the store the operator names
	if errors.Is(err, fs.ErrNotExist) {
		return store.Head{}, false, nil
	}
	if err != nil {
		return store.Head{}, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHeadFileBytes+1))
	if err != nil {
		return store.Head{}, false, err
	}
	h, err := store.ParseHead(strings.TrimSuffix(string(b), "\n"))
	if err != nil || len(b) > maxHeadFileBytes {
		return store.Head{}, false, &store.CorruptError{Record: path, Reason: "not an audit head file (one line, SEQ:HASH)"}
	}
	return h, true, nil
}

// writeHeadFile replaces the head file atomically: a new file, synced, renamed over the old.
func (s *Store) writeHeadFile(h store.Head) error {
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

// Close implements store.Store.
func (s *Store) Close() error { return s.db.Close() }

// view runs a read transaction; a panic of bbolt on a damaged page becomes a
// *store.CorruptError naming the file.
func (s *Store) view(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &store.CorruptError{Record: s.path, Reason: fmt.Sprintf("a bbolt page is damaged: %v", r)}
		}
	}()
	return s.db.View(fn)
}

// update runs a write transaction; when fn moves the audit head, the head file follows once
// the transaction has committed.
func (s *Store) update(fn func(tx *bolt.Tx) (*store.Head, error)) error {
	var head *store.Head
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

func putRun(tx *bolt.Tx, r store.Run) error {
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
	return runs.Put([]byte(r.ID), store.SealRecord(store.RecordRun, r.ID, r.Body))
}

// unseal checks a stored value against its checksum and returns a copy of its canonical
// bytes: a record outlives the transaction it was read in.
func unseal(kind, key string, stored []byte) ([]byte, error) {
	body, _, err := store.UnsealRecord(kind, key, stored)
	return bytes.Clone(body), err
}

func getRun(tx *bolt.Tx, id string) (store.Run, error) {
	b := tx.Bucket(bucketRuns).Get([]byte(id))
	if b == nil {
		return store.Run{}, fmt.Errorf("run %q: %w", id, store.ErrNotFound)
	}
	body, err := unseal(store.RecordRun, id, b)
	if err != nil {
		return store.Run{}, err
	}
	return store.ParseRun(id, body)
}

func getVersion(tx *bolt.Tx, version uint64) (store.Version, error) {
	b := tx.Bucket(bucketVersions).Get(seqKey(version))
	if b == nil {
		return store.Version{}, fmt.Errorf("version %d: %w", version, store.ErrNotFound)
	}
	return decodeVersion(version, b)
}

func decodeVersion(version uint64, b []byte) (store.Version, error) {
	body, err := unseal(store.RecordVersion, store.VersionKey(version), b)
	if err != nil {
		return store.Version{}, err
	}
	return store.ParseVersion(version, body)
}

func getEntry(tx *bolt.Tx, seq uint64) (store.Entry, error) {
	b := tx.Bucket(bucketAudit).Get(seqKey(seq))
	if b == nil {
		return store.Entry{}, &store.CorruptError{Record: store.RecordName(store.RecordAudit, store.EntryKey(seq)), Reason: "missing"}
	}
	return decodeEntry(seq, b)
}

func decodeEntry(seq uint64, b []byte) (store.Entry, error) {
	body, err := unseal(store.RecordAudit, store.EntryKey(seq), b)
	if err != nil {
		return store.Entry{}, err
	}
	return store.ParseEntry(seq, body)
}

func getHead(tx *bolt.Tx) (store.Head, error) {
	b := tx.Bucket(bucketMeta).Get(keyHead)
	if b == nil {
		return store.Head{}, &store.CorruptError{Record: store.RecordHead, Reason: "missing"}
	}
	body, _, err := store.UnsealRecord(store.RecordHead, "", b)
	if err != nil {
		return store.Head{}, err
	}
	h, err := store.ParseHead(string(body))
	if err != nil {
		return store.Head{}, &store.CorruptError{Record: store.RecordHead, Reason: err.Error()}
	}
	return h, nil
}

func putHead(tx *bolt.Tx, h store.Head) error {
	return tx.Bucket(bucketMeta).Put(keyHead, store.SealRecord(store.RecordHead, "", []byte(h.String())))
}

// appendAudit writes entries after the stored head, and the new head, inside tx.
func appendAudit(tx *bolt.Tx, entries []store.Entry) (*store.Head, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	head, err := getHead(tx)
	if err != nil {
		return nil, err
	}
	if err := store.Follows(head, entries); err != nil {
		return nil, fmt.Errorf("append audit entry %d: %w: %w", entries[0].Seq, store.ErrConflict, err)
	}
	b := tx.Bucket(bucketAudit)
	for _, e := range entries {
		if err := b.Put(seqKey(e.Seq), store.SealRecord(store.RecordAudit, store.EntryKey(e.Seq), e.Body)); err != nil {
			return nil, err
		}
	}
	h := store.HeadOf(entries)
	return &h, putHead(tx, h)
}

// SaveRun implements store.Store.
func (s *Store) SaveRun(ctx context.Context, r store.Run) error {
	return s.SaveRunAudited(ctx, r, nil)
}

// SaveRunAudited implements store.AuditedStore.
func (s *Store) SaveRunAudited(_ context.Context, r store.Run, log []store.Entry) error {
	return s.update(func(tx *bolt.Tx) (*store.Head, error) {
		if err := putRun(tx, r); err != nil {
			return nil, err
		}
		return appendAudit(tx, log)
	})
}

// AppendAudit implements store.AuditedStore.
func (s *Store) AppendAudit(_ context.Context, log []store.Entry) error {
	return s.update(func(tx *bolt.Tx) (*store.Head, error) { return appendAudit(tx, log) })
}

// Run implements store.Store.
func (s *Store) Run(_ context.Context, id string) (r store.Run, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		r, err = getRun(tx, id)
		return err
	})
	return r, err
}

// Runs implements store.Store.
func (s *Store) Runs(context.Context) ([]store.Run, error) {
	var out []store.Run
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRunOrder).ForEach(func(_, id []byte) error {
			r, err := getRun(tx, string(id))
			if errors.Is(err, store.ErrNotFound) {
				return &store.CorruptError{Record: store.RecordName(store.RecordRun, string(id)), Reason: "listed in the run order, but not stored"}
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

// Commit implements store.Store.
func (s *Store) Commit(ctx context.Context, v store.Version, r store.Run) error {
	return s.CommitAudited(ctx, v, r, nil)
}

// CommitAudited implements store.AuditedStore.
func (s *Store) CommitAudited(_ context.Context, v store.Version, r store.Run, log []store.Entry) error {
	return s.update(func(tx *bolt.Tx) (*store.Head, error) {
		var latest uint64
		if k, _ := tx.Bucket(bucketVersions).Cursor().Last(); k != nil {
			latest = binary.BigEndian.Uint64(k)
		}
		lastRound := 0
		if stored, err := getRun(tx, r.ID); err == nil {
			lastRound = stored.LastRound
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if err := store.CheckCommit(latest, lastRound, v, r); err != nil {
			return nil, err
		}
		sealed := store.SealRecord(store.RecordVersion, store.VersionKey(v.Version), v.Body)
		if err := tx.Bucket(bucketVersions).Put(seqKey(v.Version), sealed); err != nil {
			return nil, err
		}
		if err := putRun(tx, r); err != nil {
			return nil, err
		}
		return appendAudit(tx, log)
	})
}

// Version implements store.Store.
func (s *Store) Version(_ context.Context, version uint64) (v store.Version, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v, err = getVersion(tx, version)
		return err
	})
	return v, err
}

// Latest implements store.Store.
func (s *Store) Latest(context.Context) (v store.Version, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		k, b := tx.Bucket(bucketVersions).Cursor().Last()
		if k == nil {
			return fmt.Errorf("latest version: %w", store.ErrNotFound)
		}
		n, err := versionOfKey(k)
		if err != nil {
			return err
		}
		v, err = decodeVersion(n, b)
		return err
	})
	return v, err
}

func versionOfKey(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, &store.CorruptError{Record: fmt.Sprintf("version key %x", k), Reason: "not an 8-byte version number"}
	}
	return binary.BigEndian.Uint64(k), nil
}

// Versions implements store.Store.
func (s *Store) Versions(context.Context) ([]store.Version, error) {
	var out []store.Version
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVersions).ForEach(func(k, b []byte) error {
			n, err := versionOfKey(k)
			if err != nil {
				return err
			}
			v, err := decodeVersion(n, b)
			if err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

// AuditLog implements store.AuditedStore.
func (s *Store) AuditLog(context.Context) ([]store.Entry, store.Head, error) {
	var (
		out  []store.Entry
		head store.Head
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

// Check implements store.Checker: bbolt's own check of the file's pages, then every
// record against its checksum and its key, the run order against the runs, and the head file.
func (s *Store) Check(ctx context.Context) (store.CheckReport, error) {
	var rep store.CheckReport
	damaged := func(record string, err error) {
		rep.Damaged = append(rep.Damaged, store.Damage{Record: record, Err: err})
	}
	if s.headProblem != nil {
		damaged(s.path+HeadFileSuffix, s.headProblem)
	}
	err := s.view(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			damaged(s.path, &store.CorruptError{Record: s.path, Reason: "bbolt: " + err.Error()})
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if rep.Head, err = getHead(tx); err != nil {
			damaged(store.RecordHead, err)
		}
		stored := map[string]bool{}
		_ = tx.Bucket(bucketRuns).ForEach(func(k, _ []byte) error {
			id := string(k)
			stored[id] = false
			if _, err := getRun(tx, id); err != nil {
				damaged(store.RecordName(store.RecordRun, id), err)
				return nil
			}
			rep.Runs++
			return nil
		})
		_ = tx.Bucket(bucketRunOrder).ForEach(func(_, id []byte) error {
			if _, ok := stored[string(id)]; !ok {
				damaged(store.RecordName(store.RecordRun, string(id)), &store.CorruptError{
					Record: store.RecordName(store.RecordRun, string(id)), Reason: "listed in the run order, but not stored"})
			}
			stored[string(id)] = true
			return nil
		})
		for id, listed := range stored {
			if !listed {
				damaged(store.RecordName(store.RecordRun, id), &store.CorruptError{
					Record: store.RecordName(store.RecordRun, id), Reason: "stored, but missing from the run order"})
			}
		}
		_ = tx.Bucket(bucketVersions).ForEach(func(k, b []byte) error {
			n, err := versionOfKey(k)
			if err == nil {
				_, err = decodeVersion(n, b)
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
		var corrupt *store.CorruptError
		if !errors.As(err, &corrupt) {
			return rep, err
		}
		damaged(corrupt.Record, err)
	}
	return rep, nil
}

// recordOf is the record a read error names, or def.
func recordOf(err error, def string) string {
	var corrupt *store.CorruptError
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
