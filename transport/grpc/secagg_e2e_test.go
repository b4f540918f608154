package grpctransport_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// recorder keeps, per client, the plaintext train sums each client computed (before
// encryption) and which of its results the coordinator accepted.
type recorder struct {
	mu       sync.Mutex
	plain    map[string][]float64 // task id -> plaintext sum
	accepted map[string]bool      // task id -> accepted
	round1   map[string]string    // client -> its round-1 train task id
}

// conn wraps a client's connection to record accepted submissions.
type recordingConn struct {
	client.Coordinator
	rec *recorder
}

func (c recordingConn) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	dup, err := c.Coordinator.SubmitResult(ctx, r)
	if err == nil {
		c.rec.mu.Lock()
		c.rec.accepted[r.TaskID] = true
		c.rec.mu.Unlock()
	}
	return dup, err
}

// TestSecureAggregationSurvivesDropoutsOverGRPC: five branches, all on the committee, T=3.
// One member dies while training round 1 and another while decrypting round 1's aggregate;
// the round still commits the exact aggregate of the updates that arrived.
func TestSecureAggregationSurvivesDropoutsOverGRPC(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := synth.Config{Branches: 5, CustomersPerBranch: 200, Seed: 21}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var committee []string
	for _, b := range branches {
		committee = append(committee, b.Name)
	}
	rc := coordinator.RunConfig{
		ID: "he-dropout", Rounds: 2, MinClients: 5, MinCohort: 5, Quorum: 3, RoundDeadline: 1500 * time.Millisecond,
		MaxAttempts: 5, Seed: 3, Strategy: strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: committee, Threshold: 3, MinContributors: 2},
	}.WithDefaults()
	f := startFed(t, rc, schema)

	rec := &recorder{plain: map[string][]float64{}, accepted: map[string]bool{}, round1: map[string]string{}}
	trainVictim, decryptVictim := committee[4], committee[0]
	var (
		wg             sync.WaitGroup
		diedDecrypting atomic.Bool
	)
	defer wg.Wait()
	for _, b := range branches {
		agentCtx, kill := context.WithCancel(ctx)
		defer kill()
		name := b.Name
		identity, err := client.StateDir(filepath.Join(dir, name)).Identity()
		require.NoError(t, err)
		member, err := client.NewMember(client.MemberConfig{MinContributors: 2, Identity: identity,
			Persist: client.StateDir(filepath.Join(dir, name)).SaveMember})
		require.NoError(t, err)
		protector := client.ProtectorFunc(func(_ context.Context, tk task.Task, values []float64) (task.Vector, error) {
			if tk.Kind == task.KindTrain {
				if name == trainVictim && tk.Round == 1 {
					kill() // dies in the middle of training
					return task.Vector{}, context.Canceled
				}
				rec.mu.Lock()
				rec.plain[tk.ID] = slices.Clone(values)
				if tk.Round == 1 {
					rec.round1[name] = tk.ID
				}
				rec.mu.Unlock()
			}
			return task.Vector{Plain: values}, nil
		})
		session, err := client.NewSession(name, schema, b.Train, b.Test, client.SessionOptions{Protector: protector, Member: member, RequireEncryption: true})
		require.NoError(t, err)
		conn, err := grpctransport.Dial(f.addr)
		require.NoError(t, err)
		defer conn.Close()
		var c client.Coordinator = recordingConn{Coordinator: grpctransport.NewClient(conn), rec: rec}
		if name == decryptVictim {
			c = dieOnDecrypt{Coordinator: c, kill: kill, fired: &diedDecrypting}
		}
		agent := client.NewAgent(c, session, client.AgentConfig{PollWait: 200 * time.Millisecond, MinBackoff: 20 * time.Millisecond,
			MaxBackoff: 100 * time.Millisecond, Logger: quietLogger()})
		wg.Add(1)
		go func() { defer wg.Done(); _ = agent.Run(agentCtx) }()
	}

	require.Eventually(t, func() bool {
		r, err := f.store.Run(ctx, "he-dropout")
		return err == nil && r.Status.Finished()
	}, 90*time.Second, 20*time.Millisecond)
	run, err := f.store.Run(ctx, "he-dropout")
	require.NoError(t, err)
	require.Equal(t, coordinator.RunCompleted, run.Status, run.Message)
	require.True(t, diedDecrypting.Load(), "a member of the first active set died on its decrypt task")
	require.NotNil(t, run.SecAgg)
	assert.True(t, run.SecAgg.Ready)

	versions, err := f.store.Versions(ctx)
	require.NoError(t, err)
	require.Len(t, versions, 2)
	v1 := versions[0]

	// The exact aggregate of the round-1 updates that arrived: FedAvg of their plaintext sums.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var sum []float64
	contributors := 0
	for _, name := range committee {
		id, ok := rec.round1[name]
		if !ok || !rec.accepted[id] {
			continue
		}
		contributors++
		if sum == nil {
			sum = make([]float64, len(rec.plain[id]))
		}
		for k, x := range rec.plain[id] {
			sum[k] += x
		}
	}
	assert.NotContains(t, rec.round1, trainVictim, "the member killed in training sent nothing")
	require.Equal(t, 4, contributors)
	assert.Equal(t, contributors, v1.Contributors)
	n := sum[task.TrainCountIndex]
	assert.InDelta(t, n, v1.Examples, 1e-6)
	for k := range v1.Weights {
		want := sum[task.TrainDeltaStart+k] / n // global starts at zero: w1 = mean update
		assert.InDelta(t, want, v1.Weights[k], 1e-9, "weight %d", k)
	}
	assert.False(t, math.IsNaN(v1.Evaluation.AUC))
}

// dieOnDecrypt kills its client when a decrypt task arrives, before it answers.
type dieOnDecrypt struct {
	client.Coordinator
	kill  func()
	fired *atomic.Bool
}

func (d dieOnDecrypt) PollTask(ctx context.Context, id string, wait time.Duration) (task.Task, bool, error) {
	t, ok, err := d.Coordinator.PollTask(ctx, id, wait)
	if ok && t.Kind == task.KindDecrypt && t.Decrypt != nil && t.Decrypt.Purpose == task.KindTrain {
		d.fired.Store(true)
		d.kill()
		return task.Task{}, false, fmt.Errorf("client died: %w", context.Canceled)
	}
	return t, ok, err
}
