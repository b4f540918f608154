package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/postgres"
	"github.com/fedprop/fedprop/store/postgres/pgtest"
	"github.com/fedprop/fedprop/store/storetest"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestConformance(t *testing.T) {
	dsns := map[store.AuditedStore]string{}
	storetest.RunAudited(t, storetest.Backend{
		New: func(t *testing.T) store.AuditedStore {
			dsn := pgtest.DSN(t)
			s := open(t, dsn)
			dsns[s] = dsn
			return s
		},
		Tamper: func(t *testing.T, s store.AuditedStore, kind, key string, edit func([]byte) []byte) store.AuditedStore {
			where := map[string][2]string{store.RecordRun: {"fedprop_runs", "id"},
				store.RecordVersion: {"fedprop_versions", "version::text"}, store.RecordAudit: {"fedprop_audit", "seq::text"}}[kind]
			table, column := where[0], where[1]
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsns[s])
			require.NoError(t, err)
			defer conn.Close(ctx)
			var doc []byte
			require.NoError(t, conn.QueryRow(ctx, "SELECT doc FROM "+table+" WHERE "+column+" = $1", key).Scan(&doc))
			tag, err := conn.Exec(ctx, "UPDATE "+table+" SET doc = $1 WHERE "+column+" = $2", edit(doc), key)
			require.NoError(t, err)
			require.Equal(t, int64(1), tag.RowsAffected())
			return s
		},
	})
}

// TestATableOfAnOlderFedpropIsRefusedClearly: a schema holding the tables of the format
// before checksums opens with an error that says so, and is left alone.
func TestATableOfAnOlderFedpropIsRefusedClearly(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE TABLE fedprop_versions (version bigint PRIMARY KEY, run_id text, round integer, created timestamptz, doc jsonb);
		INSERT INTO fedprop_versions VALUES (1, 'r', 1, now(), '{"version":1}')`)
	require.NoError(t, err)
	_, err = postgres.Open(ctx, dsn, postgres.Options{})
	require.ErrorIs(t, err, store.ErrOldFormat)
	assert.Contains(t, err.Error(), "store written by an older fedprop")
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM fedprop_versions`).Scan(&n))
	assert.Equal(t, 1, n)
}

func TestReadOnlyOpenCreatesNothing(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	_, err := postgres.Open(ctx, dsn, postgres.Options{ReadOnly: true})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no fedprop store")
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var tables int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()`).Scan(&tables))
	assert.Zero(t, tables)
}

// TestPgDumpRestoresAStoreThatChecksClean: the store's schema is its whole state, so pg_dump
// of the schema restored into an empty database gives a store that opens, checks clean and
// holds the same versions and audit log.
func TestPgDumpRestoresAStoreThatChecksClean(t *testing.T) {
	dsn := pgtest.DSN(t)
	pgDump, err := exec.LookPath("pg_dump")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("pg_dump is required under CI (it comes with the PostgreSQL client)")
		}
		t.Skip("skipping: pg_dump is not installed")
	}
	psql, err := exec.LookPath("psql")
	require.NoError(t, err, "psql comes with pg_dump")
	ctx := context.Background()
	s := open(t, dsn)
	head := store.Head{}
	for n := uint64(1); n <= 3; n++ {
		v, r := version(t, n, "r")
		es := storetest.Entries(t, head, 1, "version "+store.VersionKey(n))
		require.NoError(t, s.CommitAudited(ctx, v, r, es))
		head = store.HeadOf(es)
	}
	before := storetest.Dump(t, s)
	schema := searchPath(t, dsn)
	dump, err := exec.CommandContext(ctx, pgDump, "--schema="+schema, "--no-owner", libpqDSN(t, dsn)).Output() // #nosec G204 -- the test's own server
	require.NoError(t, err)

	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	require.NoError(t, err)
	restore := exec.CommandContext(ctx, psql, "-q", "-X", "-v", "ON_ERROR_STOP=1", libpqDSN(t, dsn)) // #nosec G204 -- as above
	restore.Stdin = bytes.NewReader(dump)
	out, err := restore.CombinedOutput()
	require.NoError(t, err, "%s", out)

	back := open(t, dsn)
	rep, err := back.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Damaged)
	assert.Equal(t, 3, rep.Versions)
	assert.Equal(t, head, rep.Head)
	assert.Equal(t, before, storetest.Dump(t, back), "every record restored byte for byte")
	// The restored store goes on committing.
	v, r := version(t, 4, "r")
	require.NoError(t, back.Commit(ctx, v, r))
}

// searchPath returns the schema pgtest put in the DSN.
func searchPath(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	schema := u.Query().Get("search_path")
	require.NotEmpty(t, schema)
	return schema
}

// libpqDSN is dsn without the search_path parameter, which libpq's tools do not accept.
func libpqDSN(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Del("search_path")
	u.RawQuery = q.Encode()
	return u.String()
}

// version is version n of run, at round n, created at noon plus n nanoseconds.
func version(t *testing.T, n uint64, run string) (store.Version, store.Run) {
	return storetest.VersionRecord(t, n, run, int(n), float64(n))
}

// Two stores on one database (as two replicas have) race to commit each version: the row
// lock lets exactly one win every time, and the other gets ErrConflict.
func TestConcurrentCommitsOfOneVersionExactlyOneWins(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := context.Background()
	require.NoError(t, a.SaveRun(ctx, storetest.RunRecord(t, "r", "", 0, 0)))
	const versions = 20
	for n := uint64(1); n <= versions; n++ {
		v, r := version(t, n, "r")
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, s := range []*postgres.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Commit(ctx, v, r)
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
				continue
			}
			require.ErrorIs(t, err, store.ErrConflict, "version %d", n)
		}
		require.Equal(t, 1, won, "version %d: exactly one commit wins", n)
	}
	all, err := a.Versions(ctx)
	require.NoError(t, err)
	require.Len(t, all, versions)
	for i, v := range all {
		assert.Equal(t, uint64(i+1), v.Version)
		assert.Equal(t, time.Date(2026, 11, 23, 12, 0, 0, i+1, time.UTC), v.Created.UTC(), "timestamps survive to the nanosecond")
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, dsn, postgres.Options{MaxConns: 1})
	require.NoError(t, err)
	v, r := version(t, 1, "r")
	require.NoError(t, s.Commit(ctx, v, r))
	require.NoError(t, s.Close())

	s2 := open(t, dsn)
	got, err := s2.Latest(ctx)
	require.NoError(t, err)
	assert.Equal(t, v.Body, got.Body)
	v2, r2 := version(t, 2, "r")
	require.NoError(t, s2.Commit(ctx, v2, r2))
	v2, _ = storetest.VersionRecord(t, 2, "r", 2, 9)
	require.ErrorIs(t, s2.Commit(ctx, v2, r2), store.ErrConflict)
}

func TestBrokenConnectionsAreReplaced(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	s := open(t, pgtest.WithParam(dsn, "application_name", "broken-conn-test"))
	require.NoError(t, s.SaveRun(ctx, storetest.RunRecord(t, "r", "", 0, 0)))

	// Kill the store's sessions: its idle pooled connection is now dead.
	admin, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer admin.Close(ctx)
	var killed int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'broken-conn-test'`).Scan(&killed))
	require.Positive(t, killed)

	// The first call may fail on the dead connection; the pool drops it and the next works.
	require.Eventually(t, func() bool {
		_, err := s.Run(ctx, "r")
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
}

func TestIsDSNAndRedact(t *testing.T) {
	tests := []struct {
		in     string
		isDSN  bool
		redact string
	}{
		{"fedprop.db", false, "fedprop.db"},
		{"/var/lib/fedprop/postgres.db", false, "/var/lib/fedprop/postgres.db"},
		{"postgres://u:secret@db:5432/fedprop", true, "postgres://u:xxxxx@db:5432/fedprop"},
		{"postgresql://u@db/fedprop?sslmode=require", true, "postgresql://u@db/fedprop?sslmode=require"},
		{"open postgres://u:p%40ss@h/db failed", false, "open postgres://u:xxxxx@h/db failed"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.isDSN, postgres.IsDSN(tt.in))
			assert.Equal(t, tt.redact, postgres.Redact(tt.in))
		})
	}
}

func TestWithSearchPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u:p@h:5432/db", "postgres://u:p@h:5432/db?search_path=s1"},
		{"postgres://u:p@h/db?sslmode=disable", "postgres://u:p@h/db?search_path=s1&sslmode=disable"},
		{"host=h dbname=db", "host=h dbname=db search_path=s1"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, pgtest.WithSearchPath(tt.in, "s1"), tt.in)
	}
}

func leader(t *testing.T, dsn, name string) *postgres.Leader {
	t.Helper()
	l, err := postgres.NewLeader(dsn, postgres.LeaderConfig{Name: name, Interval: 50 * time.Millisecond, Logger: quietLogger()})
	require.NoError(t, err)
	return l
}

// The leader's session dies (as when its process is killed): the follower takes the lock
// with a new term, the old leader's lease ends with ErrLeadershipLost, and the old leader's
// fenced store can no longer write.
func TestLeaderFailoverFencesTheOldLeader(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	store := open(t, dsn)

	a := leader(t, pgtest.WithParam(dsn, "application_name", "replica-a"), "a")
	leaseA, err := a.Campaign(ctx)
	require.NoError(t, err)
	defer leaseA.Release()
	storeA := store.Fenced(leaseA.Term())
	require.NoError(t, storeA.SaveRun(ctx, storetest.RunRecord(t, "r", "a", 0, 0)))

	b := leader(t, dsn, "b")
	leases := make(chan *postgres.Lease, 1)
	bctx, cancelB := context.WithCancel(ctx)
	defer cancelB()
	go func() {
		l, err := b.Campaign(bctx)
		if err == nil {
			leases <- l
		}
	}()
	select {
	case <-leases:
		t.Fatal("b leads while a holds the lock")
	case <-time.After(300 * time.Millisecond):
	}

	admin, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer admin.Close(ctx)
	var killed int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'replica-a'`).Scan(&killed))
	require.Equal(t, 1, killed)

	var leaseB *postgres.Lease
	select {
	case leaseB = <-leases:
	case <-time.After(30 * time.Second):
		t.Fatal("b did not take over")
	}
	defer leaseB.Release()
	assert.Greater(t, leaseB.Term(), leaseA.Term())

	select {
	case <-leaseA.Context().Done():
		require.ErrorIs(t, context.Cause(leaseA.Context()), postgres.ErrLeadershipLost)
	case <-time.After(30 * time.Second):
		t.Fatal("a did not notice it lost its session")
	}

	err = storeA.SaveRun(ctx, storetest.RunRecord(t, "r", "stale", 0, 0))
	require.ErrorIs(t, err, postgres.ErrNotLeader)
	v, r := version(t, 1, "r")
	require.ErrorIs(t, storeA.Commit(ctx, v, r), postgres.ErrNotLeader)

	storeB := store.Fenced(leaseB.Term())
	require.NoError(t, storeB.Commit(ctx, v, r))
	got, err := store.Run(ctx, "r")
	require.NoError(t, err)
	assert.Equal(t, 1, got.LastRound, "the deposed leader wrote nothing")
}

func TestLeadReleasesForTheNextReplica(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	errDone := errors.New("done")
	var terms []uint64
	for _, name := range []string{"a", "b", "c"} {
		err := leader(t, dsn, name).Lead(ctx, func(ctx context.Context, term uint64) error {
			require.NoError(t, ctx.Err())
			terms = append(terms, term)
			return errDone
		})
		require.ErrorIs(t, err, errDone)
	}
	assert.Equal(t, []uint64{1, 2, 3}, terms)
}

func TestCampaignStopsWithItsContext(t *testing.T) {
	dsn := pgtest.DSN(t)
	lease, err := leader(t, dsn, "a").Campaign(context.Background())
	require.NoError(t, err)
	defer lease.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = leader(t, dsn, "b").Campaign(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
