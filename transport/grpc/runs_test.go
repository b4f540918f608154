package grpctransport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// TestRunsOneAfterAnotherInOneStore drives several runs through one coordinator and one store
// over gRPC, as an operator would: a second run after the first, a third refused while the
// second is active, then a third that is stopped mid-phase and resumed. Versions are numbered
// in one sequence across runs with each run's lineage its own; every version's model card
// names its run; the audit log records each start, commit and stop, and verifies.
func TestRunsOneAfterAnotherInOneStore(t *testing.T) {
	f := newFederation(t, 2)
	f.loader = func(doc []byte) (coordinator.RunSpec, error) {
		var d struct {
			ID     string `yaml:"id"`
			Rounds int    `yaml:"rounds"`
		}
		if err := yaml.Unmarshal(doc, &d); err != nil {
			return coordinator.RunSpec{}, err
		}
		rc := f.spec.Config
		rc.ID, rc.Rounds = d.ID, d.Rounds
		return coordinator.RunSpec{Config: rc, Schema: f.schema, SchemaYAML: f.doc}, nil
	}
	f.startCoordinator()
	defer f.stop()
	f.startClients()
	f.waitCompleted(60 * time.Second)

	ctx := context.Background()
	admin := grpctransport.NewAdminClient(f.dial())
	state := func(id string) func() bool {
		return func() bool {
			r, err := admin.GetRun(ctx, id)
			return err == nil && r.GetState() == string(coordinator.RunCompleted)
		}
	}
	id, err := admin.StartRun(ctx, []byte("id: second\nrounds: 2\n"))
	require.NoError(t, err)
	assert.Equal(t, "second", id)
	_, err = admin.StartRun(ctx, []byte("id: third\nrounds: 2\n"))
	require.Error(t, err, "a run is active")
	s, _ := status.FromError(err)
	assert.Equal(t, codes.AlreadyExists, s.Code())
	assert.Contains(t, s.Message(), "run second is")
	require.Eventually(t, state("second"), time.Minute, 20*time.Millisecond)
	_, err = admin.StartRun(ctx, []byte("id: second\nrounds: 2\n"))
	require.Error(t, err, "a finished run is never re-opened")
	assert.Contains(t, err.Error(), "give the new run another run.id")

	// The clients go quiet: the third run's first phase goes out to the three still counted
	// live, and stays there; its status says so.
	f.stopClients()
	_, err = admin.StartRun(ctx, []byte("id: third\nrounds: 2\n"))
	require.NoError(t, err)
	r, err := admin.GetRun(ctx, "third")
	require.NoError(t, err)
	assert.True(t, r.GetActive())
	assert.Equal(t, "stats", r.GetPhase())
	assert.EqualValues(t, 3, r.GetMinClients())
	assert.EqualValues(t, 3, r.GetRegisteredClients())
	assert.EqualValues(t, 3, r.GetCohort())
	assert.EqualValues(t, 3, r.GetOutstanding())
	assert.Zero(t, r.GetResults())
	assert.Positive(t, r.GetDeadlineMillis())
	assert.Equal(t, coordinator.DPNone, r.GetPrivacyMechanism())

	stopped, err := admin.StopRun(ctx, "third", "maintenance window")
	require.NoError(t, err)
	assert.Equal(t, string(coordinator.RunStopped), stopped.GetState())
	assert.False(t, stopped.GetActive())
	assert.Contains(t, stopped.GetMessage(), "maintenance window")
	_, err = admin.StopRun(ctx, "third", "again")
	require.Error(t, err, "a stopped run cannot be stopped again")
	runs, err := admin.ListRuns(ctx)
	require.NoError(t, err)
	require.Len(t, runs, 3)
	for i, want := range [][2]string{{"e2e", "completed"}, {"second", "completed"}, {"third", "stopped"}} {
		assert.Equal(t, want[0], runs[i].GetRunId())
		assert.Equal(t, want[1], runs[i].GetState())
	}

	// Resumed explicitly, with the clients back, it trains to the end.
	_, err = admin.StartRun(ctx, []byte("id: third\nrounds: 2\n"))
	require.NoError(t, err)
	f.startClients()
	defer f.stopClients()
	require.Eventually(t, state("third"), time.Minute, 20*time.Millisecond)

	versions, err := f.store.Versions(ctx)
	require.NoError(t, err)
	require.Len(t, versions, 6)
	for i, want := range []struct {
		run    string
		round  int
		parent uint64
	}{{"e2e", 1, 0}, {"e2e", 2, 1}, {"second", 1, 0}, {"second", 2, 3}, {"third", 1, 0}, {"third", 2, 5}} {
		v := versions[i]
		assert.Equal(t, uint64(i+1), v.Version)
		assert.Equal(t, want.run, v.RunID, "version %d", v.Version)
		assert.Equal(t, want.round, v.Round, "version %d", v.Version)
		assert.Equal(t, want.parent, v.Parent, "version %d", v.Version)
		card, err := f.server.ModelCard(ctx, v.Version)
		require.NoError(t, err)
		assert.Equal(t, want.run, card.Lineage.RunID, "version %d's card", v.Version)
	}

	as, ok := f.store.Store.(store.AuditedStore)
	require.True(t, ok)
	_, err = coordinator.VerifyAudit(ctx, as, nil)
	require.NoError(t, err, "the log verifies")
	entries, _, err := f.store.AuditLog(ctx)
	require.NoError(t, err)
	counts := map[audit.Action][]string{}
	for _, e := range entries {
		counts[e.Action] = append(counts[e.Action], e.Subject)
	}
	assert.Equal(t, []string{"e2e", "second", "third", "third"}, counts[audit.ActionRunStart], "each start, and the resume")
	assert.Equal(t, []string{"e2e", "second", "third", "third"}, counts[audit.ActionRunStop], "each completion, and the stop")
	assert.Len(t, counts[audit.ActionCommit], 6)
}
