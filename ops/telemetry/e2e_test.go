package telemetry_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/ops/telemetry"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// federation is a coordinator wired as `fedprop coordinator --metrics-listen` wires it (its
// driver reporting to the metrics, their interceptors first on its gRPC server), on loopback
// sockets, with clients whose agents talk to it over gRPC.
type federation struct {
	t       *testing.T
	metrics *telemetry.CoordinatorMetrics
	store   *mem.Store
	addr    string // gRPC
	url     string // the metrics endpoint
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startFederation(t *testing.T, rc coordinator.RunConfig, schema *dataset.Schema) *federation {
	t.Helper()
	require.NoError(t, rc.Validate())
	f := &federation{t: t, metrics: telemetry.NewCoordinatorMetrics(), store: mem.New()}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := coordinator.NewServer(ctx, f.store, &coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: []byte("synthetic")},
		coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: quietLogger(), Observer: f.metrics})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.addr = lis.Addr().String()
	gs := grpctransport.NewGRPCServer(srv, "telemetry-test", nil, f.metrics.ServerOptions()...)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); gs.Stop(); wg.Wait() })
	f.url = serve(t, f.metrics.Handler()) + telemetry.Path
	return f
}

// runAgent runs session's agent over gRPC through wrap (nil: none) until the test ends.
func (f *federation) runAgent(session *client.Session, wrap func(client.Coordinator) client.Coordinator) {
	t := f.t
	conn, err := grpctransport.Dial(f.addr)
	require.NoError(t, err)
	var c client.Coordinator = grpctransport.NewClient(conn)
	if wrap != nil {
		c = wrap(c)
	}
	agent := client.NewAgent(c, session, client.AgentConfig{PollWait: 200 * time.Millisecond, MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = agent.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; _ = conn.Close() })
}

func (f *federation) waitFinished(run string) coordinator.RunState {
	t := f.t
	require.Eventually(t, func() bool {
		r, err := coordinator.Records{Store: f.store}.Run(context.Background(), run)
		return err == nil && r.Status.Finished()
	}, 120*time.Second, 20*time.Millisecond)
	r, err := coordinator.Records{Store: f.store}.Run(context.Background(), run)
	require.NoError(t, err)
	return r
}

// coordinatorValue reads one of the coordinator's series.
func (f *federation) coordinatorValue(name string, labels ...string) float64 {
	return value(f.t, f.metrics.Registry(), "fedprop_coordinator_"+name, labels...)
}

// connFunc adapts the agent's calls for a test: submit replaces SubmitResult.
type connFunc struct {
	client.Coordinator
	submit func(ctx context.Context, r task.Result) (bool, error)
}

func (c connFunc) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	return c.submit(ctx, r)
}

// TestCoordinatorMetricsFollowARunOverGRPC: three branches train two rounds over gRPC, one of
// them first sending a train result outside the run's bounds; after the run, a stale, a
// repeated, a changed and an unknown client's result. The registry counts each where it
// happened, and the metrics endpoint serves the same counts over HTTP.
func TestCoordinatorMetricsFollowARunOverGRPC(t *testing.T) {
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 300, Seed: 11}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	rc := coordinator.RunConfig{ID: "metrics", Rounds: 2, MinClients: 3, MinCohort: 3, Quorum: 3, RoundDeadline: 20 * time.Second, Seed: 5,
		Strategy: strategy.Config{Name: "fedavg"}}.WithDefaults()
	f := startFederation(t, rc, schema)
	clientMetrics := telemetry.NewClientMetrics()

	var (
		mu       sync.Mutex
		last     task.Result // branch 0's last accepted result
		tampered bool
	)
	for i, b := range branches {
		session, err := client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{})
		require.NoError(t, err)
		f.runAgent(session, func(c client.Coordinator) client.Coordinator {
			c = clientMetrics.Instrument(c)
			if i != 0 {
				return c
			}
			// Branch 0 first sends its first train result with a count above the records it
			// announced, then the result itself.
			return connFunc{Coordinator: c, submit: func(ctx context.Context, r task.Result) (bool, error) {
				mu.Lock()
				first := r.Kind == task.KindTrain && !tampered && r.Sum.Index == nil
				tampered = tampered || first
				mu.Unlock()
				if first {
					bad := r
					bad.Sum.Plain = slices.Clone(r.Sum.Plain)
					bad.Sum.Plain[task.TrainCountIndex] = 1e9
					_, err := c.SubmitResult(ctx, bad)
					assert.ErrorIs(t, err, task.ErrInvalid, "a count above the records announced")
				}
				dup, err := c.SubmitResult(ctx, r)
				if err == nil {
					mu.Lock()
					last = r
					mu.Unlock()
				}
				return dup, err
			}}
		})
	}
	run := f.waitFinished("metrics")
	require.Equal(t, coordinator.RunCompleted, run.Status, run.Message)

	// Results the coordinator refuses after the run, each for its own reason.
	conn, err := grpctransport.Dial(f.addr)
	require.NoError(t, err)
	defer conn.Close()
	direct := grpctransport.NewClient(conn)
	mu.Lock()
	repeat := last
	mu.Unlock()
	require.NotEmpty(t, repeat.TaskID)
	changed := repeat
	changed.Sum.Plain = slices.Clone(repeat.Sum.Plain)
	changed.Sum.Plain[0]++
	stale := repeat
	stale.RunID = "another-run"
	stranger := repeat
	stranger.ClientID = "branch-unknown"
	for _, r := range []task.Result{changed, stale, stranger} {
		_, err := direct.SubmitResult(context.Background(), r)
		require.Error(t, err)
	}
	dup, err := direct.SubmitResult(context.Background(), repeat)
	require.NoError(t, err)
	require.True(t, dup)

	submit := pb.ClientService_ServiceDesc.ServiceName
	cases := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"rounds_committed_total", nil, 2},
		{"runs_finished_total", []string{"status", "completed"}, 1},
		{"phase", []string{"phase", "done"}, 1},
		{"phase", []string{"phase", "train"}, 0},
		{"round", nil, 2},
		{"clients_registered", nil, 3},
		{"results_accepted_total", []string{"kind", "stats"}, 3},
		{"results_accepted_total", []string{"kind", "train"}, 6},
		{"results_accepted_total", []string{"kind", "evaluate"}, 6},
		{"results_rejected_total", []string{"reason", "bounds"}, 1},
		{"results_rejected_total", []string{"reason", "invalid"}, 1},
		{"results_rejected_total", []string{"reason", "stale"}, 1},
		{"results_rejected_total", []string{"reason", "unknown_client"}, 1},
		{"results_rejected_total", []string{"reason", "duplicate"}, 1},
		{"aggregates_discarded_total", nil, 0},
		{"phase_failures_total", nil, 0},
		{"audit_entries_total", []string{"action", "run.start"}, 1},
		{"audit_entries_total", []string{"action", "model.commit"}, 2},
		{"audit_entries_total", []string{"action", "run.stop"}, 1},
		{"rpcs_handled_total", []string{"method", "/" + submit + "/SubmitResult", "code", "InvalidArgument"}, 2},    // out of bounds, changed
		{"rpcs_handled_total", []string{"method", "/" + submit + "/SubmitResult", "code", "FailedPrecondition"}, 2}, // stale, unknown client
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, f.coordinatorValue(tc.name, tc.labels...), "%s%v", tc.name, tc.labels)
	}
	assert.GreaterOrEqual(t, f.coordinatorValue("store_commit_seconds"), 3.0, "the run's start, its two commits")
	assert.Positive(t, f.coordinatorValue("rpc_duration_seconds", "method", "/"+submit+"/PollTask"))
	assert.Equal(t, -1.0, f.coordinatorValue("epsilon_spent", "run", "metrics"), "no privacy spent without differential privacy")

	// The clients' side of the same run.
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tasks_done_total", []string{"kind", "train"}, 6},
		{"tasks_done_total", []string{"kind", "stats"}, 3},
		{"results_rejected_total", []string{"reason", "invalid"}, 1},
		{"tasks_declined_total", []string{"kind", "train"}, 0},
	} {
		assert.Equal(t, tc.want, value(t, clientMetrics.Registry(), "fedprop_client_"+tc.name, tc.labels...), "%s%v", tc.name, tc.labels)
	}

	// And over HTTP, as Prometheus scrapes them.
	code, body := get(t, f.url)
	require.Equal(t, 200, code)
	for _, line := range []string{
		"fedprop_coordinator_rounds_committed_total 2",
		`fedprop_coordinator_results_rejected_total{reason="bounds"} 1`,
		`fedprop_coordinator_results_accepted_total{kind="train"} 6`,
		`fedprop_coordinator_phase{phase="done"} 1`,
		"fedprop_coordinator_aggregates_discarded_total 0",
	} {
		assert.Contains(t, body, line+"\n")
	}
	for _, b := range branches {
		assert.NotContains(t, body, b.Name, "no metric names a client")
	}
}

// TestAnImplausibleAggregateIsDiscardedAndCounted: in he mode a client sends random ciphertext
// words in its first train result. No single result can be read, so the coordinator accepts
// it; the decrypted aggregate is implausible and discarded, the phase retried, and the round
// commits from the next attempt. The discard is counted, as the alert on it needs, and served.
func TestAnImplausibleAggregateIsDiscardedAndCounted(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Config{Branches: 4, CustomersPerBranch: 300, Seed: 12}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var committee []string
	for _, b := range branches[:3] {
		committee = append(committee, b.Name)
	}
	evil := branches[3].Name
	rc := coordinator.RunConfig{ID: "poisoned", Rounds: 1, MinClients: 4, MinCohort: 4, Quorum: 3, MaxAttempts: 3, RoundDeadline: 30 * time.Second, Seed: 3,
		Strategy:          strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: committee, Threshold: 2, MinContributors: 2}}.WithDefaults()
	f := startFederation(t, rc, schema)
	clientMetrics := telemetry.NewClientMetrics()

	var (
		mu       sync.Mutex
		poisoned bool
	)
	random := rand.New(rand.NewPCG(1, 2))
	for _, b := range branches {
		opts := client.SessionOptions{RequireEncryption: true}
		if b.Name != evil {
			identity, err := client.StateDir(filepath.Join(dir, b.Name)).Identity()
			require.NoError(t, err)
			member, err := client.NewMember(client.MemberConfig{MinContributors: 2, Identity: identity})
			require.NoError(t, err)
			opts.Member = member
		}
		session, err := client.NewSession(b.Name, schema, b.Train, b.Test, opts)
		require.NoError(t, err)
		name := b.Name
		f.runAgent(session, func(c client.Coordinator) client.Coordinator {
			c = clientMetrics.Instrument(c)
			if name != evil {
				return c
			}
			return connFunc{Coordinator: c, submit: func(ctx context.Context, r task.Result) (bool, error) {
				mu.Lock()
				if r.Kind == task.KindTrain && !poisoned && len(r.Sum.Ciphertext) > 0 {
					// Random words below every modulus, behind a valid header.
					ct := slices.Clone(r.Sum.Ciphertext)
					for i := 32; i+8 <= len(ct); i += 8 {
						binary.LittleEndian.PutUint64(ct[i:], random.Uint64()>>11)
					}
					r.Sum.Ciphertext = ct
					poisoned = true
				}
				mu.Unlock()
				return c.SubmitResult(ctx, r)
			}}
		})
	}
	run := f.waitFinished("poisoned")
	require.Equal(t, coordinator.RunCompleted, run.Status, run.Message)
	mu.Lock()
	require.True(t, poisoned)
	mu.Unlock()
	versions, err := coordinator.Records{Store: f.store}.Versions(context.Background())
	require.NoError(t, err)
	require.Len(t, versions, 1, "the poisoned attempt was never committed")

	assert.Equal(t, 1.0, f.coordinatorValue("aggregates_discarded_total"))
	assert.GreaterOrEqual(t, f.coordinatorValue("phase_failures_total"), 1.0, "the discarded aggregate failed its phase")
	assert.Equal(t, 1.0, f.coordinatorValue("rounds_committed_total"))
	assert.Equal(t, 0.0, f.coordinatorValue("results_rejected_total", "reason", "bounds"), "an encrypted result cannot be checked alone")
	assert.Positive(t, f.coordinatorValue("results_accepted_total", "kind", "decrypt"))
	assert.Positive(t, f.coordinatorValue("results_accepted_total", "kind", "keygen"))
	assert.Positive(t, value(t, clientMetrics.Registry(), "fedprop_client_tasks_done_total", "kind", "decrypt"))

	code, body := get(t, f.url)
	require.Equal(t, 200, code)
	assert.Contains(t, body, "fedprop_coordinator_aggregates_discarded_total 1\n")
}
