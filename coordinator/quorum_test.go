package coordinator_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/task"
)

func TestQuorumState(t *testing.T) {
	for _, tc := range []struct {
		q    coordinator.Quorum
		want coordinator.QuorumState
	}{
		{coordinator.Quorum{Need: 2, Got: 0, Owed: 3}, coordinator.QuorumPending},
		{coordinator.Quorum{Need: 2, Got: 1, Owed: 1}, coordinator.QuorumPending},
		{coordinator.Quorum{Need: 2, Got: 2, Owed: 1}, coordinator.QuorumReached},
		{coordinator.Quorum{Need: 2, Got: 3, Owed: 0}, coordinator.QuorumReached},
		{coordinator.Quorum{Need: 2, Got: 1, Owed: 0}, coordinator.QuorumImpossible},
		{coordinator.Quorum{Need: 3, Got: 0, Owed: 2}, coordinator.QuorumImpossible},
	} {
		assert.Equal(t, tc.want, tc.q.State(), "%+v", tc.q)
	}
	assert.Equal(t, "impossible", coordinator.QuorumImpossible.String())
}

// Two of three clients decline their train task: quorum 2 is out of reach, and the phase is
// retried at once instead of at its deadline.
func TestAQuorumOutOfReachFailsThePhaseWithoutWaitingForTheDeadline(t *testing.T) {
	cfg := tinyConfig()
	cfg.MaxAttempts = 2
	h := toTraining(t, cfg)
	for _, id := range []string{"a", "b"} {
		tk, ok := h.poll(id)
		require.True(t, ok)
		_, err := h.core.Submit(task.Result{ClientID: id, TaskID: tk.ID, RunID: tk.RunID, Round: tk.Round, Kind: tk.Kind, Refusal: "below my floor"})
		require.NoError(t, err)
		h.flush()
	}
	// No tick has passed: the deadline (5 ticks) is far.
	again, ok := h.poll("c")
	require.True(t, ok)
	assert.Contains(t, again.ID, "/a2/", "the round's second attempt")
	assert.Equal(t, 1, again.Round)
	assert.Empty(t, h.commits)
}

// A cohort drawn smaller than the quorum waits for its deadline (more clients may be live by
// the next attempt) instead of spending its attempts at once.
func TestACohortBelowTheQuorumWaitsForItsDeadline(t *testing.T) {
	cfg := tinyConfig()
	cfg.Quorum = 3
	cfg.MinCohort = 2
	cfg.CohortFraction = 0.5
	h := toTraining(t, cfg)
	var held []string
	for _, id := range []string{"a", "b", "c"} {
		if _, ok := h.poll(id); ok {
			held = append(held, id)
		}
	}
	require.Len(t, held, 2, "a cohort of 2 for quorum 3")
	for range 4 {
		h.core.Tick()
		h.flush()
	}
	for _, id := range held {
		tk, ok := h.poll(id)
		require.True(t, ok, "still the first attempt before the deadline")
		assert.Contains(t, tk.ID, "/a1/")
	}
}
