package coordinator_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/store/mem"
)

// storeV2 is store/bolt/testdata/v2: a store written by fedprop before the store interfaces
// moved out of the coordinator (commit fba12c4: two runs, four versions, and their audit log
// with an approval of version 2 signed by an approver of testdata/store-v2-ca.pem), opened from
// a copy. testdata/store-v2.json holds what that code's typed reads returned of it.
func storeV2(t *testing.T) *bolt.Store {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"fedprop.db", "fedprop.db" + bolt.HeadFileSuffix} {
		b, err := os.ReadFile(filepath.Join("..", "store", "bolt", "testdata", "v2", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
	}
	s, err := bolt.Open(filepath.Join(dir, "fedprop.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// typedReads is everything the coordinator reads of a store, as testdata/store-v2.json has it.
type typedReads struct {
	Runs          []coordinator.RunState     `json:"runs"`
	Versions      []coordinator.ModelVersion `json:"versions"`
	Entries       []audit.Entry              `json:"entries"`
	Head          audit.Head                 `json:"head"`
	ContentHashes map[uint64]string          `json:"content_hashes"`
}

// TestAStoreWrittenBeforeTheStorePackageReadsTheSame: through Records, a store the typed
// store API wrote reads back the same runs, versions, audit entries, head and content hashes;
// each record encodes again to the very bytes stored; and it checks clean, signatures included,
// and a coordinator starts on it with the approval in force.
func TestAStoreWrittenBeforeTheStorePackageReadsTheSame(t *testing.T) {
	ctx := context.Background()
	s := storeV2(t)
	recs := coordinator.Records{Store: s}
	var got typedReads
	var err error
	got.Runs, err = recs.Runs(ctx)
	require.NoError(t, err)
	got.Versions, err = recs.Versions(ctx)
	require.NoError(t, err)
	got.Entries, got.Head, err = recs.AuditLog(ctx)
	require.NoError(t, err)
	got.ContentHashes = map[uint64]string{}
	for _, v := range got.Versions {
		got.ContentHashes[v.Version], err = recs.ContentHash(ctx, v.Version)
		require.NoError(t, err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "store-v2.json"))
	require.NoError(t, err)
	gotJSON, err := json.Marshal(got)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(gotJSON))

	stored, err := s.Versions(ctx)
	require.NoError(t, err)
	for i, v := range got.Versions {
		rec, err := coordinator.EncodeVersion(v)
		require.NoError(t, err)
		assert.Equal(t, string(stored[i].Body), string(rec.Body), "version %d encodes to the bytes stored", v.Version)
		assert.Equal(t, got.ContentHashes[v.Version], rec.Checksum())
	}
	runs, err := s.Runs(ctx)
	require.NoError(t, err)
	for i, r := range got.Runs {
		rec, err := coordinator.EncodeRun(r)
		require.NoError(t, err)
		assert.Equal(t, string(runs[i].Body), string(rec.Body), "run %s encodes to the bytes stored", r.ID)
	}
	entries, _, err := s.AuditLog(ctx)
	require.NoError(t, err)
	for i, e := range got.Entries {
		rec, err := coordinator.EncodeEntry(e)
		require.NoError(t, err)
		assert.Equal(t, string(entries[i].Body), string(rec.Body), "entry %d encodes to the bytes stored", e.Seq)
	}

	verifier, err := pki.LoadVerifier(filepath.Join("testdata", "store-v2-ca.pem"))
	require.NoError(t, err)
	check, err := coordinator.CheckStore(ctx, s, verifier)
	require.NoError(t, err)
	assert.Empty(t, check.Damaged)
	assert.Equal(t, 1, check.Decisions)
	assert.Equal(t, len(got.Entries), check.Entries)
	assert.Equal(t, got.Head, audit.Head(check.Head))

	srv, err := coordinator.NewServer(ctx, s, nil, coordinator.ServerConfig{Reviewers: verifier, Logger: quiet()})
	require.NoError(t, err)
	assert.Equal(t, "approved", srv.Status(2).Status)
	released, err := srv.ReleasedVersion(ctx, 0, false)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), released, "the approval signed under the old code still holds")
	assert.Equal(t, got.Head, srv.AuditHead())
}

// TestRecordsAuditedWrites: through Records, a store's refusal of entries that do not follow
// its head is audit.ErrFork as well as ErrConflict; an entry whose hash does not match its
// content never reaches the store; and a store that keeps no log says so.
func TestRecordsAuditedWrites(t *testing.T) {
	ctx := context.Background()
	s := storeV2(t)
	recs := coordinator.Records{Store: s}
	_, head, err := recs.AuditLog(ctx)
	require.NoError(t, err)
	v := coordinator.ModelVersion{Version: 5, Parent: 4, RunID: "q4-pd", Round: 2, Weights: []float64{1}}
	r := coordinator.RunState{ID: "q4-pd", LastRound: 2, LatestVersion: 5}
	record := audit.Record{Actor: "coordinator", Action: audit.ActionCommit, Subject: audit.VersionSubject(5)}

	stale := audit.NewLog(nil, audit.Head{Seq: head.Seq - 1, Hash: "0" + head.Hash[1:]}, audit.Options{})
	_, err = stale.AppendWith(ctx, []audit.Record{record}, func(es []audit.Entry) error { return recs.CommitAudited(ctx, v, r, es) })
	require.ErrorIs(t, err, coordinator.ErrConflict)
	require.ErrorIs(t, err, audit.ErrFork)

	forged := audit.NewLog(nil, head, audit.Options{})
	_, err = forged.AppendWith(ctx, []audit.Record{record}, func(es []audit.Entry) error {
		es[0].Reason = "changed after hashing"
		return recs.CommitAudited(ctx, v, r, es)
	})
	require.ErrorIs(t, err, audit.ErrTampered)
	_, err = recs.Version(ctx, 5)
	require.ErrorIs(t, err, coordinator.ErrNotFound, "nothing of a refused commit is written")

	_, err = audit.NewLog(nil, head, audit.Options{}).AppendWith(ctx, []audit.Record{record}, func(es []audit.Entry) error {
		return recs.CommitAudited(ctx, v, r, es)
	})
	require.NoError(t, err)
	got, err := recs.Version(ctx, 5)
	require.NoError(t, err)
	assert.Equal(t, v.Weights, got.Weights)

	plain := coordinator.Records{Store: mem.New()}
	assert.False(t, plain.Audited())
	_, _, err = plain.AuditLog(ctx)
	require.Error(t, err)
	require.NoError(t, plain.Commit(ctx, coordinator.ModelVersion{Version: 1, RunID: "r", Round: 1}, coordinator.RunState{ID: "r", LastRound: 1, LatestVersion: 1}))
	require.ErrorIs(t, plain.Commit(ctx, coordinator.ModelVersion{Version: 1, RunID: "r", Round: 2}, coordinator.RunState{ID: "r", LastRound: 2, LatestVersion: 1}),
		coordinator.ErrConflict)
}

// TestARecordThatDoesNotDecodeIsNamed: a record whose bytes verify against their checksum but
// do not decode as the coordinator's (a store checks only the fields it indexes) is an error
// wrapping ErrCorrupt that names it, on read and in CheckStore.
func TestARecordThatDoesNotDecodeIsNamed(t *testing.T) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "fedprop.db"))
	require.NoError(t, err)
	defer st.Close()
	bad := store.Version{Version: 1, RunID: "r", Round: 1, Body: []byte(`{"version":1,"run_id":"r","round":1,"weights":"not numbers"}`)}
	require.NoError(t, st.Commit(ctx, bad, store.Run{ID: "r", LastRound: 1, LatestVersion: 1, Body: []byte(`{"id":"r","last_round":1,"latest_version":1}`)}))
	_, err = coordinator.Records{Store: st}.Version(ctx, 1)
	require.ErrorIs(t, err, coordinator.ErrCorrupt)
	var ce *store.CorruptError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "version 1", ce.Record)
	assert.Contains(t, err.Error(), "does not decode")

	rep, err := st.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Damaged, "the store's own check sees a record that verifies")
	check, err := coordinator.CheckStore(ctx, st, nil)
	require.NoError(t, err)
	require.Len(t, check.Damaged, 1)
	assert.Equal(t, "version 1", check.Damaged[0].Record)
}
