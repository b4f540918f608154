package coordinator_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
	"github.com/fedprop/fedprop/transport/inmem"
)

// A caller whose context ends while the driver is applying its call hears how the call went:
// the driver has taken it and will persist it, so "cancelled" would be false (and returning
// early let the driver write into the caller's variables after it had gone).
func TestACallTakenByTheDriverIsAnsweredEvenIfItsContextEnds(t *testing.T) {
	cfg := synth.Config{Branches: 2, CustomersPerBranch: 300, Seed: 3}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	doc, err := yaml.Marshal(schema)
	require.NoError(t, err)
	rc := coordinator.RunConfig{ID: "do", Rounds: 1, MinClients: 2, MinCohort: 2, Quorum: 2, RoundDeadline: time.Minute,
		Seed: 1, Strategy: strategy.Config{Name: "fedavg"}}.WithDefaults()
	require.NoError(t, rc.Validate())

	callCtx, cancelCall := context.WithCancel(context.Background())
	defer cancelCall()
	crash := func(point string) {
		if point == "result.stats" {
			// The caller gives up while its result is being applied.
			cancelCall()
			time.Sleep(20 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := coordinator.NewServer(ctx, mem.New(), &coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc},
		coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, CrashPoint: crash})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var sessions []*client.Session
	for _, b := range branches {
		s, err := client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{})
		require.NoError(t, err)
		require.NoError(t, srv.Register(ctx, task.Registration{ClientID: b.Name, IdentityKey: s.IdentityKey(), TrainRecords: s.TrainRows()}))
		sessions = append(sessions, s)
	}
	tk, ok, err := srv.PollTask(ctx, sessions[0].ID(), 5*time.Second)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, task.KindStats, tk.Kind)
	res, _, err := sessions[0].Handle(ctx, tk)
	require.NoError(t, err)

	dup, err := srv.SubmitResult(callCtx, res)
	require.NoError(t, err, "the result was taken and persisted: the caller hears so")
	assert.False(t, dup)
	dup, err = srv.SubmitResult(ctx, res)
	require.NoError(t, err)
	assert.True(t, dup, "and a resubmission is a duplicate")
}

// A store holds many runs: after one finishes, the next (StartRun, a new id) numbers its
// versions after the store's latest and commits every round. It crashed the coordinator with
// "commit version 1: the latest stored version is N: conflict".
func TestASecondRunInTheSameStoreCommits(t *testing.T) {
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 300, Seed: 3}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	doc, err := yaml.Marshal(schema)
	require.NoError(t, err)
	runConfig := func(id string) coordinator.RunConfig {
		rc := coordinator.RunConfig{ID: id, Rounds: 2, MinClients: 3, MinCohort: 3, Quorum: 3, RoundDeadline: time.Minute,
			Seed: 1, Strategy: strategy.Config{Name: "fedavg"}}.WithDefaults()
		require.NoError(t, rc.Validate())
		return rc
	}
	store := mem.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := coordinator.NewServer(ctx, store, &coordinator.RunSpec{Config: runConfig("first"), Schema: schema, SchemaYAML: doc},
		coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	net := inmem.New(srv, inmem.Options{})
	var agents sync.WaitGroup
	for _, b := range branches {
		s, err := client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{})
		require.NoError(t, err)
		a := client.NewAgent(net.Endpoint(b.Name), s, client.AgentConfig{PollWait: 50 * time.Millisecond, MinBackoff: 10 * time.Millisecond,
			MaxBackoff: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		agents.Go(func() { _ = a.Run(ctx) })
	}
	defer agents.Wait()
	defer cancel()
	completed := func(id string) func() bool {
		return func() bool {
			info, err := srv.GetRun(ctx, id)
			return err == nil && info.State.Status == coordinator.RunCompleted
		}
	}
	require.Eventually(t, completed("first"), time.Minute, 10*time.Millisecond)
	require.NoError(t, srv.StartRun(ctx, coordinator.RunSpec{Config: runConfig("second"), Schema: schema, SchemaYAML: doc}))
	var stopped error
	require.Eventually(t, func() bool {
		select {
		case stopped = <-done:
			return true
		default:
		}
		return completed("second")()
	}, time.Minute, 10*time.Millisecond)
	require.NoError(t, stopped, "the coordinator stopped")

	versions, err := coordinator.Records{Store: store}.Versions(ctx)
	require.NoError(t, err)
	require.Len(t, versions, 4)
	for i, want := range []struct {
		run    string
		round  int
		parent uint64
	}{{"first", 1, 0}, {"first", 2, 1}, {"second", 1, 0}, {"second", 2, 3}} {
		v := versions[i]
		assert.Equal(t, uint64(i+1), v.Version)
		assert.Equal(t, want.run, v.RunID, "version %d", v.Version)
		assert.Equal(t, want.round, v.Round, "version %d", v.Version)
		assert.Equal(t, want.parent, v.Parent, "version %d: a run's first version has no parent in another run", v.Version)
	}
}
