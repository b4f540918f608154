package client_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/task"
)

func shareRecord() client.ShareRecord {
	return client.ShareRecord{Member: "branch-000", Run: "r", Round: 2, Purpose: task.KindTrain, Contributors: 2, Digest: strings.Repeat("ab", 32),
		Active: []int{1, 3}, ContributorIDs: []string{"app-1", "app-2"}, ContributionDigests: []string{strings.Repeat("01", 32), strings.Repeat("02", 32)}}
}

func TestShareLogRoundTripsAndRefusesBadRecordsNamingTheField(t *testing.T) {
	good, err := client.MarshalShareRecord(shareRecord())
	require.NoError(t, err)
	got, err := client.ReadShareLog(bytes.NewReader(append(append(good, '\n'), good...)), "shares.jsonl")
	require.NoError(t, err)
	assert.Equal(t, []client.ShareRecord{shareRecord(), shareRecord()}, got)

	cases := []struct {
		name string
		edit func(r *client.ShareRecord)
		want string
	}{
		{"no member", func(r *client.ShareRecord) { r.Member = "" }, "field member"},
		{"no run", func(r *client.ShareRecord) { r.Run = "" }, "field run"},
		{"a negative round", func(r *client.ShareRecord) { r.Round = -1 }, "field round"},
		{"a decrypt purpose", func(r *client.ShareRecord) { r.Purpose = task.KindDecrypt }, "field purpose"},
		{"a digest that is not hex", func(r *client.ShareRecord) { r.Digest = "zz" }, "field aggregate_sha256"},
		{"fewer ids than contributors", func(r *client.ShareRecord) { r.Contributors = 3 }, "field contributor_ids"},
		{"a contributor twice", func(r *client.ShareRecord) { r.ContributorIDs = []string{"app-1", "app-1"} }, "listed twice"},
		{"a digest missing", func(r *client.ShareRecord) { r.ContributionDigests = r.ContributionDigests[:1] }, "field contribution_sha256"},
		{"an active set out of order", func(r *client.ShareRecord) { r.Active = []int{3, 1} }, "field active"},
		{"point 0", func(r *client.ShareRecord) { r.Active = []int{0, 1} }, "field active"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := shareRecord()
			tc.edit(&r)
			line, err := client.MarshalShareRecord(r)
			require.NoError(t, err)
			_, err = client.ReadShareLog(bytes.NewReader(append(append(good, '\n'), line...)), "m1/shares.jsonl")
			require.ErrorIs(t, err, client.ErrShareLog)
			assert.Contains(t, err.Error(), "m1/shares.jsonl, line 2")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err = client.ReadShareLog(strings.NewReader(`{"member":"m","surprise":1}`), "x")
	require.ErrorIs(t, err, client.ErrShareLog, "unknown fields are refused")
}

// TestTheShareLogIsPrivateAndSurvivesACrashMidAppend: the log is written with mode 0600 and
// refused when others can read it; a last line cut short by a crash (its share never left the
// member: the record is written first) is left out.
func TestTheShareLogIsPrivateAndSurvivesACrashMidAppend(t *testing.T) {
	dir := client.StateDir(t.TempDir())
	got, err := dir.ShareLog()
	require.NoError(t, err)
	assert.Nil(t, got, "no log before the first share")
	require.NoError(t, dir.AppendShare(shareRecord()))
	path := filepath.Join(string(dir), client.ShareLogFile)
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"member":"branch-000","run":"r","rou`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	got, err = dir.ShareLog()
	require.NoError(t, err)
	assert.Equal(t, []client.ShareRecord{shareRecord()}, got)

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = dir.ShareLog()
	require.ErrorContains(t, err, "chmod 600")
}

// FuzzReadShareLog: whatever a share log holds, reading it does not panic, and what it
// accepts writes back to the same records.
func FuzzReadShareLog(f *testing.F) {
	good, _ := client.MarshalShareRecord(shareRecord())
	f.Add(good)
	f.Add(append(append(good, '\n'), good...))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"member":"m","run":"r","round":0,"purpose":"stats","contributors":1,"aggregate_sha256":"","active":[1],"contributor_ids":["a"],"contribution_sha256":[""]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := client.ReadShareLog(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		var buf bytes.Buffer
		for _, r := range recs {
			line, err := client.MarshalShareRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(append(line, '\n'))
		}
		again, err := client.ReadShareLog(&buf, "again")
		if err != nil || len(again) != len(recs) {
			t.Fatalf("an accepted log does not read back: %v (%d of %d records)", err, len(again), len(recs))
		}
	})
}
