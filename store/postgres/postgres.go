// Package postgres is the coordinator's store on a PostgreSQL server (pgx v5): the option
// beside the embedded bbolt store for running several coordinator replicas against one
// database, of which one leads at a time (see Leader). It is a store.AuditedStore.
//
// Runs, versions and audit entries are JSON documents (json, which keeps the exact bytes
// written) each with the checksum of its canonical bytes (store.RecordChecksum), verified
// on every read. A commit is one transaction that locks the single head row (SELECT ... FOR
// UPDATE), applies store.CheckCommit to what it read under that lock, and writes the
// version, the run record, its audit entries and the new head (latest version and audit head)
// together: two replicas can never both commit a version, whatever they believe about
// leadership, and the log never runs ahead of or behind the state it records.
//
// Every table lives in the connection's current schema (set search_path in the DSN to keep
// several federations, or tests, apart in one database), and nothing lives outside it, so that
// pg_dump --schema of that schema is a complete backup, and restoring the dump gives a store
// that opens and checks clean.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fedprop/fedprop/store"
)

// ErrNotLeader: a write of a fenced store (Store.Fenced) found that another replica has
// taken the lead since this one was elected; nothing was written.
var ErrNotLeader = errors.New("not the leader")

// DefaultMaxConns is how many connections a Store opens at most when Options.MaxConns is 0.
const DefaultMaxConns = 4

// Options tune a Store.
type Options struct {
	// MaxConns bounds the store's connections (default DefaultMaxConns). The coordinator's
	// driver writes through one; model and admin calls read through the others.
	MaxConns int
	// ReadOnly opens an existing store without creating anything (`fedprop store check`,
	// `audit verify`): a schema without a store is an error, not a new store.
	ReadOnly bool
}

// Format is the store format this package writes, recorded in fedprop_meta.
const Format = "fedprop.store/v2"

// migrateLockSQL serialises migrations: a transaction-scoped advisory lock, so that replicas starting
// together do not race.
const migrateLockSQL = `SELECT pg_advisory_xact_lock(hashtextextended('fedprop migrate ' || current_schema(), 0))`

// tablesSQL says which of the store's tables exist in the current schema.
const tablesSQL = `SELECT
	EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'fedprop_versions'),
	EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'fedprop_meta')`

// schemaSQL creates the store's tables in the current schema.
const schemaSQL = `
CREATE TABLE IF NOT EXISTS fedprop_meta (
	id     integer PRIMARY KEY CHECK (id = 1),
	format text NOT NULL
);
CREATE TABLE IF NOT EXISTS fedprop_runs (
	id       text PRIMARY KEY,
	seq      bigint GENERATED ALWAYS AS IDENTITY,
	doc      json NOT NULL,
	checksum text NOT NULL
);
CREATE TABLE IF NOT EXISTS fedprop_versions (
	version  bigint PRIMARY KEY CHECK (version > 0),
	run_id   text NOT NULL,
	round    integer NOT NULL,
	created  timestamptz NOT NULL,
	doc      json NOT NULL,
	checksum text NOT NULL
);
CREATE TABLE IF NOT EXISTS fedprop_audit (
	seq      bigint PRIMARY KEY CHECK (seq > 0),
	doc      json NOT NULL,
	checksum text NOT NULL
);
CREATE TABLE IF NOT EXISTS fedprop_head (
	id             integer PRIMARY KEY CHECK (id = 1),
	latest         bigint NOT NULL,
	audit_head     text NOT NULL,
	audit_checksum text NOT NULL
);
CREATE TABLE IF NOT EXISTS fedprop_leader (
	id     integer PRIMARY KEY CHECK (id = 1),
	term   bigint NOT NULL,
	holder text NOT NULL,
	since  timestamptz NOT NULL
);`

// emptyHead is the audit head of a new store.
var emptyHead = store.Head{Hash: store.Genesis}

// migrate creates the tables if they are missing, in one transaction, and refuses a schema
// holding an older fedprop's tables.
func migrate(ctx context.Context, c *pgx.Conn) error {
	return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, migrateLockSQL); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		if err := checkFormat(ctx, tx, true); err != nil {
			return err
		}
		// Without arguments pgx sends the statements in one simple-protocol message.
		if _, err := tx.Exec(ctx, schemaSQL); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO fedprop_meta (id, format) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, Format); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
		h := emptyHead.String()
		if _, err := tx.Exec(ctx, `INSERT INTO fedprop_head (id, latest, audit_head, audit_checksum) VALUES (1, 0, $1, $2) ON CONFLICT (id) DO NOTHING`,
			h, store.RecordChecksum(store.RecordHead, "", []byte(h))); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
		return checkFormat(ctx, tx, false)
	})
}

// checkFormat refuses an older fedprop's tables, a newer format, and (unless fresh is set, for
// a schema about to be created) a schema without a store.
func checkFormat(ctx context.Context, q pgx.Tx, fresh bool) error {
	var versions, meta bool
	if err := q.QueryRow(ctx, tablesSQL).Scan(&versions, &meta); err != nil {
		return fmt.Errorf("read the schema's tables: %w", err)
	}
	switch {
	case versions && !meta:
		return fmt.Errorf("%w: its tables (fedprop_versions without fedprop_meta) keep records without checksums and no audit log: this fedprop cannot use them: keep the older fedprop for this schema, or use a new schema (search_path)", store.ErrOldFormat)
	case !meta && fresh:
		return nil
	case !meta:
		return errors.New("no fedprop store in the connection's current schema (search_path)")
	}
	var format string
	if err := q.QueryRow(ctx, `SELECT format FROM fedprop_meta WHERE id = 1`).Scan(&format); err != nil {
		return fmt.Errorf("read the store's format: %w", err)
	}
	if format != Format {
		return fmt.Errorf("the store's format is %q, this fedprop reads %q: written by a newer fedprop?", format, Format)
	}
	return nil
}

// Store is a store.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool *pool
	// term, when not zero, fences every write: it succeeds only while the leader table
	// still records this term (see Fenced).
	term uint64
}

// Open connects to the server named by dsn (a postgres:// URL or key=value string), creates
// the tables if needed and returns the store.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", redacted(err))
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	p := newPool(cfg, opts.MaxConns)
	err = p.with(ctx, func(c *pgx.Conn) error {
		if opts.ReadOnly {
			return pgx.BeginTxFunc(ctx, c, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error { return checkFormat(ctx, tx, false) })
		}
		return migrate(ctx, c)
	})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("open postgres store %s: %w", Redact(dsn), err)
	}
	return &Store{pool: p}, nil
}

// Fenced returns a view of s whose writes succeed only while term is the leader table's
// current term: once another replica has been elected (and bumped the term), every write of
// this view fails with ErrNotLeader and writes nothing. The check and the write are one
// transaction, and the check holds a share lock on the leader row that the next election's
// term bump waits for, so a deposed leader cannot slip a write past its successor.
func (s *Store) Fenced(term uint64) *Store {
	return &Store{pool: s.pool, term: term}
}

// Close implements store.Store. Closing any view closes the connections they share.
func (s *Store) Close() error {
	s.pool.close()
	return nil
}

// fence checks, inside tx, that s may write.
func (s *Store) fence(ctx context.Context, tx pgx.Tx) error {
	if s.term == 0 {
		return nil
	}
	var term uint64
	err := tx.QueryRow(ctx, `SELECT term FROM fedprop_leader WHERE id = 1 FOR SHARE`).Scan(&term)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("write as leader of term %d: no leader is recorded: %w", s.term, ErrNotLeader)
	case err != nil:
		return fmt.Errorf("read leader term: %w", err)
	case term != s.term:
		return fmt.Errorf("write as leader of term %d: term %d has been elected since: %w", s.term, term, ErrNotLeader)
	}
	return nil
}

func (s *Store) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.pool.with(ctx, func(c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if err := s.fence(ctx, tx); err != nil {
				return err
			}
			return fn(tx)
		})
	})
}

func putRun(ctx context.Context, tx pgx.Tx, r store.Run) error {
	_, err := tx.Exec(ctx, `INSERT INTO fedprop_runs (id, doc, checksum) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, checksum = EXCLUDED.checksum`, r.ID, r.Body, r.Checksum())
	if err != nil {
		return fmt.Errorf("write run %s: %w", r.ID, err)
	}
	return nil
}

// lockHead locks the head row for the rest of tx and returns the latest version and the audit
// head, checked against its checksum.
func lockHead(ctx context.Context, tx pgx.Tx) (uint64, store.Head, error) {
	var (
		latest       uint64
		headDoc, sum string
	)
	if err := tx.QueryRow(ctx, `SELECT latest, audit_head, audit_checksum FROM fedprop_head WHERE id = 1 FOR UPDATE`).Scan(&latest, &headDoc, &sum); err != nil {
		return 0, store.Head{}, fmt.Errorf("lock head: %w", err)
	}
	h, err := decodeHead(headDoc, sum)
	return latest, h, err
}

func decodeHead(doc, sum string) (store.Head, error) {
	if err := store.VerifyRecord(store.RecordHead, "", []byte(doc), sum); err != nil {
		return store.Head{}, err
	}
	h, err := store.ParseHead(doc)
	if err != nil {
		return store.Head{}, &store.CorruptError{Record: store.RecordHead, Reason: err.Error()}
	}
	return h, nil
}

// appendAudit writes entries after head, and the new head, inside tx (which holds the head
// row's lock).
func appendAudit(ctx context.Context, tx pgx.Tx, head store.Head, entries []store.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := store.Follows(head, entries); err != nil {
		return fmt.Errorf("append audit entry %d: %w: %w", entries[0].Seq, store.ErrConflict, err)
	}
	for _, e := range entries {
		if _, err := tx.Exec(ctx, `INSERT INTO fedprop_audit (seq, doc, checksum) VALUES ($1, $2, $3)`, e.Seq, e.Body, e.Checksum()); err != nil {
			return fmt.Errorf("append audit entry %d: %w", e.Seq, err)
		}
	}
	h := store.HeadOf(entries).String()
	_, err := tx.Exec(ctx, `UPDATE fedprop_head SET audit_head = $1, audit_checksum = $2 WHERE id = 1`,
		h, store.RecordChecksum(store.RecordHead, "", []byte(h)))
	if err != nil {
		return fmt.Errorf("move audit head: %w", err)
	}
	return nil
}

// SaveRun implements store.Store.
func (s *Store) SaveRun(ctx context.Context, r store.Run) error {
	return s.SaveRunAudited(ctx, r, nil)
}

// SaveRunAudited implements store.AuditedStore.
func (s *Store) SaveRunAudited(ctx context.Context, r store.Run, log []store.Entry) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		if len(log) > 0 {
			_, head, err := lockHead(ctx, tx)
			if err != nil {
				return err
			}
			if err := appendAudit(ctx, tx, head, log); err != nil {
				return err
			}
		}
		return putRun(ctx, tx, r)
	})
}

// AppendAudit implements store.AuditedStore.
func (s *Store) AppendAudit(ctx context.Context, log []store.Entry) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		_, head, err := lockHead(ctx, tx)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, head, log)
	})
}

func decodeRun(id string, doc []byte, sum string) (store.Run, error) {
	if err := store.VerifyRecord(store.RecordRun, id, doc, sum); err != nil {
		return store.Run{}, err
	}
	return store.ParseRun(id, doc)
}

// Run implements store.Store.
func (s *Store) Run(ctx context.Context, id string) (store.Run, error) {
	var (
		doc []byte
		sum string
	)
	err := s.pool.with(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT doc, checksum FROM fedprop_runs WHERE id = $1`, id).Scan(&doc, &sum)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Run{}, fmt.Errorf("run %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Run{}, fmt.Errorf("read run %q: %w", id, err)
	}
	return decodeRun(id, doc, sum)
}

// Runs implements store.Store.
func (s *Store) Runs(ctx context.Context) ([]store.Run, error) {
	var out []store.Run
	err := s.pool.with(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT id, doc, checksum FROM fedprop_runs ORDER BY seq`)
		if err != nil {
			return err
		}
		var (
			id, sum string
			doc     []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &doc, &sum}, func() error {
			r, err := decodeRun(id, doc, sum)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

// Commit implements store.Store.
func (s *Store) Commit(ctx context.Context, v store.Version, r store.Run) error {
	return s.CommitAudited(ctx, v, r, nil)
}

// CommitAudited implements store.AuditedStore: one transaction that locks the head row,
// checks the commit against what it holds, and writes the version, the run record, the audit
// entries and the new head.
func (s *Store) CommitAudited(ctx context.Context, v store.Version, r store.Run, log []store.Entry) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		latest, head, err := lockHead(ctx, tx)
		if err != nil {
			return fmt.Errorf("commit version %d: %w", v.Version, err)
		}
		lastRound := 0
		var (
			runDoc []byte
			runSum string
		)
		err = tx.QueryRow(ctx, `SELECT doc, checksum FROM fedprop_runs WHERE id = $1 FOR UPDATE`, r.ID).Scan(&runDoc, &runSum)
		switch {
		case err == nil:
			stored, err := decodeRun(r.ID, runDoc, runSum)
			if err != nil {
				return err
			}
			lastRound = stored.LastRound
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("commit version %d: read run %s: %w", v.Version, r.ID, err)
		}
		if err := store.CheckCommit(latest, lastRound, v, r); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO fedprop_versions (version, run_id, round, created, doc, checksum) VALUES ($1, $2, $3, $4, $5, $6)`,
			v.Version, v.RunID, v.Round, v.Created, v.Body, v.Checksum())
		if err != nil {
			return fmt.Errorf("commit version %d: %w", v.Version, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE fedprop_head SET latest = $1 WHERE id = 1`, v.Version); err != nil {
			return fmt.Errorf("commit version %d: move head: %w", v.Version, err)
		}
		if err := appendAudit(ctx, tx, head, log); err != nil {
			return fmt.Errorf("commit version %d: %w", v.Version, err)
		}
		return putRun(ctx, tx, r)
	})
}

func decodeVersion(version uint64, doc []byte, sum string) (store.Version, error) {
	if err := store.VerifyRecord(store.RecordVersion, store.VersionKey(version), doc, sum); err != nil {
		return store.Version{}, err
	}
	return store.ParseVersion(version, doc)
}

// readVersion reads one version row.
func (s *Store) readVersion(ctx context.Context, what, query string, args ...any) (store.Version, error) {
	var (
		version uint64
		doc     []byte
		sum     string
	)
	err := s.pool.with(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, query, args...).Scan(&version, &doc, &sum)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Version{}, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return store.Version{}, fmt.Errorf("read %s: %w", what, err)
	}
	return decodeVersion(version, doc, sum)
}

// Version implements store.Store.
func (s *Store) Version(ctx context.Context, version uint64) (store.Version, error) {
	if version == 0 || version > math.MaxInt64 {
		return store.Version{}, fmt.Errorf("version %d: %w", version, store.ErrNotFound)
	}
	return s.readVersion(ctx, fmt.Sprintf("version %d", version), `SELECT version, doc, checksum FROM fedprop_versions WHERE version = $1`, version)
}

// Latest implements store.Store.
func (s *Store) Latest(ctx context.Context) (store.Version, error) {
	return s.readVersion(ctx, "latest version", `SELECT version, doc, checksum FROM fedprop_versions ORDER BY version DESC LIMIT 1`)
}

// Versions implements store.Store.
func (s *Store) Versions(ctx context.Context) ([]store.Version, error) {
	var out []store.Version
	err := s.pool.with(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT version, doc, checksum FROM fedprop_versions ORDER BY version`)
		if err != nil {
			return err
		}
		var (
			version uint64
			doc     []byte
			sum     string
		)
		_, err = pgx.ForEachRow(rows, []any{&version, &doc, &sum}, func() error {
			v, err := decodeVersion(version, doc, sum)
			if err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	return out, nil
}

// snapshot runs fn in a read-only transaction that sees one instant of the store.
func (s *Store) snapshot(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.pool.with(ctx, func(c *pgx.Conn) error {
		return pgx.BeginTxFunc(ctx, c, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
	})
}

// AuditLog implements store.AuditedStore: the entries and the head as of one instant.
func (s *Store) AuditLog(ctx context.Context) ([]store.Entry, store.Head, error) {
	var (
		out  []store.Entry
		head store.Head
	)
	err := s.snapshot(ctx, func(tx pgx.Tx) error {
		var doc, sum string
		if err := tx.QueryRow(ctx, `SELECT audit_head, audit_checksum FROM fedprop_head WHERE id = 1`).Scan(&doc, &sum); err != nil {
			return err
		}
		var err error
		if head, err = decodeHead(doc, sum); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT seq, doc, checksum FROM fedprop_audit ORDER BY seq`)
		if err != nil {
			return err
		}
		var (
			seq  uint64
			body []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&seq, &body, &sum}, func() error {
			e, err := decodeEntry(seq, body, sum)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, head, fmt.Errorf("read audit log: %w", err)
	}
	return out, head, nil
}

func decodeEntry(seq uint64, doc []byte, sum string) (store.Entry, error) {
	if err := store.VerifyRecord(store.RecordAudit, store.EntryKey(seq), doc, sum); err != nil {
		return store.Entry{}, err
	}
	return store.ParseEntry(seq, doc)
}

// Check implements store.Checker: every record against its checksum and its key, as of
// one instant.
func (s *Store) Check(ctx context.Context) (store.CheckReport, error) {
	var rep store.CheckReport
	damaged := func(record string, err error) {
		rep.Damaged = append(rep.Damaged, store.Damage{Record: record, Err: err})
	}
	each := func(tx pgx.Tx, query string, fn func(key string, doc []byte, sum string) (string, error)) error {
		rows, err := tx.Query(ctx, query)
		if err != nil {
			return err
		}
		var (
			key, sum string
			doc      []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&key, &doc, &sum}, func() error {
			if record, err := fn(key, doc, sum); err != nil {
				damaged(record, err)
			}
			return nil
		})
		return err
	}
	err := s.snapshot(ctx, func(tx pgx.Tx) error {
		var doc, sum string
		if err := tx.QueryRow(ctx, `SELECT audit_head, audit_checksum FROM fedprop_head WHERE id = 1`).Scan(&doc, &sum); err != nil {
			return err
		}
		var err error
		if rep.Head, err = decodeHead(doc, sum); err != nil {
			damaged(store.RecordHead, err)
		}
		err = each(tx, `SELECT id, doc, checksum FROM fedprop_runs ORDER BY seq`, func(id string, doc []byte, sum string) (string, error) {
			_, err := decodeRun(id, doc, sum)
			if err == nil {
				rep.Runs++
			}
			return store.RecordName(store.RecordRun, id), err
		})
		if err != nil {
			return err
		}
		numbered := func(kind string, decode func(uint64, []byte, string) error, count *int) func(string, []byte, string) (string, error) {
			return func(key string, doc []byte, sum string) (string, error) {
				n, err := strconv.ParseUint(key, 10, 64)
				if err == nil {
					err = decode(n, doc, sum)
				}
				if err == nil {
					*count++
				}
				return store.RecordName(kind, key), err
			}
		}
		err = each(tx, `SELECT version::text, doc, checksum FROM fedprop_versions ORDER BY version`, numbered(store.RecordVersion,
			func(n uint64, doc []byte, sum string) error { _, err := decodeVersion(n, doc, sum); return err }, &rep.Versions))
		if err != nil {
			return err
		}
		return each(tx, `SELECT seq::text, doc, checksum FROM fedprop_audit ORDER BY seq`, numbered(store.RecordAudit,
			func(n uint64, doc []byte, sum string) error { _, err := decodeEntry(n, doc, sum); return err }, &rep.Entries))
	})
	if err != nil {
		return rep, fmt.Errorf("check store: %w", err)
	}
	return rep, nil
}

// IsDSN reports whether a store setting names a PostgreSQL server rather than a file: a
// postgres:// or postgresql:// URL.
func IsDSN(store string) bool {
	return strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://")
}

// Redact returns s with the password of any postgres URL in it replaced by "xxxxx", for
// logs and error messages.
func Redact(s string) string {
	for _, scheme := range []string{"postgres://", "postgresql://"} {
		i := strings.Index(s, scheme)
		if i < 0 {
			continue
		}
		end := strings.IndexAny(s[i:], " \t\n\"'")
		if end < 0 {
			end = len(s) - i
		}
		u, err := url.Parse(s[i : i+end])
		if err != nil || u.User == nil {
			continue
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			s = s[:i] + u.Redacted() + s[i+end:]
		}
	}
	return s
}

// redactedError hides any password in its error's message and keeps the error for errors.Is.
type redactedError struct{ err error }

func (e redactedError) Error() string { return Redact(e.err.Error()) }
func (e redactedError) Unwrap() error { return e.err }

func redacted(err error) error { return redactedError{err} }

// pool is a small connection pool (pgxpool would need a module the build does not carry):
// at most max connections, idle ones reused, broken ones dropped.
type pool struct {
	cfg   *pgx.ConnConfig
	slots chan struct{}
	idle  chan *pgx.Conn

	mu     sync.Mutex
	closed bool
}

func newPool(cfg *pgx.ConnConfig, max int) *pool {
	return &pool{cfg: cfg, slots: make(chan struct{}, max), idle: make(chan *pgx.Conn, max)}
}

// with runs fn on a connection. A connection that fn leaves broken, or that failed with
// anything but an error reported by the server, is closed rather than reused.
func (p *pool) with(ctx context.Context, fn func(c *pgx.Conn) error) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.slots }()
	var c *pgx.Conn
	select {
	case c = <-p.idle:
	default:
	}
	if c == nil || c.IsClosed() {
		var err error
		if c, err = pgx.ConnectConfig(ctx, p.cfg.Copy()); err != nil {
			return fmt.Errorf("connect to postgres: %w", redacted(err))
		}
	}
	err := fn(c)
	var pgErr *pgconn.PgError
	reusable := !c.IsClosed() && (err == nil || errors.As(err, &pgErr) || errors.Is(err, pgx.ErrNoRows) ||
		errors.Is(err, store.ErrConflict) || errors.Is(err, ErrNotLeader) || errors.Is(err, store.ErrCorrupt))
	p.mu.Lock()
	if reusable && !p.closed {
		p.idle <- c // never blocks: idle holds as many as there are slots
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	closeConn(c)
	return err
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx) // best effort: the server ends the session when the socket closes anyway
}

func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var idle []*pgx.Conn
drain:
	for {
		select {
		case c := <-p.idle:
			idle = append(idle, c)
		default:
			break drain
		}
	}
	p.mu.Unlock()
	for _, c := range idle {
		closeConn(c)
	}
}
