package bolt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/store/storetest"
)

func openAt(t *testing.T, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunAudited(t, storetest.Backend{
		New: func(t *testing.T) store.AuditedStore {
			return openAt(t, filepath.Join(t.TempDir(), "fedprop.db"))
		},
		Tamper: func(t *testing.T, s store.AuditedStore, kind, key string, edit func([]byte) []byte) store.AuditedStore {
			path := s.(*bolt.Store).Path()
			require.NoError(t, s.Close())
			tamper(t, path, kind, key, edit)
			return openAt(t, path)
		},
	})
}

// tamper edits one record's canonical bytes in the file, keeping its checksum header, as a
// disk fault or a hand edit with a bbolt tool would.
func tamper(t *testing.T, path, kind, key string, edit func([]byte) []byte) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	bucket, k := map[string]string{store.RecordRun: "runs", store.RecordVersion: "versions", store.RecordAudit: "audit"}[kind], []byte(key)
	if kind != store.RecordRun {
		n, err := strconv.ParseUint(key, 10, 64)
		require.NoError(t, err)
		k = binary.BigEndian.AppendUint64(nil, n)
	}
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		v := b.Get(k)
		require.NotNil(t, v, "%s %s", kind, key)
		header := len("fedprop.record/v1 ") + 64 + 1
		out := append(append([]byte(nil), v[:header]...), edit(append([]byte(nil), v[header:]...))...)
		return b.Put(k, out)
	}))
}

// commitVersions commits versions from..to of run "r", each logged, through the store's own
// audited path, and returns the log's head.
func commitVersions(t *testing.T, s *bolt.Store, from, to uint64, weights int) store.Head {
	t.Helper()
	ctx := context.Background()
	entries, head, err := s.AuditLog(ctx)
	require.NoError(t, err)
	require.NoError(t, store.Follows(store.Head{}, entries))
	require.Equal(t, store.HeadOf(entries), head)
	for n := from; n <= to; n++ {
		w := make([]float64, weights)
		w[0] = -2.6912345 - float64(n)/1000
		v, r := storetest.VersionRecord(t, n, "r", int(n), w...)
		es := storetest.Entries(t, head, 1, "version "+store.VersionKey(n))
		require.NoError(t, s.CommitAudited(ctx, v, r, es))
		head = store.HeadOf(es)
	}
	return head
}

// TestDamagedStoreFilesAreRefused is issue 12's "a zero-byte store file starts a fresh run
// (120 versions gone, no warning)" and "a half-truncated file starts and then fails every
// ListModels": each damaged file is refused at open, with an error wrapping ErrCorrupt that
// names the file and says what to do, and the file is left as it was.
func TestDamagedStoreFilesAreRefused(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		want   []string
	}{
		{"zero bytes next to its audit head", func(t *testing.T, path string) {
			require.NoError(t, os.Truncate(path, 0))
		}, []string{"empty (0 bytes)", "audit log up to entry 120", "fedprop store restore"}},
		{"zero bytes without a head file", func(t *testing.T, path string) {
			require.NoError(t, os.Truncate(path, 0))
			require.NoError(t, os.Remove(path+bolt.HeadFileSuffix))
		}, []string{"empty (0 bytes)", "not a fedprop store"}},
		{"cut in half", func(t *testing.T, path string) {
			info, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, info.Size()/2))
		}, []string{"truncated", "fedprop store restore"}},
		{"unrecognised bytes", func(t *testing.T, path string) {
			junk := make([]byte, 64<<10)
			_, _ = rand.Read(junk)
			require.NoError(t, os.WriteFile(path, junk, 0o600))
		}, []string{"not a fedprop store"}},
		{"deleted, its head file left", func(t *testing.T, path string) {
			require.NoError(t, os.Remove(path))
		}, []string{"does not exist", "audit log up to entry 120"}},
		{"replaced by a new empty store", func(t *testing.T, path string) {
			require.NoError(t, os.Remove(path))
			db, err := bbolt.Open(path, 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Close())
		}, []string{"ends at entry 0", "records entry 120", "replaced"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fedprop.db")
			s := openAt(t, path)
			commitVersions(t, s, 1, 120, 200)
			require.NoError(t, s.Close())
			tc.damage(t, path)
			before, _ := os.ReadFile(path)

			_, err := bolt.Open(path)
			require.ErrorIs(t, err, store.ErrCorrupt)
			t.Log(err)
			assert.Contains(t, err.Error(), path)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			after, _ := os.ReadFile(path)
			assert.Equal(t, before, after, "a refused store file is not re-created or changed")
		})
	}
}

func TestAStoreRolledBackBehindItsHeadIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fedprop.db")
	s := openAt(t, path)
	commitVersions(t, s, 1, 3, 2)
	var backup bytes.Buffer
	_, err := s.Backup(&backup)
	require.NoError(t, err)
	commitVersions(t, s, 4, 6, 2)
	require.NoError(t, s.Close())

	// Copying the older file over the store is not a restore.
	require.NoError(t, os.WriteFile(path, backup.Bytes(), 0o600))
	_, err = bolt.Open(path)
	require.ErrorIs(t, err, store.ErrCorrupt)
	assert.Contains(t, err.Error(), "ends at entry 3")
	assert.Contains(t, err.Error(), "records entry 6")

	// Read-only, the store opens, and its log and check report the disagreement.
	ro, err := bolt.OpenReadOnly(path)
	require.NoError(t, err)
	_, _, err = ro.AuditLog(context.Background())
	require.ErrorIs(t, err, store.ErrCorrupt)
	rep, err := ro.Check(context.Background())
	require.NoError(t, err)
	require.Len(t, rep.Damaged, 1)
	assert.Equal(t, path+bolt.HeadFileSuffix, rep.Damaged[0].Record)
	require.NoError(t, ro.Close())
}

func TestAHeadFileThatLagsIsCaughtUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fedprop.db")
	s := openAt(t, path)
	commitVersions(t, s, 1, 2, 2)
	older, err := os.ReadFile(path + bolt.HeadFileSuffix)
	require.NoError(t, err)
	head := commitVersions(t, s, 3, 3, 2)
	require.NoError(t, s.Close())
	// A crash between a commit and the head file's update leaves the file one commit behind.
	require.NoError(t, os.WriteFile(path+bolt.HeadFileSuffix, older, 0o600))
	openAt(t, path)
	now, err := os.ReadFile(path + bolt.HeadFileSuffix)
	require.NoError(t, err)
	assert.Equal(t, head.String()+"\n", string(now))
}

func TestAStoreOfAnOlderFedpropIsRefusedClearly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fedprop.db")
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		for _, b := range []string{"runs", "run_order", "versions"} {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("versions")).Put(binary.BigEndian.AppendUint64(nil, 1), []byte(`{"version":1}`))
	}))
	require.NoError(t, db.Close())
	_, err = bolt.Open(path)
	require.ErrorIs(t, err, store.ErrOldFormat)
	assert.Contains(t, err.Error(), "store written by an older fedprop")
	assert.Contains(t, err.Error(), path)
}

// TestBackupAndRestore: a backup taken while the store is open is a consistent snapshot; it
// restores, deliberately, over a store that moved on (which is moved aside, not deleted), and
// the restored store opens and checks clean with the backup's versions.
func TestBackupAndRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "fedprop.db")
	s := openAt(t, path)
	head := commitVersions(t, s, 1, 5, 3)
	backupPath := filepath.Join(dir, "backup.db")
	f, err := os.Create(backupPath)
	require.NoError(t, err)
	_, err = s.Backup(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	commitVersions(t, s, 6, 7, 3)

	_, err = bolt.Restore(ctx, backupPath, path, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), nil)
	require.Error(t, err, "a store another process holds is not replaced")
	assert.Contains(t, err.Error(), "running coordinator")
	require.NoError(t, s.Close())

	res, err := bolt.Restore(ctx, backupPath, path, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), nil)
	require.NoError(t, err)
	assert.Equal(t, head, res.Head)
	assert.Equal(t, 5, res.Versions)
	require.NotNil(t, res.Before)
	assert.Equal(t, uint64(7), res.Before.Seq)
	assert.Equal(t, path+".before-restore-20260102T030405Z", res.MovedAside)
	assert.FileExists(t, res.MovedAside)

	restored := openAt(t, path)
	vs, err := restored.Versions(ctx)
	require.NoError(t, err)
	require.Len(t, vs, 5)
	rep, err := restored.Check(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Damaged)
	entries, h, err := restored.AuditLog(ctx)
	require.NoError(t, err)
	require.NoError(t, store.Follows(store.Head{}, entries))
	assert.Equal(t, head, store.HeadOf(entries))
	assert.Equal(t, head, h)
}

func TestRestoreRefusesADamagedBackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "fedprop.db")
	s := openAt(t, path)
	commitVersions(t, s, 1, 3, 2)
	backupPath := filepath.Join(dir, "backup.db")
	var buf bytes.Buffer
	_, err := s.Backup(&buf)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(backupPath, buf.Bytes(), 0o600))
	require.NoError(t, s.Close())
	tamper(t, backupPath, store.RecordVersion, "2", func(doc []byte) []byte {
		return bytes.Replace(doc, []byte("-2.69"), []byte("-2.99"), 1)
	})
	target := filepath.Join(dir, "restored.db")
	_, err = bolt.Restore(ctx, backupPath, target, time.Now(), nil)
	require.ErrorIs(t, err, store.ErrCorrupt)
	assert.Contains(t, err.Error(), "version 2")
	assert.NoFileExists(t, target)
}
