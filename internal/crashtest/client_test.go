package crashtest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/task"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// errKilled is what the dying client's calls return.
var errKilled = errors.New("client process killed")

// dyingConn passes a client's calls through until the planned moment, then kills the agent
// (cancels its context) from inside the call, as if the process died there.
type dyingConn struct {
	client.Coordinator
	kill func()
	// afterSubmit: die once the result has reached the coordinator, before the reply is
	// read; otherwise die on receiving the task, before computing it.
	afterSubmit bool
	round       int
	kind        task.Kind

	mu   sync.Mutex
	dead bool
	sent *task.Result // the result that reached the coordinator
	got  *task.Task   // the task the client died holding
}

func (d *dyingConn) target(round int, kind task.Kind) bool { return round == d.round && kind == d.kind }

func (d *dyingConn) PollTask(ctx context.Context, id string, wait time.Duration) (task.Task, bool, error) {
	t, ok, err := d.Coordinator.PollTask(ctx, id, wait)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return task.Task{}, false, errKilled
	}
	if err == nil && ok && !d.afterSubmit && d.target(t.Round, t.Kind) {
		d.dead, d.got = true, &t
		d.kill()
		return task.Task{}, false, errKilled
	}
	return t, ok, err
}

func (d *dyingConn) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return false, errKilled
	}
	dup, err := d.Coordinator.SubmitResult(ctx, r)
	if err == nil && d.afterSubmit && d.target(r.Round, r.Kind) {
		d.dead, d.sent = true, &r
		d.kill()
		return false, errKilled
	}
	return dup, err
}

func (d *dyingConn) died() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dead
}

// A client killed in the middle of a task comes back (a new process: a new agent and
// session under the same id) and the run completes with its work counted exactly once.
func TestClientKilledMidTaskRecoversAndIsCountedOnce(t *testing.T) {
	f := newFixture(t)
	reference := f.crashRun(t, boltBackend(), nil)
	tests := []struct {
		name        string
		afterSubmit bool
		round       int
		kind        task.Kind
	}{
		{"killed on receiving its train task", false, 2, task.KindTrain},
		{"killed after its train result arrived, before the reply", true, 2, task.KindTrain},
		{"killed on receiving its evaluate task", false, 1, task.KindEvaluate},
		{"killed after its stats result arrived, before the reply", true, 0, task.KindStats},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			addr := freeAddr(t)
			b := boltBackend()
			store := b.newStore(t, dir)
			c := f.startCoordinator(t, f.writeConfig(t, dir, "coordinator", store, addr), "")
			defer c.kill()

			// Two healthy clients, and branch-000, which dies at the planned moment.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			run := func(ctx context.Context, conn client.Coordinator, s *client.Session) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = client.NewAgent(conn, s, agentConfig()).Run(ctx) // returns ctx's error
				}()
			}
			for _, br := range f.branches[1:] {
				conn := dialAny(t, addr)
				defer conn.Close()
				run(ctx, grpctransport.NewClient(conn), f.session(t, br))
			}
			victim := f.branches[0]
			conn := dialAny(t, addr)
			defer conn.Close()
			vctx, kill := context.WithCancel(ctx)
			dying := &dyingConn{Coordinator: grpctransport.NewClient(conn), kill: kill, afterSubmit: tt.afterSubmit, round: tt.round, kind: tt.kind}
			run(vctx, dying, f.session(t, victim))

			require.Eventually(t, dying.died, waitLimit, 10*time.Millisecond, "the client reached its planned death")
			if tt.afterSubmit {
				// The recovered client retries what it had sent: accepted once, then a duplicate.
				dup, err := grpctransport.NewClient(conn).SubmitResult(ctx, *dying.sent)
				require.NoError(t, err)
				assert.True(t, dup, "the retried result is recognised as already accepted")
			} else {
				require.NotNil(t, dying.got)
			}
			// The restarted client: a new agent and session, same id and data.
			run(ctx, grpctransport.NewClient(conn), f.session(t, victim))

			admin := grpctransport.NewAdminClient(conn)
			require.Equal(t, completed, waitExitOrCompletion(t, c, admin), "coordinator exited:\n%s", c.out)
			cancel()
			wg.Wait()
			c.stop(t)
			got := newLedger().finish(t, b, store)
			assertSameModel(t, reference, got)
		})
	}
}
