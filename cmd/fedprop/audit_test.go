package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/audit"
)

// writeAuditLog writes a three-entry log and returns its path and head.
func writeAuditLog(t *testing.T) (string, audit.Head) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	at := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	l, err := audit.Open(context.Background(), audit.NewFileStore(path), audit.Options{Now: func() time.Time { at = at.Add(time.Hour); return at }})
	require.NoError(t, err)
	for _, r := range []audit.Record{
		{Actor: "coordinator", Action: audit.ActionRunStart, Subject: "run-1"},
		{Actor: "alice", Role: "approver", Action: audit.ActionApprove, Subject: "version 3", Reason: "AUC 0.77, within the fairness policy"},
		{Actor: "coordinator", Action: audit.ActionRunStop, Subject: "run-1", Reason: "completed"},
	} {
		_, err := l.Append(context.Background(), r)
		require.NoError(t, err)
	}
	return path, l.Head()
}

func TestAuditVerify(t *testing.T) {
	path, head := writeAuditLog(t)
	code, out, errOut := runCLI(t, "audit", "verify", "--log", path, "--head", head.String())
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "verifies: 3 entries, the chain and the recorded head intact")

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := bytes.SplitAfter(raw, []byte("\n"))

	// Editing one byte of entry 2 (alice -> alicf) fails verification naming entry 2.
	edited := bytes.Replace(raw, []byte(`"alice"`), []byte(`"alicf"`), 1)
	require.Len(t, edited, len(raw))
	require.NoError(t, os.WriteFile(path, edited, 0o600))
	code, _, errOut = runCLI(t, "audit", "verify", "--log", path)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "entry 2")
	assert.Contains(t, errOut, "edited")

	// Deleting the last entry passes on the chain alone, and fails against the recorded head.
	require.NoError(t, os.WriteFile(path, bytes.Join(lines[:2], nil), 0o600))
	code, _, errOut = runCLI(t, "audit", "verify", "--log", path)
	assert.Equal(t, 0, code, errOut)
	code, _, errOut = runCLI(t, "audit", "verify", "--log", path, "--head", head.String())
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "entry 3")
	assert.Contains(t, errOut, "deleted")
}

func TestAuditShow(t *testing.T) {
	path, _ := writeAuditLog(t)
	code, out, errOut := runCLI(t, "audit", "show", "--log", path)
	require.Equal(t, 0, code, errOut)
	rows := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, rows, 4)
	assert.Regexp(t, `^SEQ\s+TIME\s+ACTOR\s+ROLE\s+ACTION`, rows[0])
	assert.Regexp(t, `^2\s+2025-05-06T09:08:09Z\s+alice\s+approver\s+model.approve\s+version 3\s+AUC 0.77`, rows[2])

	code, out, errOut = runCLI(t, "audit", "show", "--log", path, "--format", "json")
	require.Equal(t, 0, code, errOut)
	entries, err := audit.ReadEntries(context.Background(), strings.NewReader(out))
	require.NoError(t, err, "json output is the log's own encoding")
	require.NoError(t, audit.Verify(entries, nil))
}

func TestAuditUsage(t *testing.T) {
	path, _ := writeAuditLog(t)
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no log", []string{"verify"}, 2, "--log is required"},
		{"bad head", []string{"verify", "--log", path, "--head", "3"}, 2, "--head"},
		{"missing file", []string{"verify", "--log", path + ".none"}, 1, "none"},
		{"bad format", []string{"show", "--log", path, "--format", "xml"}, 2, "--format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"audit"}, tc.args...)...)
			assert.Equal(t, tc.code, code, errOut)
			assert.Contains(t, errOut, tc.msg)
		})
	}
}
