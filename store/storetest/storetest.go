// Package storetest is the conformance suite every coordinator.Store must pass.
package storetest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
)

// Run exercises a store made fresh by newStore for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) coordinator.Store) {
	ctx := context.Background()
	version := func(n uint64, run string, round int) (coordinator.ModelVersion, coordinator.RunState) {
		v := coordinator.ModelVersion{Version: n, Parent: n - 1, RunID: run, Round: round, Weights: []float64{float64(n), 0.1 / 3}}
		r := coordinator.RunState{ID: run, Status: coordinator.RunTraining, LastRound: round, LatestVersion: n}
		return v, r
	}

	t.Run("empty store reports not found", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Latest(ctx)
		require.ErrorIs(t, err, coordinator.ErrNotFound)
		_, err = s.Version(ctx, 1)
		require.ErrorIs(t, err, coordinator.ErrNotFound)
		_, err = s.Run(ctx, "nope")
		require.ErrorIs(t, err, coordinator.ErrNotFound)
		vs, err := s.Versions(ctx)
		require.NoError(t, err)
		assert.Empty(t, vs)
	})

	t.Run("runs round-trip in creation order", func(t *testing.T) {
		s := newStore(t)
		require.NoError(t, s.SaveRun(ctx, coordinator.RunState{ID: "b", Status: coordinator.RunWaiting}))
		require.NoError(t, s.SaveRun(ctx, coordinator.RunState{ID: "a", Status: coordinator.RunStats}))
		require.NoError(t, s.SaveRun(ctx, coordinator.RunState{ID: "b", Status: coordinator.RunTraining, Message: "x"}))
		runs, err := s.Runs(ctx)
		require.NoError(t, err)
		require.Len(t, runs, 2)
		assert.Equal(t, "b", runs[0].ID)
		assert.Equal(t, coordinator.RunTraining, runs[0].Status)
		assert.Equal(t, "a", runs[1].ID)
	})

	t.Run("commits are sequential, exact and never duplicated", func(t *testing.T) {
		s := newStore(t)
		require.NoError(t, s.SaveRun(ctx, coordinator.RunState{ID: "r"}))
		for n := uint64(1); n <= 3; n++ {
			v, r := version(n, "r", int(n))
			require.NoError(t, s.Commit(ctx, v, r))
		}
		v, r := version(3, "r", 3)
		require.ErrorIs(t, s.Commit(ctx, v, r), coordinator.ErrConflict, "the same version twice")
		v, r = version(5, "r", 4)
		require.ErrorIs(t, s.Commit(ctx, v, r), coordinator.ErrConflict, "a skipped version")
		v, r = version(4, "r", 5)
		require.ErrorIs(t, s.Commit(ctx, v, r), coordinator.ErrConflict, "a skipped round")

		latest, err := s.Latest(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint64(3), latest.Version)
		assert.Equal(t, []float64{3, 0.1 / 3}, latest.Weights, "floats survive exactly")
		got, err := s.Version(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, 2, got.Round)
		all, err := s.Versions(ctx)
		require.NoError(t, err)
		require.Len(t, all, 3)
		run, err := s.Run(ctx, "r")
		require.NoError(t, err)
		assert.Equal(t, 3, run.LastRound)
		assert.Equal(t, uint64(3), run.LatestVersion)
	})

	t.Run("versions continue across runs", func(t *testing.T) {
		s := newStore(t)
		v, r := version(1, "first", 1)
		require.NoError(t, s.Commit(ctx, v, r))
		v, r = version(2, "second", 1)
		require.NoError(t, s.Commit(ctx, v, r))
		latest, err := s.Latest(ctx)
		require.NoError(t, err)
		assert.Equal(t, "second", latest.RunID)
	})
}
