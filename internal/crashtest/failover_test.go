package crashtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/store/postgres/pgtest"
	"github.com/fedprop/fedprop/task"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// gatedConn holds a client's results for rounds after the first until gate is closed.
type gatedConn struct {
	client.Coordinator
	gate chan struct{}
}

func (g *gatedConn) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	if r.Round > 1 {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return g.Coordinator.SubmitResult(ctx, r)
}

// Two coordinator replicas share one PostgreSQL database. The first leads (it holds the
// advisory lock) and listens; the second waits, not listening. The clients are given both
// addresses and connect to whichever accepts (dialAny). The leader is killed mid-run: the
// follower takes the lock, starts listening, resumes from the last committed version, and the
// run completes with every version committed exactly once.
func TestReplicaFailover(t *testing.T) {
	pgtest.ServerDSN(t) // skip at once, not three times, when there is no server
	f := newFixture(t)
	reference := f.crashRun(t, boltBackend(), nil)
	tests := []struct {
		name  string
		crash string // the leader's crash point; empty: the test kills it after version 1
	}{
		{"leader killed by SIGKILL after version 1", ""},
		{"leader killed during its second commit", "commit:2"},
		{"leader killed while collecting round 3", "result.train:8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dsn := pgtest.DSN(t)
			addrA, addrB := freeAddr(t), freeAddr(t)
			a := f.startCoordinator(t, f.writeConfig(t, dir, "replica-a", dsn, addrA), tt.crash)
			require.Eventually(t, func() bool { return strings.Contains(a.out.String(), `msg=leading`) },
				waitLimit, 10*time.Millisecond, "replica a leads:\n%s", a.out)
			b := f.startCoordinator(t, f.writeConfig(t, dir, "replica-b", dsn, addrB), "")
			require.Eventually(t, func() bool { return strings.Contains(b.out.String(), "another replica leads") },
				waitLimit, 10*time.Millisecond, "replica b follows:\n%s", b.out)

			// Without a crash point the test kills the leader itself, once version 1 is
			// committed; until then the clients hold back their round-2 results, so that the
			// leader cannot finish the run first.
			gate := make(chan struct{})
			if tt.crash != "" {
				close(gate)
			}
			cl := f.startWrappedClients(t, func(c client.Coordinator) client.Coordinator { return &gatedConn{Coordinator: c, gate: gate} }, addrA, addrB)
			defer cl.stop()
			led := newLedger()
			if tt.crash == "" {
				// The leader is live: only probe for version 1 here (reading the versions and
				// then the run record is not one transaction, so a commit may fall between the
				// two reads); the ledger checks the store once the leader is dead.
				require.Eventually(t, func() bool { return latestVersion(t, dsn) >= 1 },
					waitLimit, 20*time.Millisecond, "version 1 committed")
				a.kill()
				close(gate)
			} else {
				select {
				case <-a.exited:
				case <-time.After(waitLimit):
					t.Fatalf("the leader was not killed at %s:\n%s", tt.crash, a.out)
				}
				require.True(t, a.killedAtCrashPoint(), a.out.String())
			}
			// Replica b may be committing already: probe, and let the ledger check at the end.
			before := latestVersion(t, dsn)
			require.Less(t, before, uint64(rounds), "the leader died before the run completed")

			conn := dialAny(t, addrA, addrB)
			defer conn.Close()
			require.Equal(t, completed, waitExitOrCompletion(t, b, grpctransport.NewAdminClient(conn)), "replica b exited:\n%s", b.out)
			assert.Contains(t, b.out.String(), "resuming run")
			cl.stop()
			b.stop(t)

			got := led.finish(t, postgresBackend(), dsn)
			assertSameModel(t, reference, got)

			ctx := context.Background()
			admin, err := pgx.Connect(ctx, dsn)
			require.NoError(t, err)
			defer admin.Close(ctx)
			var (
				term   int64
				holder string
			)
			require.NoError(t, admin.QueryRow(ctx, `SELECT term, holder FROM fedprop_leader`).Scan(&term, &holder))
			assert.Equal(t, int64(2), term, "two elections: a, then b")
			assert.Equal(t, "replica-b", holder)
		})
	}
}

// latestVersion is the newest committed version in the PostgreSQL store (0 when none).
func latestVersion(t *testing.T, dsn string) uint64 {
	t.Helper()
	s := postgresBackend().open(t, dsn)
	defer func() { require.NoError(t, s.Close()) }()
	v, err := s.Latest(context.Background())
	if err != nil {
		return 0
	}
	return v.Version
}
