// Package storetest is the conformance suite every coordinator.Store must pass (Run), and
// every coordinator.AuditedStore (RunAudited).
package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/audit"
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

// Backend makes stores for RunAudited.
type Backend struct {
	// New returns a fresh, empty store, closed when t ends.
	New func(t *testing.T) coordinator.AuditedStore
	// Tamper changes, behind the store's back, the stored canonical bytes of one record
	// (coordinator.RecordRun, RecordVersion or RecordAudit, and its key) with edit, leaving its
	// checksum as it was, as a disk fault or a hand edit would; it returns s, reopened if the
	// backend needs that.
	Tamper func(t *testing.T, s coordinator.AuditedStore, kind, key string, edit func(doc []byte) []byte) coordinator.AuditedStore
}

// RunAudited is the conformance suite of a coordinator.AuditedStore: Run's, then the audit
// log written with the state it records, its head, content hashes, and a checksum verified on
// every read of every kind of record.
func RunAudited(t *testing.T, b Backend) {
	Run(t, func(t *testing.T) coordinator.Store { return b.New(t) })
	ctx := context.Background()
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	newLog := func(s coordinator.AuditedStore) *audit.Log {
		entries, head, err := s.AuditLog(ctx)
		require.NoError(t, err)
		require.NoError(t, audit.Verify(entries, &head))
		return audit.NewLog(nil, head, audit.Options{Now: func() time.Time { at = at.Add(time.Second); return at }})
	}
	rec := func(action audit.Action, subject string) audit.Record {
		return audit.Record{Actor: "coordinator", Role: "coordinator", Action: action, Subject: subject}
	}
	commit := func(t *testing.T, s coordinator.AuditedStore, l *audit.Log, n uint64, intercept float64) {
		t.Helper()
		v := coordinator.ModelVersion{Version: n, Parent: n - 1, RunID: "r", Round: int(n), Weights: []float64{intercept, 0.5}, Created: at}
		r := coordinator.RunState{ID: "r", Status: coordinator.RunTraining, LastRound: int(n), LatestVersion: n}
		_, err := l.AppendWith(ctx, []audit.Record{rec(audit.ActionCommit, audit.VersionSubject(n))}, func(es []audit.Entry) error {
			v.AuditHead = audit.HeadOf(es).String()
			return s.CommitAudited(ctx, v, r, es)
		})
		require.NoError(t, err)
	}
	// filled commits versions 1-3 after a run start logged with the run's first record.
	filled := func(t *testing.T) (coordinator.AuditedStore, *audit.Log) {
		s := b.New(t)
		l := newLog(s)
		_, err := l.AppendWith(ctx, []audit.Record{rec(audit.ActionRunStart, "r")}, func(es []audit.Entry) error {
			return s.SaveRunAudited(ctx, coordinator.RunState{ID: "r", Status: coordinator.RunWaiting}, es)
		})
		require.NoError(t, err)
		for n := uint64(1); n <= 3; n++ {
			commit(t, s, l, n, -2.6912345)
		}
		return s, l
	}

	t.Run("a new store has an empty log", func(t *testing.T) {
		entries, head, err := b.New(t).AuditLog(ctx)
		require.NoError(t, err)
		assert.Empty(t, entries)
		assert.Equal(t, uint64(0), head.Seq)
		require.NoError(t, audit.Verify(entries, &head))
	})

	t.Run("the log is written with the state it records, and its head with it", func(t *testing.T) {
		s, l := filled(t)
		_, err := l.AppendWith(ctx, []audit.Record{rec(audit.ActionRunStop, "r")}, func(es []audit.Entry) error { return s.AppendAudit(ctx, es) })
		require.NoError(t, err)
		entries, head, err := s.AuditLog(ctx)
		require.NoError(t, err)
		require.Len(t, entries, 5)
		assert.Equal(t, l.Head(), head)
		require.NoError(t, audit.Verify(entries, &head))
		assert.Equal(t, audit.ActionRunStart, entries[0].Action)
		v, err := s.Version(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, audit.Head{Seq: 3, Hash: entries[2].Hash}.String(), v.AuditHead, "each version records the head its commit made")
	})

	t.Run("entries that do not follow the head are refused with nothing written", func(t *testing.T) {
		s, l := filled(t)
		head := l.Head()
		stale := audit.NewLog(nil, audit.Head{Seq: head.Seq - 1, Hash: "0" + head.Hash[1:]}, audit.Options{})
		v := coordinator.ModelVersion{Version: 4, Parent: 3, RunID: "r", Round: 4, Weights: []float64{1}}
		r := coordinator.RunState{ID: "r", LastRound: 4, LatestVersion: 4}
		_, err := stale.AppendWith(ctx, []audit.Record{rec(audit.ActionCommit, "version 4")}, func(es []audit.Entry) error {
			return s.CommitAudited(ctx, v, r, es)
		})
		require.ErrorIs(t, err, coordinator.ErrConflict)
		require.ErrorIs(t, err, audit.ErrFork)
		_, err = s.Version(ctx, 4)
		require.ErrorIs(t, err, coordinator.ErrNotFound, "the version of a refused commit is not written")
		_, after, err := s.AuditLog(ctx)
		require.NoError(t, err)
		assert.Equal(t, head, after)
	})

	t.Run("a version's content hash is the checksum of its canonical bytes", func(t *testing.T) {
		s, _ := filled(t)
		v, err := s.Version(ctx, 2)
		require.NoError(t, err)
		_, want, err := coordinator.EncodeVersion(v)
		require.NoError(t, err)
		got, err := s.ContentHash(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		_, err = s.ContentHash(ctx, 9)
		require.ErrorIs(t, err, coordinator.ErrNotFound)
	})

	t.Run("a clean store checks clean", func(t *testing.T) {
		s, l := filled(t)
		c, ok := s.(coordinator.Checker)
		require.True(t, ok, "an AuditedStore on disk or a server checks itself")
		rep, err := c.Check(ctx)
		require.NoError(t, err)
		assert.Empty(t, rep.Damaged)
		assert.Equal(t, 1, rep.Runs)
		assert.Equal(t, 3, rep.Versions)
		assert.Equal(t, 4, rep.Entries)
		assert.Equal(t, l.Head(), rep.Head)
	})

	for _, tc := range []struct {
		name, kind, key, from, to string
		read                      func(s coordinator.AuditedStore) error
	}{
		{"one flipped digit in a version's intercept", coordinator.RecordVersion, "2", "-2.69", "-2.99",
			func(s coordinator.AuditedStore) error { _, err := s.Version(ctx, 2); return err }},
		{"one flipped digit in a run record", coordinator.RecordRun, "r", `"last_round":3`, `"last_round":2`,
			func(s coordinator.AuditedStore) error { _, err := s.Run(ctx, "r"); return err }},
		{"an audit entry's subject edited", coordinator.RecordAudit, "3", `"subject":"version 2"`, `"subject":"version 7"`,
			func(s coordinator.AuditedStore) error { _, _, err := s.AuditLog(ctx); return err }},
	} {
		t.Run(tc.name+" is detected on read, naming the record", func(t *testing.T) {
			s, _ := filled(t)
			s = b.Tamper(t, s, tc.kind, tc.key, func(doc []byte) []byte {
				require.Contains(t, string(doc), tc.from)
				return bytes.Replace(doc, []byte(tc.from), []byte(tc.to), 1)
			})
			err := tc.read(s)
			require.ErrorIs(t, err, coordinator.ErrCorrupt)
			var ce *coordinator.CorruptError
			require.ErrorAs(t, err, &ce)
			name := coordinator.RecordName(tc.kind, tc.key)
			assert.Equal(t, name, ce.Record)
			assert.Contains(t, err.Error(), "checksum mismatch")

			rep, err := s.(coordinator.Checker).Check(ctx)
			require.NoError(t, err)
			require.Len(t, rep.Damaged, 1, "%v", rep.Damaged)
			assert.Equal(t, name, rep.Damaged[0].Record)
			if tc.kind == coordinator.RecordVersion {
				_, err := s.Version(ctx, 1)
				require.NoError(t, err, "the other versions still read")
				_, err = s.Versions(ctx)
				require.ErrorIs(t, err, coordinator.ErrCorrupt, "a listing does not skip a damaged version")
			}
		})
	}
}
