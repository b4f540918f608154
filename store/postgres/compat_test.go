package postgres_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/postgres"
	"github.com/fedprop/fedprop/store/postgres/pgtest"
	"github.com/fedprop/fedprop/store/storetest"
)

// fixtureSchema is the schema testdata/v2/dump.sql was dumped from.
const fixtureSchema = "fedprop_fixture_v2"

// TestAStoreWrittenBeforeTheStorePackageReadsTheSame: testdata/v2/dump.sql is pg_dump of a
// schema written by fedprop before the store interfaces moved out of the coordinator (commit
// fba12c4, through the coordinator's typed API: two runs, four versions, their audit log with
// a signed approval), and records.json lists the canonical bytes and checksum of each of its
// records as that code stored them. Restored, the schema opens, reads every record back byte
// for byte under the same checksum, checks clean, and goes on committing.
func TestAStoreWrittenBeforeTheStorePackageReadsTheSame(t *testing.T) {
	dsn := pgtest.DSN(t)
	psql, err := exec.LookPath("psql")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("psql is required under CI (it comes with the PostgreSQL client)")
		}
		t.Skip("skipping: psql is not installed")
	}
	ctx := context.Background()
	want := storetest.ReadRecords(t, filepath.Join("testdata", "v2", "records.json"))
	for _, r := range want {
		require.Equal(t, r.Checksum, store.RecordChecksum(r.Kind, r.Key, []byte(r.Body)), "the checksum binds kind, key and bytes as it did")
	}
	dump, err := os.ReadFile(filepath.Join("testdata", "v2", "dump.sql"))
	require.NoError(t, err)
	schema := searchPath(t, dsn)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE") // the dump creates it
	require.NoError(t, err)
	restore := exec.CommandContext(ctx, psql, "-q", "-X", "-v", "ON_ERROR_STOP=1", libpqDSN(t, dsn)) // #nosec G204 -- the test's own server
	restore.Stdin = bytes.NewReader(bytes.ReplaceAll(dump, []byte(fixtureSchema), []byte(schema)))
	out, err := restore.CombinedOutput()
	require.NoError(t, err, "%s", out)

	ro, err := postgres.Open(ctx, dsn, postgres.Options{ReadOnly: true})
	require.NoError(t, err)
	assert.Equal(t, want, storetest.Dump(t, ro))
	require.NoError(t, ro.Close())

	s := open(t, dsn)
	assert.Equal(t, want, storetest.Dump(t, s), "opened for writing, it reads the same")
	rep, err := s.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Damaged)
	assert.Equal(t, 2, rep.Runs)
	assert.Equal(t, 4, rep.Versions)
	entries, head, err := s.AuditLog(ctx)
	require.NoError(t, err)
	require.NoError(t, store.Follows(store.Head{}, entries), "the log chains")
	assert.Equal(t, store.HeadOf(entries), head)
	latest, err := s.Latest(ctx)
	require.NoError(t, err)
	assert.Equal(t, "q4-pd", latest.RunID)
	assert.Equal(t, 1, latest.Round)

	v5, r := storetest.VersionRecord(t, 5, "q4-pd", 2, 1)
	require.ErrorIs(t, s.CommitAudited(ctx, v5, r, storetest.Entries(t, store.Head{Seq: head.Seq - 1, Hash: entries[len(entries)-2].Hash}, 1)),
		store.ErrConflict, "the stored head is enforced")
	v5wrong, _ := storetest.VersionRecord(t, 5, "q4-pd", 1, 1)
	require.ErrorIs(t, s.Commit(ctx, v5wrong, storetest.RunRecord(t, "q4-pd", "", 1, 5)), store.ErrConflict, "the stored run's round is enforced")
	require.NoError(t, s.CommitAudited(ctx, v5, r, storetest.Entries(t, head, 1)))
	got, err := s.Version(ctx, 5)
	require.NoError(t, err)
	assert.Equal(t, v5.Body, got.Body)
}
