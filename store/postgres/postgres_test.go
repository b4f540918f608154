package postgres_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
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
	storetest.Run(t, func(t *testing.T) coordinator.Store {
		return open(t, pgtest.DSN(t))
	})
}

func version(n uint64, run string) (coordinator.ModelVersion, coordinator.RunState) {
	v := coordinator.ModelVersion{Version: n, Parent: n - 1, RunID: run, Round: int(n), Weights: []float64{float64(n)},
		Created: time.Date(2026, 11, 23, 12, 0, 0, int(n), time.UTC)}
	r := coordinator.RunState{ID: run, Status: coordinator.RunTraining, LastRound: int(n), LatestVersion: n}
	return v, r
}

// Two stores on one database (as two replicas have) race to commit each version: the row
// lock lets exactly one win every time, and the other gets ErrConflict.
func TestConcurrentCommitsOfOneVersionExactlyOneWins(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx := context.Background()
	require.NoError(t, a.SaveRun(ctx, coordinator.RunState{ID: "r"}))
	const versions = 20
	for n := uint64(1); n <= versions; n++ {
		v, r := version(n, "r")
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
			require.ErrorIs(t, err, coordinator.ErrConflict, "version %d", n)
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
	v, r := version(1, "r")
	require.NoError(t, s.Commit(ctx, v, r))
	require.NoError(t, s.Close())

	s2 := open(t, dsn)
	got, err := s2.Latest(ctx)
	require.NoError(t, err)
	assert.Equal(t, v.Weights, got.Weights)
	v2, r2 := version(2, "r")
	require.NoError(t, s2.Commit(ctx, v2, r2))
	v2.Weights = []float64{9}
	require.ErrorIs(t, s2.Commit(ctx, v2, r2), coordinator.ErrConflict)
}

func TestBrokenConnectionsAreReplaced(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	s := open(t, pgtest.WithParam(dsn, "application_name", "broken-conn-test"))
	require.NoError(t, s.SaveRun(ctx, coordinator.RunState{ID: "r"}))

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
	require.NoError(t, storeA.SaveRun(ctx, coordinator.RunState{ID: "r", Message: "a"}))

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

	err = storeA.SaveRun(ctx, coordinator.RunState{ID: "r", Message: "stale"})
	require.ErrorIs(t, err, postgres.ErrNotLeader)
	v, r := version(1, "r")
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
