// Package mem is an in-memory coordinator.Store for the simulator and tests.
package mem

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/fedprop/fedprop/coordinator"
)

// Store keeps runs and versions in maps. It is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	runs     map[string]coordinator.RunState
	order    []string
	versions []coordinator.ModelVersion
}

// New returns an empty store.
func New() *Store { return &Store{runs: map[string]coordinator.RunState{}} }

// SaveRun implements coordinator.Store.
func (s *Store) SaveRun(_ context.Context, r coordinator.RunState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saveRun(r)
	return nil
}

func (s *Store) saveRun(r coordinator.RunState) {
	if _, ok := s.runs[r.ID]; !ok {
		s.order = append(s.order, r.ID)
	}
	s.runs[r.ID] = r
}

// Run implements coordinator.Store.
func (s *Store) Run(_ context.Context, id string) (coordinator.RunState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runs[id]
	if !ok {
		return coordinator.RunState{}, fmt.Errorf("run %q: %w", id, coordinator.ErrNotFound)
	}
	return r, nil
}

// Runs implements coordinator.Store.
func (s *Store) Runs(context.Context) ([]coordinator.RunState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]coordinator.RunState, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.runs[id])
	}
	return out, nil
}

// Commit implements coordinator.Store.
func (s *Store) Commit(_ context.Context, v coordinator.ModelVersion, r coordinator.RunState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var latest uint64
	if n := len(s.versions); n > 0 {
		latest = s.versions[n-1].Version
	}
	lastRound := s.runs[r.ID].LastRound
	if err := coordinator.CheckCommit(latest, lastRound, v, r); err != nil {
		return err
	}
	s.versions = append(s.versions, v)
	s.saveRun(r)
	return nil
}

// Version implements coordinator.Store.
func (s *Store) Version(_ context.Context, version uint64) (coordinator.ModelVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := slices.BinarySearchFunc(s.versions, version, func(v coordinator.ModelVersion, n uint64) int {
		return cmpUint(v.Version, n)
	})
	if !ok {
		return coordinator.ModelVersion{}, fmt.Errorf("version %d: %w", version, coordinator.ErrNotFound)
	}
	return s.versions[i], nil
}

// Latest implements coordinator.Store.
func (s *Store) Latest(context.Context) (coordinator.ModelVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.versions) == 0 {
		return coordinator.ModelVersion{}, fmt.Errorf("latest version: %w", coordinator.ErrNotFound)
	}
	return s.versions[len(s.versions)-1], nil
}

// Versions implements coordinator.Store.
func (s *Store) Versions(context.Context) ([]coordinator.ModelVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.versions), nil
}

// Close implements coordinator.Store.
func (s *Store) Close() error { return nil }

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
