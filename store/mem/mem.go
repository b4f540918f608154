// Package mem is an in-memory store.Store for the simulator and tests. It keeps no audit log
// (it is not a store.AuditedStore) and no checksums: nothing it holds can be damaged behind its
// back.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/fedprop/fedprop/store"
)

// Store keeps runs and versions in maps. It is safe for concurrent use. It keeps copies of
// the records written and hands out copies, so that no caller can change what it holds.
type Store struct {
	mu       sync.Mutex
	runs     map[string]store.Run
	order    []string
	versions []store.Version
}

// New returns an empty store.
func New() *Store { return &Store{runs: map[string]store.Run{}} }

func cloneRun(r store.Run) store.Run {
	r.Body = bytes.Clone(r.Body)
	return r
}

func cloneVersion(v store.Version) store.Version {
	v.Body = bytes.Clone(v.Body)
	return v
}

// SaveRun implements store.Store.
func (s *Store) SaveRun(_ context.Context, r store.Run) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saveRun(r)
	return nil
}

func (s *Store) saveRun(r store.Run) {
	if _, ok := s.runs[r.ID]; !ok {
		s.order = append(s.order, r.ID)
	}
	s.runs[r.ID] = cloneRun(r)
}

// Run implements store.Store.
func (s *Store) Run(_ context.Context, id string) (store.Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runs[id]
	if !ok {
		return store.Run{}, fmt.Errorf("run %q: %w", id, store.ErrNotFound)
	}
	return cloneRun(r), nil
}

// Runs implements store.Store.
func (s *Store) Runs(context.Context) ([]store.Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.Run, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, cloneRun(s.runs[id]))
	}
	return out, nil
}

// Commit implements store.Store.
func (s *Store) Commit(_ context.Context, v store.Version, r store.Run) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var latest uint64
	if n := len(s.versions); n > 0 {
		latest = s.versions[n-1].Version
	}
	lastRound := s.runs[r.ID].LastRound
	if err := store.CheckCommit(latest, lastRound, v, r); err != nil {
		return err
	}
	s.versions = append(s.versions, cloneVersion(v))
	s.saveRun(r)
	return nil
}

// Version implements store.Store.
func (s *Store) Version(_ context.Context, version uint64) (store.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := slices.BinarySearchFunc(s.versions, version, func(v store.Version, n uint64) int {
		return cmpUint(v.Version, n)
	})
	if !ok {
		return store.Version{}, fmt.Errorf("version %d: %w", version, store.ErrNotFound)
	}
	return cloneVersion(s.versions[i]), nil
}

// Latest implements store.Store.
func (s *Store) Latest(context.Context) (store.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.versions) == 0 {
		return store.Version{}, fmt.Errorf("latest version: %w", store.ErrNotFound)
	}
	return cloneVersion(s.versions[len(s.versions)-1]), nil
}

// Versions implements store.Store.
func (s *Store) Versions(context.Context) ([]store.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.Version, len(s.versions))
	for i, v := range s.versions {
		out[i] = cloneVersion(v)
	}
	return out, nil
}

// Close implements store.Store.
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
