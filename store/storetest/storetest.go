// Package storetest is the conformance suite every store.Store must pass (Run), and every
// store.AuditedStore (RunAudited). It writes records as the coordinator encodes them (JSON
// objects holding the indexed fields) without importing the coordinator, and checks that each
// reads back exactly: the same indexed fields, the same bytes.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/store"
)

// body encodes fields as a record's canonical bytes: a JSON object.
func body(t testing.TB, fields map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(fields)
	require.NoError(t, err)
	return b
}

// RunRecord is a run record: id at round lastRound with its latest version, holding message.
func RunRecord(t testing.TB, id, message string, lastRound int, latest uint64) store.Run {
	return store.Run{ID: id, LastRound: lastRound, LatestVersion: latest, Body: body(t, map[string]any{
		"id": id, "status": "training", "message": message, "last_round": lastRound, "latest_version": latest,
	})}
}

// VersionRecord is version n of run at round, with weights, and the record of its run that
// commits it.
func VersionRecord(t testing.TB, n uint64, run string, round int, weights ...float64) (store.Version, store.Run) {
	created := time.Date(2026, 11, 23, 12, 0, 0, int(n), time.UTC)
	v := store.Version{Version: n, RunID: run, Round: round, Created: created, Body: body(t, map[string]any{
		"version": n, "parent": n - 1, "run_id": run, "round": round, "created": created, "weights": weights,
	})}
	return v, RunRecord(t, run, "", round, n)
}

// Entries chains n audit entries after head, each with subject subjects[i] (or "entry SEQ"),
// as the audit log makes them: consecutive sequence numbers, each linked to the hash of the
// one before.
func Entries(t testing.TB, head store.Head, n int, subjects ...string) []store.Entry {
	prev := head.Hash
	if head.Seq == 0 {
		prev = store.Genesis
	}
	out := make([]store.Entry, n)
	for i := range out {
		seq := head.Seq + uint64(i) + 1
		subject := "entry " + store.EntryKey(seq)
		if i < len(subjects) {
			subject = subjects[i]
		}
		fields := map[string]any{"seq": seq, "actor": "coordinator", "action": "model.commit", "subject": subject, "prev_hash": prev}
		sum := sha256.Sum256(body(t, fields))
		fields["hash"] = hex.EncodeToString(sum[:])
		out[i] = store.Entry{Seq: seq, PrevHash: prev, Hash: fields["hash"].(string), Body: body(t, fields)}
		prev = out[i].Hash
	}
	return out
}

// equalTimes makes times comparable with assert.Equal: the same instant, in UTC.
func equalTimes(v store.Version) store.Version {
	v.Created = v.Created.UTC()
	return v
}

// Run exercises a store made fresh by newStore for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("empty store reports not found", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Latest(ctx)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.Version(ctx, 1)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.Run(ctx, "nope")
		require.ErrorIs(t, err, store.ErrNotFound)
		vs, err := s.Versions(ctx)
		require.NoError(t, err)
		assert.Empty(t, vs)
		runs, err := s.Runs(ctx)
		require.NoError(t, err)
		assert.Empty(t, runs)
	})

	t.Run("runs round-trip in creation order", func(t *testing.T) {
		s := newStore(t)
		require.NoError(t, s.SaveRun(ctx, RunRecord(t, "b", "waiting", 0, 0)))
		require.NoError(t, s.SaveRun(ctx, RunRecord(t, "a", "stats", 0, 0)))
		b := RunRecord(t, "b", "x", 0, 0)
		require.NoError(t, s.SaveRun(ctx, b))
		runs, err := s.Runs(ctx)
		require.NoError(t, err)
		require.Len(t, runs, 2)
		assert.Equal(t, b, runs[0], "an update keeps the run's place, and its bytes are the last written")
		assert.Equal(t, "a", runs[1].ID)
		got, err := s.Run(ctx, "b")
		require.NoError(t, err)
		assert.Equal(t, b, got)
	})

	t.Run("commits are sequential, exact and never duplicated", func(t *testing.T) {
		s := newStore(t)
		require.NoError(t, s.SaveRun(ctx, RunRecord(t, "r", "", 0, 0)))
		var committed []store.Version
		for n := uint64(1); n <= 3; n++ {
			v, r := VersionRecord(t, n, "r", int(n), float64(n), 0.1/3)
			require.NoError(t, s.Commit(ctx, v, r))
			committed = append(committed, v)
		}
		v, r := VersionRecord(t, 3, "r", 3, 9)
		require.ErrorIs(t, s.Commit(ctx, v, r), store.ErrConflict, "the same version twice")
		v, r = VersionRecord(t, 5, "r", 4)
		require.ErrorIs(t, s.Commit(ctx, v, r), store.ErrConflict, "a skipped version")
		v, r = VersionRecord(t, 4, "r", 5)
		require.ErrorIs(t, s.Commit(ctx, v, r), store.ErrConflict, "a skipped round")
		v, r = VersionRecord(t, 4, "r", 4)
		r.LatestVersion = 3
		require.ErrorIs(t, s.Commit(ctx, v, r), store.ErrConflict, "a run record that does not match the version")

		latest, err := s.Latest(ctx)
		require.NoError(t, err)
		assert.Equal(t, equalTimes(committed[2]), equalTimes(latest), "the record reads back exactly, bytes and fields")
		got, err := s.Version(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, equalTimes(committed[1]), equalTimes(got))
		assert.Equal(t, committed[1].Checksum(), got.Checksum(), "its content hash is the checksum of the bytes written")
		all, err := s.Versions(ctx)
		require.NoError(t, err)
		require.Len(t, all, 3)
		for i := range all {
			assert.Equal(t, equalTimes(committed[i]), equalTimes(all[i]))
		}
		run, err := s.Run(ctx, "r")
		require.NoError(t, err)
		assert.Equal(t, 3, run.LastRound)
		assert.Equal(t, uint64(3), run.LatestVersion)
	})

	t.Run("versions continue across runs", func(t *testing.T) {
		s := newStore(t)
		v, r := VersionRecord(t, 1, "first", 1)
		require.NoError(t, s.Commit(ctx, v, r))
		v, r = VersionRecord(t, 2, "second", 1)
		require.NoError(t, s.Commit(ctx, v, r))
		latest, err := s.Latest(ctx)
		require.NoError(t, err)
		assert.Equal(t, "second", latest.RunID)
	})

	t.Run("what the caller does with bytes it wrote or read does not change the store", func(t *testing.T) {
		s := newStore(t)
		v, r := VersionRecord(t, 1, "r", 1, -2.6912345)
		want := bytes.Clone(v.Body)
		require.NoError(t, s.Commit(ctx, v, r))
		v.Body[len(v.Body)-2] = 'X'
		got, err := s.Version(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, want, got.Body)
		got.Body[0] = 'X'
		again, err := s.Version(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, want, again.Body)
	})
}

// Backend makes stores for RunAudited.
type Backend struct {
	// New returns a fresh, empty store, closed when t ends.
	New func(t *testing.T) store.AuditedStore
	// Tamper changes, behind the store's back, the stored canonical bytes of one record
	// (store.RecordRun, RecordVersion or RecordAudit, and its key) with edit, leaving its
	// checksum as it was, as a disk fault or a hand edit would; it returns s, reopened if the
	// backend needs that.
	Tamper func(t *testing.T, s store.AuditedStore, kind, key string, edit func(doc []byte) []byte) store.AuditedStore
}

// RunAudited is the conformance suite of a store.AuditedStore: Run's, then the audit log
// written with the state it records, its head, and a checksum verified on every read of every
// kind of record.
func RunAudited(t *testing.T, b Backend) {
	Run(t, func(t *testing.T) store.Store { return b.New(t) })
	ctx := context.Background()
	// filled starts run "r" with entry 1 and commits versions 1-3, each with its entry.
	filled := func(t *testing.T) (store.AuditedStore, []store.Entry) {
		s := b.New(t)
		log := Entries(t, store.Head{}, 4, "r", "version 1", "version 2", "version 3")
		require.NoError(t, s.SaveRunAudited(ctx, RunRecord(t, "r", "waiting", 0, 0), log[:1]))
		for n := uint64(1); n <= 3; n++ {
			v, r := VersionRecord(t, n, "r", int(n), -2.6912345, 0.5)
			require.NoError(t, s.CommitAudited(ctx, v, r, log[n:n+1]))
		}
		return s, log
	}

	t.Run("a new store has an empty log", func(t *testing.T) {
		entries, head, err := b.New(t).AuditLog(ctx)
		require.NoError(t, err)
		assert.Empty(t, entries)
		assert.Equal(t, store.Head{Hash: store.Genesis}, head)
	})

	t.Run("the log is written with the state it records, and its head with it", func(t *testing.T) {
		s, log := filled(t)
		more := Entries(t, store.HeadOf(log), 2)
		require.NoError(t, s.AppendAudit(ctx, more))
		log = append(log, more...)
		entries, head, err := s.AuditLog(ctx)
		require.NoError(t, err)
		assert.Equal(t, log, entries, "every entry reads back exactly, bytes and fields")
		assert.Equal(t, store.HeadOf(log), head)
		require.NoError(t, store.Follows(store.Head{}, entries))
	})

	t.Run("entries that do not follow the head are refused with nothing written", func(t *testing.T) {
		s, log := filled(t)
		head := store.HeadOf(log)
		v, r := VersionRecord(t, 4, "r", 4, 1)
		for name, es := range map[string][]store.Entry{
			"a stale head":             Entries(t, store.Head{Seq: head.Seq - 1, Hash: log[len(log)-2].Hash}, 1),
			"another log's head":       Entries(t, store.Head{Seq: head.Seq, Hash: "0" + head.Hash[1:]}, 1),
			"a gap":                    Entries(t, store.Head{Seq: head.Seq + 1, Hash: head.Hash}, 1),
			"a broken link inside":     append(Entries(t, head, 1), Entries(t, store.Head{Seq: head.Seq + 1, Hash: head.Hash}, 1)...),
			"a sequence number reused": append(Entries(t, head, 1), Entries(t, head, 1)...),
		} {
			err := s.CommitAudited(ctx, v, r, es)
			require.ErrorIs(t, err, store.ErrConflict, name)
			require.ErrorIs(t, err, store.ErrFork, name)
			require.ErrorIs(t, s.AppendAudit(ctx, es), store.ErrFork, name)
			require.ErrorIs(t, s.SaveRunAudited(ctx, RunRecord(t, "other", "", 0, 0), es), store.ErrFork, name)
		}
		_, err := s.Version(ctx, 4)
		require.ErrorIs(t, err, store.ErrNotFound, "the version of a refused commit is not written")
		_, err = s.Run(ctx, "other")
		require.ErrorIs(t, err, store.ErrNotFound, "the run record of a refused save is not written")
		entries, after, err := s.AuditLog(ctx)
		require.NoError(t, err)
		assert.Equal(t, head, after)
		assert.Len(t, entries, len(log))
	})

	t.Run("a refused commit writes no entry", func(t *testing.T) {
		s, log := filled(t)
		v, r := VersionRecord(t, 3, "r", 3, 1)
		require.ErrorIs(t, s.CommitAudited(ctx, v, r, Entries(t, store.HeadOf(log), 1)), store.ErrConflict)
		_, head, err := s.AuditLog(ctx)
		require.NoError(t, err)
		assert.Equal(t, store.HeadOf(log), head)
	})

	t.Run("a clean store checks clean", func(t *testing.T) {
		s, log := filled(t)
		c, ok := s.(store.Checker)
		require.True(t, ok, "an AuditedStore on disk or a server checks itself")
		rep, err := c.Check(ctx)
		require.NoError(t, err)
		assert.Empty(t, rep.Damaged)
		assert.Equal(t, 1, rep.Runs)
		assert.Equal(t, 3, rep.Versions)
		assert.Equal(t, 4, rep.Entries)
		assert.Equal(t, store.HeadOf(log), rep.Head)
	})

	for _, tc := range []struct {
		name, kind, key, from, to string
		read                      func(s store.AuditedStore) error
	}{
		{"one flipped digit in a version's intercept", store.RecordVersion, "2", "-2.69", "-2.99",
			func(s store.AuditedStore) error { _, err := s.Version(ctx, 2); return err }},
		{"one flipped digit in a run record", store.RecordRun, "r", `"last_round":3`, `"last_round":2`,
			func(s store.AuditedStore) error { _, err := s.Run(ctx, "r"); return err }},
		{"an audit entry's subject edited", store.RecordAudit, "3", `"subject":"version 2"`, `"subject":"version 7"`,
			func(s store.AuditedStore) error { _, _, err := s.AuditLog(ctx); return err }},
	} {
		t.Run(tc.name+" is detected on read, naming the record", func(t *testing.T) {
			s, _ := filled(t)
			s = b.Tamper(t, s, tc.kind, tc.key, func(doc []byte) []byte {
				require.Contains(t, string(doc), tc.from)
				return bytes.Replace(doc, []byte(tc.from), []byte(tc.to), 1)
			})
			err := tc.read(s)
			require.ErrorIs(t, err, store.ErrCorrupt)
			var ce *store.CorruptError
			require.ErrorAs(t, err, &ce)
			name := store.RecordName(tc.kind, tc.key)
			assert.Equal(t, name, ce.Record)
			assert.Contains(t, err.Error(), "checksum mismatch")

			rep, err := s.(store.Checker).Check(ctx)
			require.NoError(t, err)
			require.Len(t, rep.Damaged, 1, "%v", rep.Damaged)
			assert.Equal(t, name, rep.Damaged[0].Record)
			if tc.kind == store.RecordVersion {
				_, err := s.Version(ctx, 1)
				require.NoError(t, err, "the other versions still read")
				_, err = s.Versions(ctx)
				require.ErrorIs(t, err, store.ErrCorrupt, "a listing does not skip a damaged version")
			}
		})
	}
}

// Record is one stored record as a fixture lists it (testdata/*/records.json): its kind and
// key, its canonical bytes and the checksum stored with them.
type Record struct {
	Kind     string `json:"kind"`
	Key      string `json:"key"`
	Body     string `json:"body"`
	Checksum string `json:"checksum"`
}

// ReadRecords reads a fixture's records.json.
func ReadRecords(t testing.TB, path string) []Record {
	t.Helper()
	b, err := os.ReadFile(path) // #nosec G304 -- a test fixture
	require.NoError(t, err)
	var out []Record
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// Dump reads every record of s, in a fixture's order: runs oldest first, versions, audit
// entries, then the audit head; each with the checksum of the bytes read.
func Dump(t testing.TB, s store.AuditedStore) []Record {
	t.Helper()
	ctx := context.Background()
	var out []Record
	runs, err := s.Runs(ctx)
	require.NoError(t, err)
	for _, r := range runs {
		out = append(out, Record{store.RecordRun, r.ID, string(r.Body), r.Checksum()})
	}
	versions, err := s.Versions(ctx)
	require.NoError(t, err)
	for _, v := range versions {
		out = append(out, Record{store.RecordVersion, store.VersionKey(v.Version), string(v.Body), v.Checksum()})
	}
	entries, head, err := s.AuditLog(ctx)
	require.NoError(t, err)
	for _, e := range entries {
		out = append(out, Record{store.RecordAudit, store.EntryKey(e.Seq), string(e.Body), e.Checksum()})
	}
	h := head.String()
	return append(out, Record{store.RecordHead, "", h, store.RecordChecksum(store.RecordHead, "", []byte(h))})
}
