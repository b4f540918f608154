package coordinator_test

import (
	"context"
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
