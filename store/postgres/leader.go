package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrLeadershipLost: the leader's session ended (or stopped answering), so another replica
// may lead now. It is the cause of a Lease's context when that context ends this way.
var ErrLeadershipLost = errors.New("leadership lost")

// lockSQL takes the leader lock without waiting. The key is derived from the current
// schema, so replicas sharing a database and schema share one lock and separate schemas
// (separate federations, tests) do not contend.
const lockSQL = `SELECT pg_try_advisory_lock(hashtextextended('fedprop leader ' || current_schema(), 0))`

// termSQL records a new term for the replica that has just taken the lock. Fenced writes
// hold a share lock on this row, so the bump waits for a deposed leader's last write to
// finish, and every write after it sees the new term.
const termSQL = `INSERT INTO fedprop_leader (id, term, holder, since) VALUES (1, 1, $1, now())
	ON CONFLICT (id) DO UPDATE SET term = fedprop_leader.term + 1, holder = EXCLUDED.holder, since = EXCLUDED.since
	RETURNING term`

// LeaderConfig tunes a Leader.
type LeaderConfig struct {
	// Name identifies this replica in the leader table and in logs; default "HOST:PID".
	Name string
	// Interval is how often a follower tries to take the lock and how often a leader checks
	// that its session is alive; default 250ms (one trivial query each time).
	Interval time.Duration
	// CheckTimeout bounds one liveness check of the leader's session; default 5s. A check
	// that fails or times out ends the lease.
	CheckTimeout time.Duration
	Logger       *slog.Logger
}

func (c LeaderConfig) withDefaults() LeaderConfig {
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if c.Interval <= 0 {
		c.Interval = 250 * time.Millisecond
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Leader elects one coordinator replica among those sharing a database: the one whose
// dedicated session holds a session-level advisory lock (pg_advisory_lock) leads. The lock
// lives exactly as long as that session, so when the leader's process dies the server ends
// the session, frees the lock, and the next replica to try takes it.
type Leader struct {
	connCfg *pgx.ConnConfig
	cfg     LeaderConfig
	log     *slog.Logger
}

// NewLeader prepares leader election over the server named by dsn.
func NewLeader(dsn string, cfg LeaderConfig) (*Leader, error) {
	connCfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", redacted(err))
	}
	cfg = cfg.withDefaults()
	return &Leader{connCfg: connCfg, cfg: cfg, log: cfg.Logger.With("replica", cfg.Name)}, nil
}

// Lease is one term of leadership.
type Lease struct {
	term   uint64
	conn   *pgx.Conn
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// Term is the lease's term: it grows by one with every election. Fence the store's writes
// with it (Store.Fenced).
func (l *Lease) Term() uint64 { return l.term }

// Context ends when the lease does: with cause ErrLeadershipLost when the session was lost,
// or when the context given to Campaign ends, or on Release.
func (l *Lease) Context() context.Context { return l.ctx }

// Release gives up the lead: it stops the liveness checks and closes the session, which
// frees the lock. It is safe to call more than once.
func (l *Lease) Release() {
	l.cancel(nil)
	<-l.done
	if !l.conn.IsClosed() {
		closeConn(l.conn)
	}
}

// Campaign blocks until this replica holds the lock, records a new term, and returns the
// lease; it returns an error only when ctx ends. Connection failures are logged and retried.
func (l *Leader) Campaign(ctx context.Context) (*Lease, error) {
	var conn *pgx.Conn
	waitingLogged := false
	for {
		if conn == nil || conn.IsClosed() {
			c, err := pgx.ConnectConfig(ctx, l.connCfg.Copy())
			if err != nil && ctx.Err() == nil {
				l.log.Warn("leader election: cannot reach postgres; retrying", "err", Redact(err.Error()), "retry_in", l.cfg.Interval)
			}
			conn = c
		}
		if conn != nil {
			term, ok, err := l.tryLead(ctx, conn)
			switch {
			case err != nil && ctx.Err() == nil:
				l.log.Warn("leader election failed; retrying", "err", err, "retry_in", l.cfg.Interval)
				closeConn(conn)
				conn = nil
			case ok:
				l.log.Info("leading", "term", term)
				return l.newLease(ctx, conn, term), nil
			case !waitingLogged && err == nil:
				waitingLogged = true
				holder, hterm := l.currentLeader(ctx, conn)
				l.log.Info("another replica leads; following until it stops", "leader", holder, "term", hterm)
			}
		}
		t := time.NewTimer(l.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			if conn != nil {
				closeConn(conn)
			}
			return nil, fmt.Errorf("campaign for leadership: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// tryLead takes the lock if it is free and then records a new term.
func (l *Leader) tryLead(ctx context.Context, conn *pgx.Conn) (uint64, bool, error) {
	var got bool
	if err := conn.QueryRow(ctx, lockSQL).Scan(&got); err != nil {
		return 0, false, fmt.Errorf("try leader lock: %w", err)
	}
	if !got {
		return 0, false, nil
	}
	if err := migrate(ctx, conn); err != nil {
		return 0, false, err
	}
	var term uint64
	if err := conn.QueryRow(ctx, termSQL, l.cfg.Name).Scan(&term); err != nil {
		return 0, false, fmt.Errorf("record leader term: %w", err)
	}
	return term, true, nil
}

// currentLeader reads who leads, for the follower's log line; empty when unknown.
func (l *Leader) currentLeader(ctx context.Context, conn *pgx.Conn) (string, uint64) {
	var (
		holder string
		term   uint64
	)
	if err := conn.QueryRow(ctx, `SELECT holder, term FROM fedprop_leader WHERE id = 1`).Scan(&holder, &term); err != nil {
		return "", 0
	}
	return holder, term
}

func (l *Leader) newLease(ctx context.Context, conn *pgx.Conn, term uint64) *Lease {
	lctx, cancel := context.WithCancelCause(ctx)
	lease := &Lease{term: term, conn: conn, ctx: lctx, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(lease.done)
		t := time.NewTicker(l.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(lctx, l.cfg.CheckTimeout)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && lctx.Err() == nil {
				l.log.Error("leader session lost; stepping down", "term", term, "err", err)
				cancel(fmt.Errorf("term %d: %w: %v", term, ErrLeadershipLost, err))
				closeConn(conn)
				return
			}
		}
	}()
	return lease
}

// Lead campaigns, runs fn with the lease's context and term, and releases the lead when fn
// returns. When the lead was lost while fn ran, the error wraps ErrLeadershipLost.
func (l *Leader) Lead(ctx context.Context, fn func(ctx context.Context, term uint64) error) error {
	lease, err := l.Campaign(ctx)
	if err != nil {
		return err
	}
	defer lease.Release()
	err = fn(lease.Context(), lease.Term())
	if cause := context.Cause(lease.Context()); errors.Is(cause, ErrLeadershipLost) {
		return cause
	}
	return err
}
