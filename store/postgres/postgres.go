// Package postgres is the coordinator's store on a PostgreSQL server (pgx v5): the option
// beside the embedded bbolt store for running several coordinator replicas against one
// database, of which one leads at a time (see Leader).
//
// Runs and versions are JSON documents (jsonb). A commit is one transaction that locks the
// single head row (SELECT ... FOR UPDATE), applies coordinator.CheckCommit to what it read
// under that lock, and writes the version, the run record and the new head together: two
// replicas can never both commit a version, whatever they believe about leadership.
//
// Every table lives in the connection's current schema (set search_path in the DSN to keep
// several federations, or tests, apart in one database).
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fedprop/fedprop/coordinator"
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
}

// schemaSQL creates the store's tables in the current schema. It runs under a
// transaction-scoped advisory lock, so replicas starting together do not race.
const schemaSQL = `
SELECT pg_advisory_xact_lock(hashtextextended('fedprop migrate ' || current_schema(), 0));
CREATE TABLE IF NOT EXISTS fedprop_runs (
	id   text PRIMARY KEY,
	seq  bigint GENERATED ALWAYS AS IDENTITY,
	doc  jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS fedprop_versions (
	version bigint PRIMARY KEY CHECK (version > 0),
	run_id  text NOT NULL,
	round   integer NOT NULL,
	created timestamptz NOT NULL,
	doc     jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS fedprop_head (
	id     integer PRIMARY KEY CHECK (id = 1),
	latest bigint NOT NULL
);
INSERT INTO fedprop_head (id, latest) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS fedprop_leader (
	id     integer PRIMARY KEY CHECK (id = 1),
	term   bigint NOT NULL,
	holder text NOT NULL,
	since  timestamptz NOT NULL
);`

// migrate creates the tables if they are missing (one transaction; without arguments pgx
// sends the statements in one simple-protocol message).
func migrate(ctx context.Context, c *pgx.Conn) error {
	return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, schemaSQL); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
		return nil
	})
}

// Store is a coordinator.Store on PostgreSQL. It is safe for concurrent use.
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
	err = p.with(ctx, func(c *pgx.Conn) error { return migrate(ctx, c) })
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

// Close implements coordinator.Store. Closing any view closes the connections they share.
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

func putRun(ctx context.Context, tx pgx.Tx, r coordinator.RunState) error {
	doc, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO fedprop_runs (id, doc) VALUES ($1, $2)
		ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc`, r.ID, doc)
	if err != nil {
		return fmt.Errorf("write run %s: %w", r.ID, err)
	}
	return nil
}

// SaveRun implements coordinator.Store.
func (s *Store) SaveRun(ctx context.Context, r coordinator.RunState) error {
	return s.write(ctx, func(tx pgx.Tx) error { return putRun(ctx, tx, r) })
}

func decodeRun(id string, doc []byte) (coordinator.RunState, error) {
	var r coordinator.RunState
	if err := json.Unmarshal(doc, &r); err != nil {
		return r, fmt.Errorf("decode run %q: %w", id, err)
	}
	return r, nil
}

// Run implements coordinator.Store.
func (s *Store) Run(ctx context.Context, id string) (coordinator.RunState, error) {
	var doc []byte
	err := s.pool.with(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT doc FROM fedprop_runs WHERE id = $1`, id).Scan(&doc)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return coordinator.RunState{}, fmt.Errorf("run %q: %w", id, coordinator.ErrNotFound)
	}
	if err != nil {
		return coordinator.RunState{}, fmt.Errorf("read run %q: %w", id, err)
	}
	return decodeRun(id, doc)
}

// Runs implements coordinator.Store.
func (s *Store) Runs(ctx context.Context) ([]coordinator.RunState, error) {
	var out []coordinator.RunState
	err := s.pool.with(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT id, doc FROM fedprop_runs ORDER BY seq`)
		if err != nil {
			return err
		}
		var (
			id  string
			doc []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &doc}, func() error {
			r, err := decodeRun(id, doc)
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

// Commit implements coordinator.Store: one transaction that locks the head row, checks the
// commit against what it holds, and writes the version, the run record and the new head.
func (s *Store) Commit(ctx context.Context, v coordinator.ModelVersion, r coordinator.RunState) error {
	doc, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode version %d: %w", v.Version, err)
	}
	return s.write(ctx, func(tx pgx.Tx) error {
		var latest uint64
		if err := tx.QueryRow(ctx, `SELECT latest FROM fedprop_head WHERE id = 1 FOR UPDATE`).Scan(&latest); err != nil {
			return fmt.Errorf("commit version %d: lock head: %w", v.Version, err)
		}
		lastRound := 0
		var runDoc []byte
		err := tx.QueryRow(ctx, `SELECT doc FROM fedprop_runs WHERE id = $1 FOR UPDATE`, r.ID).Scan(&runDoc)
		switch {
		case err == nil:
			stored, err := decodeRun(r.ID, runDoc)
			if err != nil {
				return err
			}
			lastRound = stored.LastRound
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("commit version %d: read run %s: %w", v.Version, r.ID, err)
		}
		if err := coordinator.CheckCommit(latest, lastRound, v, r); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO fedprop_versions (version, run_id, round, created, doc) VALUES ($1, $2, $3, $4, $5)`,
			v.Version, v.RunID, v.Round, v.Created, doc)
		if err != nil {
			return fmt.Errorf("commit version %d: %w", v.Version, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE fedprop_head SET latest = $1 WHERE id = 1`, v.Version); err != nil {
			return fmt.Errorf("commit version %d: move head: %w", v.Version, err)
		}
		return putRun(ctx, tx, r)
	})
}

func decodeVersion(doc []byte) (coordinator.ModelVersion, error) {
	var v coordinator.ModelVersion
	if err := json.Unmarshal(doc, &v); err != nil {
		return v, fmt.Errorf("decode version: %w", err)
	}
	return v, nil
}

func (s *Store) readVersion(ctx context.Context, what, query string, args ...any) (coordinator.ModelVersion, error) {
	var doc []byte
	err := s.pool.with(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, query, args...).Scan(&doc)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return coordinator.ModelVersion{}, fmt.Errorf("%s: %w", what, coordinator.ErrNotFound)
	}
	if err != nil {
		return coordinator.ModelVersion{}, fmt.Errorf("read %s: %w", what, err)
	}
	return decodeVersion(doc)
}

// Version implements coordinator.Store.
func (s *Store) Version(ctx context.Context, version uint64) (coordinator.ModelVersion, error) {
	if version == 0 || version > math.MaxInt64 {
		return coordinator.ModelVersion{}, fmt.Errorf("version %d: %w", version, coordinator.ErrNotFound)
	}
	return s.readVersion(ctx, fmt.Sprintf("version %d", version), `SELECT doc FROM fedprop_versions WHERE version = $1`, version)
}

// Latest implements coordinator.Store.
func (s *Store) Latest(ctx context.Context) (coordinator.ModelVersion, error) {
	return s.readVersion(ctx, "latest version", `SELECT doc FROM fedprop_versions ORDER BY version DESC LIMIT 1`)
}

// Versions implements coordinator.Store.
func (s *Store) Versions(ctx context.Context) ([]coordinator.ModelVersion, error) {
	var out []coordinator.ModelVersion
	err := s.pool.with(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT doc FROM fedprop_versions ORDER BY version`)
		if err != nil {
			return err
		}
		var doc []byte
		_, err = pgx.ForEachRow(rows, []any{&doc}, func() error {
			v, err := decodeVersion(doc)
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
		errors.Is(err, coordinator.ErrConflict) || errors.Is(err, ErrNotLeader))
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
