package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/task"
)

// TestAuditMembersMatchesShareLogsWithTheCoordinatorsRecord: members' logs that agree with the
// coordinator's record pass (exit 0); a share for an aggregate the coordinator does not
// record, another contributor list, an active set it never asked, and a pair of recorded
// aggregates one client apart are each reported, and the command exits 1.
func TestAuditMembersMatchesShareLogsWithTheCoordinatorsRecord(t *testing.T) {
	dir := t.TempDir()
	digest := func(c string) string { return strings.Repeat(c, 64) }
	rec := func(round int, purpose, agg string, ids ...string) coordinator.DecryptionRecord {
		return coordinator.DecryptionRecord{Round: round, Purpose: purpose, Digest: digest(agg), Contributors: ids, Active: [][]int{{1, 2}}}
	}
	run := coordinator.RunState{ID: "r", Status: coordinator.RunCompleted,
		Config:      coordinator.RunConfig{ID: "r", SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", MinContributors: 2}},
		Decryptions: []coordinator.DecryptionRecord{rec(0, "stats", "a", "app-1", "app-2", "app-3"), rec(1, "train", "b", "app-1", "app-2", "app-3")}}
	storePath := filepath.Join(dir, "coordinator.db")
	writeRun := func(r coordinator.RunState) {
		st, err := bolt.Open(storePath)
		require.NoError(t, err)
		require.NoError(t, coordinator.Records{Store: st}.SaveRun(context.Background(), r))
		require.NoError(t, st.Close())
	}
	writeRun(run)
	share := func(member string, round int, purpose task.Kind, agg string, active []int, ids ...string) client.ShareRecord {
		r := client.ShareRecord{Member: member, Run: "r", Round: round, Purpose: purpose, Contributors: len(ids), Digest: digest(agg), Active: active, ContributorIDs: ids}
		for range ids {
			r.ContributionDigests = append(r.ContributionDigests, digest("0"))
		}
		return r
	}
	writeLog := func(member string, recs ...client.ShareRecord) string {
		d := client.StateDir(filepath.Join(dir, member+"-"+recs[0].Digest[:4]))
		for _, r := range recs {
			require.NoError(t, d.AppendShare(r))
		}
		return filepath.Join(string(d), client.ShareLogFile)
	}
	m1 := writeLog("m1", share("m1", 0, task.KindStats, "a", []int{1, 2}, "app-1", "app-2", "app-3"), share("m1", 1, task.KindTrain, "b", []int{1, 2}, "app-1", "app-2", "app-3"))
	m2 := writeLog("m2", share("m2", 1, task.KindTrain, "b", []int{1, 2}, "app-1", "app-2", "app-3"))

	code, out, errOut := runCLI(t, "audit", "members", "--store", storePath, m1, m2)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "3 shares from 2 members checked against 2 recorded decryptions in 1 runs: 0 mismatches")

	bad := writeLog("m3",
		share("m3", 1, task.KindTrain, "c", []int{1, 2}, "app-1", "app-2"),
		share("m3", 1, task.KindTrain, "b", []int{1, 2}, "app-1", "app-2", "app-4"),
		share("m3", 1, task.KindTrain, "b", []int{2, 3}, "app-1", "app-2", "app-3"))
	code, out, errOut = runCLI(t, "audit", "members", "--store", storePath, m1, bad)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "do not match")
	assert.Contains(t, out, "an aggregate the coordinator does not record")
	assert.Contains(t, out, "only in the log: app-4; only in the record: app-3")
	assert.Contains(t, out, "active set [2 3]")
	assert.Contains(t, out, "3 mismatches")

	run.Decryptions = append(run.Decryptions, rec(2, "train", "d", "app-1", "app-2"))
	writeRun(run)
	code, out, _ = runCLI(t, "audit", "members", "--store", storePath, m1)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "(coordinator)")
	assert.Contains(t, out, "by 1 clients, below min_contributors 2")

	code, _, errOut = runCLI(t, "audit", "members", m1)
	assert.Equal(t, 2, code, "--store is required")
	assert.Contains(t, errOut, "--store")
	code, _, _ = runCLI(t, "audit", "members", "--store", filepath.Join(dir, "missing.db"), m1)
	assert.Equal(t, 1, code, "a missing store is not created")
}
