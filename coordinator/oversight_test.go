package coordinator_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/audit"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/fairness"
	"github.com/fedprop/fedprop/store/mem"
)

func TestAFlaggedVersionNeedsAnOverrideThatRecordsItsReason(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	log := &audit.MemStore{}
	srv, err := coordinator.NewServer(ctx, store, nil, coordinator.ServerConfig{Audit: log})
	require.NoError(t, err)
	flagged := &fairness.Verdict{Flagged: true, Violations: []fairness.Violation{{Attribute: "age", Metric: fairness.MetricDemographicParity,
		Threshold: 0.5, Gap: 0.31, Limit: 0.2, MaxGroup: ">=60", MinGroup: "30-60"}}}
	require.NoError(t, store.Commit(ctx, coordinator.ModelVersion{Version: 1, RunID: "r", Round: 1, Weights: []float64{0}, FairnessVerdict: flagged},
		coordinator.RunState{ID: "r", LastRound: 1, LatestVersion: 1}))
	require.NoError(t, store.Commit(ctx, coordinator.ModelVersion{Version: 2, RunID: "r", Round: 2, Weights: []float64{0}},
		coordinator.RunState{ID: "r", LastRound: 2, LatestVersion: 2}))
	who := coordinator.Reviewer{Name: "risk-officer", Role: "approver"}

	_, err = srv.Approve(ctx, 1, who, "fine", false)
	require.ErrorIs(t, err, coordinator.ErrFlagged)
	assert.Contains(t, err.Error(), "age: demographic_parity_difference 0.3100")
	assert.Equal(t, "candidate", srv.Status(1).Status, "a refused approval changes nothing")

	_, err = srv.Approve(ctx, 2, who, "fine", true)
	require.ErrorIs(t, err, coordinator.ErrInvalid, "an override of a version that is not flagged is refused")

	r, err := srv.Approve(ctx, 1, who, "gap driven by 337 customers over 60; campaign excludes them", true)
	require.NoError(t, err)
	assert.Equal(t, "approved", r.Status)
	assert.True(t, r.Override)
	entries, err := log.Entries(ctx)
	require.NoError(t, err)
	last := entries[len(entries)-1]
	assert.Equal(t, audit.ActionOverride, last.Action)
	assert.Equal(t, "version 1", last.Subject)
	assert.Contains(t, last.Reason, "campaign excludes them")

	// A restarted coordinator reads the decisions back from the audit log.
	again, err := coordinator.NewServer(ctx, store, nil, coordinator.ServerConfig{Audit: log})
	require.NoError(t, err)
	assert.Equal(t, "approved", again.Status(1).Status)
	assert.True(t, again.Status(1).Override)
	v, err := again.ReleasedVersion(ctx, 0, false)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), v, "the latest approved, not the newer candidate")
}
