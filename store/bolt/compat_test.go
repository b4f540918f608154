package bolt_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/store/storetest"
)

// copyFixture copies the store in testdata/v2 (and its head file) to a new directory.
func copyFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"fedprop.db", "fedprop.db" + bolt.HeadFileSuffix} {
		b, err := os.ReadFile(filepath.Join("testdata", "v2", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
	}
	return filepath.Join(dir, "fedprop.db")
}

// TestAStoreWrittenBeforeTheStorePackageReadsTheSame: testdata/v2 is a store written by
// fedprop before the store interfaces moved out of the coordinator (commit fba12c4, through
// the coordinator's typed API: two runs, four versions, their audit log with a signed
// approval), and records.json lists the canonical bytes and checksum of each of its records as
// that code stored them. The store opens, reads every record back byte for byte under the
// same checksum, with the indexed fields its bytes hold, checks clean, and goes on committing.
func TestAStoreWrittenBeforeTheStorePackageReadsTheSame(t *testing.T) {
	ctx := context.Background()
	want := storetest.ReadRecords(t, filepath.Join("testdata", "v2", "records.json"))
	for _, r := range want {
		require.Equal(t, r.Checksum, store.RecordChecksum(r.Kind, r.Key, []byte(r.Body)), "the checksum binds kind, key and bytes as it did")
	}

	path := copyFixture(t)
	ro, err := bolt.OpenReadOnly(path)
	require.NoError(t, err)
	assert.Equal(t, want, storetest.Dump(t, ro))
	require.NoError(t, ro.Close())

	s := openAt(t, path)
	assert.Equal(t, want, storetest.Dump(t, s), "opened for writing, it reads the same")
	runs, err := s.Runs(ctx)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	assert.Equal(t, []store.Run{{ID: "q3-pd", LastRound: 3, LatestVersion: 3}, {ID: "q4-pd", LastRound: 1, LatestVersion: 4}},
		[]store.Run{{ID: runs[0].ID, LastRound: runs[0].LastRound, LatestVersion: runs[0].LatestVersion},
			{ID: runs[1].ID, LastRound: runs[1].LastRound, LatestVersion: runs[1].LatestVersion}})
	v, err := s.Latest(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(4), v.Version)
	assert.Equal(t, "q4-pd", v.RunID)
	assert.Equal(t, 1, v.Round)
	assert.Equal(t, time.Date(2026, 3, 4, 5, 10, 7, 123456789, time.UTC), v.Created.UTC())

	rep, err := s.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Damaged)
	assert.Equal(t, 2, rep.Runs)
	assert.Equal(t, 4, rep.Versions)
	entries, head, err := s.AuditLog(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(entries), rep.Entries)
	assert.Equal(t, head, rep.Head)
	require.NoError(t, store.Follows(store.Head{}, entries), "the log chains")
	assert.Equal(t, store.HeadOf(entries), head)

	v5, r := storetest.VersionRecord(t, 5, "q4-pd", 2, 1)
	require.ErrorIs(t, s.CommitAudited(ctx, v5, r, storetest.Entries(t, store.Head{Seq: head.Seq - 1, Hash: entries[len(entries)-2].Hash}, 1)),
		store.ErrConflict, "the stored head is enforced")
	require.NoError(t, s.CommitAudited(ctx, v5, r, storetest.Entries(t, head, 1)))
	require.NoError(t, s.Close())
	again := openAt(t, path)
	latest, err := again.Latest(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(5), latest.Version)
	got := map[string]storetest.Record{}
	for _, r := range storetest.Dump(t, again) {
		got[store.RecordName(r.Kind, r.Key)] = r
	}
	for _, r := range want {
		if r.Kind != store.RecordHead && !(r.Kind == store.RecordRun && r.Key == "q4-pd") {
			assert.Equal(t, r, got[store.RecordName(r.Kind, r.Key)], "what the commit did not rewrite is unchanged")
		}
	}
}
