package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// modelVersions returns n versions oldest first, as the coordinator lists them; even ones
// carry an evaluation.
func modelVersions(n int) []grpctransport.ModelInfo {
	created := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	out := make([]grpctransport.ModelInfo, 0, n)
	for v := 1; v <= n; v++ {
		m := grpctransport.ModelInfo{Version: uint64(v), RunID: "q3", Round: v, Created: created.Add(time.Duration(v) * time.Minute), Status: "candidate"}
		if v%2 == 0 {
			m.AUC, m.LogLoss, m.Accuracy = 0.8, 0.4, 0.9
		}
		out = append(out, m)
	}
	return out
}

// tableVersions reads the VERSION column of a model list table.
func tableVersions(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.True(t, strings.HasPrefix(lines[0], "VERSION"), out)
	var versions []string
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "...") {
			break
		}
		versions = append(versions, strings.Fields(l)[0])
	}
	return versions
}

// TestModelListTableIsNewestFirstAndLimited: the table lists the newest --limit versions,
// newest first, and says how many older ones it left out.
func TestModelListTableIsNewestFirstAndLimited(t *testing.T) {
	tests := []struct {
		name     string
		n, limit int
		first    string
		rows     int
		more     string
	}{
		{"default limit of 20 out of 25", 25, 20, "25", 20, "... and 5 older versions (--limit 0 lists every version)\n"},
		{"one left out", 3, 2, "3", 2, "... and 1 older version (--limit 0 lists every version)\n"},
		{"fewer than the limit", 3, 20, "3", 3, ""},
		{"exactly the limit", 20, 20, "20", 20, ""},
		{"no limit", 25, 0, "25", 25, ""},
		{"no versions", 0, 20, "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, writeModelList(&buf, modelVersions(tt.n), tt.limit, "table"))
			versions := tableVersions(t, buf.String())
			assert.Len(t, versions, tt.rows)
			if tt.rows > 0 {
				assert.Equal(t, tt.first, versions[0], "newest first")
				assert.Equal(t, fmt.Sprint(tt.n-tt.rows+1), versions[len(versions)-1])
			}
			if tt.more == "" {
				assert.NotContains(t, buf.String(), "older")
			} else {
				assert.True(t, strings.HasSuffix(buf.String(), tt.more), buf.String())
			}
		})
	}
}

// TestModelListJSON: --output json is one document with stable snake_case names: the total,
// how many were left out, and the versions newest first, a missing metric as null.
func TestModelListJSON(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, writeModelList(&buf, modelVersions(25), 2, "json"))
	assert.JSONEq(t, `{
		"total": 25,
		"more": 23,
		"versions": [
			{"version": 25, "run_id": "q3", "round": 25, "created": "2025-03-01T12:25:00Z", "auc": null, "log_loss": null, "accuracy": null, "status": "candidate"},
			{"version": 24, "run_id": "q3", "round": 24, "created": "2025-03-01T12:24:00Z", "auc": 0.8, "log_loss": 0.4, "accuracy": 0.9, "status": "candidate"}
		]
	}`, buf.String())

	buf.Reset()
	require.NoError(t, writeModelList(&buf, nil, 20, "json"))
	assert.JSONEq(t, `{"total": 0, "more": 0, "versions": []}`, buf.String(), "an empty list, not null")
}

// TestModelListAgainstACoordinator runs `fedprop model list` against a coordinator holding
// three versions.
func TestModelListAgainstACoordinator(t *testing.T) {
	g := newGatedStore(t)
	code, out, errOut := g.approve(t, g.owner, "list", "--limit", "2")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, []string{"3", "2"}, tableVersions(t, out))
	assert.Contains(t, out, "... and 1 older version")

	code, out, errOut = g.approve(t, g.owner, "list", "--output", "json")
	require.Equal(t, 0, code, errOut)
	var doc struct {
		Total    int `json:"total"`
		More     int `json:"more"`
		Versions []struct {
			Version uint64 `json:"version"`
			RunID   string `json:"run_id"`
			Status  string `json:"status"`
		} `json:"versions"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc), out)
	assert.Equal(t, 3, doc.Total)
	assert.Zero(t, doc.More)
	require.Len(t, doc.Versions, 3)
	assert.Equal(t, uint64(3), doc.Versions[0].Version)
	assert.Equal(t, "r", doc.Versions[0].RunID)
	assert.NotEmpty(t, doc.Versions[0].Status)
}

func TestModelListUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"negative limit", []string{"--limit", "-1"}, "--limit: must be 0 (every version) or more, got -1"},
		{"unknown output", []string{"--output", "xml"}, `--output: "xml" is not table or json`},
		{"limit not a number", []string{"--limit", "all"}, `invalid argument "all" for "--limit" flag`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"model", "list", "--coordinator", "127.0.0.1:1", "--insecure"}, tt.args...)...)
			assert.Equal(t, 2, code, errOut)
			assert.Contains(t, errOut, tt.msg)
		})
	}
}

// TestModelPullWithNothingApprovedNamesCandidate: pulling the latest approved version when no
// version is approved fails with a hint naming --candidate.
func TestModelPullWithNothingApprovedNamesCandidate(t *testing.T) {
	g := newGatedStore(t)
	code, _, errOut := g.approve(t, g.owner, "pull", "--out", filepath.Join(t.TempDir(), "model.json"))
	assert.Equal(t, 1, code, errOut)
	assert.Contains(t, errOut, "no approved version yet")
	assert.Contains(t, errOut, "hint: no version is approved yet; add --candidate to pull the latest version awaiting approval, for review")
}

// TestWithCandidateHint: the hint goes by the coordinator's sentinels, never by the words of
// an error.
func TestWithCandidateHint(t *testing.T) {
	notApproved := fmt.Errorf("pull version 3 from c: %w", fmt.Errorf("version 3 is candidate: %w", coordinator.ErrNotApproved))
	nothingApproved := fmt.Errorf("pull version latest from c: %w (no approved version yet)", coordinator.ErrNotFound)
	noSuchVersion := fmt.Errorf("pull version 9 from c: %w", coordinator.ErrNotFound)
	tests := []struct {
		name      string
		err       error
		version   uint64
		candidate bool
		hint      string
	}{
		{"a version not approved", notApproved, 3, false, "add --candidate to pull it anyway"},
		{"no version approved", nothingApproved, 0, false, "add --candidate to pull the latest version awaiting approval"},
		{"no such version", noSuchVersion, 9, false, ""},
		{"already a candidate pull", nothingApproved, 0, true, ""},
		{"only the words of one", errors.New("version 3 is candidate: not approved; no approved version yet: not found"), 0, false, ""},
		{"another failure", errors.New("connection refused"), 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := withCandidateHint(tt.err, tt.version, tt.candidate)
			assert.ErrorIs(t, got, tt.err, "the cause stays in the chain")
			if tt.hint == "" {
				assert.Equal(t, tt.err, got)
				return
			}
			assert.Contains(t, got.Error(), tt.hint)
			assert.Contains(t, got.Error(), "--candidate")
		})
	}
}
