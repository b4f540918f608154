package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store/bolt"
)

// flipDigit changes -2.69 into -2.99 in version n's stored record, leaving its checksum: issue
// 12's "one flipped digit inside a stored version changes the served intercept".
func flipDigit(t *testing.T, path string, n uint64) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("versions"))
		k := binary.BigEndian.AppendUint64(nil, n)
		v := bytes.Clone(b.Get(k))
		require.Contains(t, string(v), "-2.69")
		return b.Put(k, bytes.Replace(v, []byte("-2.69"), []byte("-2.99"), 1))
	}))
}

func TestStoreCheckNamesTheDamagedVersion(t *testing.T) {
	g := newGatedStore(t)
	code, out, errOut := runCLI(t, "store", "check", "--store", g.path)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "1 runs, 3 versions, 4 audit entries read intact; audit head 4:")
	assert.Contains(t, out, "not checked (no --tls-ca)")

	flipDigit(t, g.path, 2)
	code, out, errOut = runCLI(t, "store", "check", "--store", g.path, "--tls-ca", g.caPath)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "DAMAGED version 2: store damaged: checksum mismatch")
	assert.Contains(t, out, "2 versions")
	assert.Contains(t, errOut, "1 damaged")

	// The coordinator's read of it fails naming the version, instead of serving -2.99.
	s, err := bolt.OpenReadOnly(g.path)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Version(context.Background(), 2)
	require.ErrorIs(t, err, coordinator.ErrCorrupt)
	assert.Contains(t, err.Error(), "version 2")
}

func TestStoreCheckRefusesAnEmptyStoreFile(t *testing.T) {
	g := newGatedStore(t)
	require.NoError(t, os.Truncate(g.path, 0))
	code, _, errOut := runCLI(t, "store", "check", "--store", g.path)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "empty (0 bytes)")
	assert.Contains(t, errOut, "fedprop store restore")
}

// TestStoreBackupAndRestore: a backup checks clean; after the store is damaged, restoring it
// (deliberately, with the entries after it reported lost) gives a store that checks clean
// and that the coordinator starts on.
func TestStoreBackupAndRestore(t *testing.T) {
	ctx := context.Background()
	g := newGatedStore(t)
	backup := filepath.Join(t.TempDir(), "backup.db")
	code, out, errOut := runCLI(t, "store", "backup", "--store", g.path, "--out", backup)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "3 versions, 4 audit entries, audit head 4:")
	code, _, errOut = runCLI(t, "store", "backup", "--store", g.path, "--out", backup)
	assert.Equal(t, 1, code, "a backup is not overwritten")
	assert.Contains(t, errOut, "exists")

	code, _, errOut = g.approve(t, g.approver, "approve", "3", "--reason", "ok")
	require.Equal(t, 0, code, errOut)
	flipDigit(t, g.path, 2)
	code, _, _ = runCLI(t, "store", "check", "--store", g.path)
	require.Equal(t, 1, code)

	code, out, errOut = runCLI(t, "store", "restore", "--from", backup, "--store", g.path)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "moved the store file that was there to "+g.path+".before-restore-")
	assert.Contains(t, out, "3 versions, audit head 4:")
	assert.Contains(t, errOut, "entries 5 to 5 are not in the backup")

	code, out, errOut = runCLI(t, "store", "check", "--store", g.path, "--tls-ca", g.caPath)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "3 versions")
	s, err := bolt.Open(g.path)
	require.NoError(t, err)
	defer s.Close()
	srv, err := coordinator.NewServer(ctx, s, nil, coordinator.ServerConfig{Reviewers: pki.NewVerifier(g.ca.Certificate()), Logger: quietLog()})
	require.NoError(t, err)
	assert.Equal(t, "candidate", srv.Status(3).Status, "the approval after the backup is not in it")
	entries, head, err := coordinator.Records{Store: s}.AuditLog(ctx)
	require.NoError(t, err)
	require.NoError(t, audit.Verify(entries, &head))
}

func TestStoreCommandsOnPostgresPointToPgDump(t *testing.T) {
	code, _, errOut := runCLI(t, "store", "backup", "--store", "postgres://u@127.0.0.1:1/db", "--out", filepath.Join(t.TempDir(), "b"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "pg_dump --schema")
	code, _, errOut = runCLI(t, "store", "restore", "--store", "postgres://u@127.0.0.1:1/db", "--from", "x")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "pg_dump")
}
