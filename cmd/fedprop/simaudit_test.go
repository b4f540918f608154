package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// auditConfig writes a small overfitted synthetic federation with a privacy_audit section.
func auditConfig(t *testing.T, section string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`seed: 3
data:
  source: synthetic
  synthetic: {branches: 2, customers_per_branch: 200, extra_features: 150, consent_opt_out: -1, test_fraction: 0.2}
run:
  rounds: 4
  min_clients: 2
  min_records_plaintext: 0
  max_update_norm: 1000
  train: {epochs: 20, batch_size: 8, learning_rate: 0.2, l2: 0}
`+section), 0o644))
	return path
}

func TestSimAuditWritesItsReportAndRerunsFromIt(t *testing.T) {
	cfg := auditConfig(t, "privacy_audit: {shadows: 4, targets: 100}\n")
	out := filepath.Join(t.TempDir(), "audit")
	code, stdout, stderr := runCLI(t, "sim", "audit", "--config", cfg, "--out", out)
	require.Equal(t, 0, code, stderr)
	for _, want := range []string{"the audited run and 4 shadow runs", "100 targets (50 members, 50 non-members), 4 shadow models",
		"lira ", "loss ", "empirical epsilon lower bound:", "accountant epsilon:            none"} {
		assert.Contains(t, stdout, want)
	}
	assert.Equal(t, []string{"audit.json", "model-card.json", "model-card.md", "roc.csv"}, globBase(t, filepath.Join(out, "*")))
	roc := readCSV(t, filepath.Join(out, "roc.csv"))
	assert.Equal(t, []string{"attack", "threshold", "fpr", "tpr"}, roc[0])
	card, err := os.ReadFile(filepath.Join(out, "model-card.md"))
	require.NoError(t, err)
	assert.Contains(t, string(card), "### Empirical privacy audit")

	// audit.json holds the config it came from: it runs the same audit again.
	again := filepath.Join(t.TempDir(), "again")
	code, _, stderr = runCLI(t, "sim", "audit", "--config", filepath.Join(out, "audit.json"), "--out", again, "--parallel", "1")
	require.Equal(t, 0, code, stderr)
	first, second := readAuditJSON(t, filepath.Join(out, "audit.json")), readAuditJSON(t, filepath.Join(again, "audit.json"))
	delete(first, "wall_seconds")
	delete(second, "wall_seconds")
	assert.Equal(t, first, second)
}

func readAuditJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

func TestSimAuditRefusesBadUsageAndConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no config", []string{"sim", "audit", "--out", dir}, "--config is required"},
		{"no out", []string{"sim", "audit", "--config", "x.yaml"}, "--out is required"},
		{"negative parallel", []string{"sim", "audit", "--config", "x.yaml", "--out", dir, "--parallel", "-1"}, "--parallel"},
		{"too few shadows", []string{"sim", "audit", "--config", auditConfig(t, "privacy_audit: {shadows: 3}\n"), "--out", dir},
			"privacy_audit.shadows: must be between 4 and 1024, got 3"},
		{"a misspelt key", []string{"sim", "audit", "--config", auditConfig(t, "privacy_audit: {shadow: 8}\n"), "--out", dir}, "shadow"},
		{"more targets than the data allows", []string{"sim", "audit", "--config", auditConfig(t, "privacy_audit: {targets: 500}\n"), "--out", dir},
			"privacy_audit.targets: 500 is more than half of the run's 320 training rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			assert.Equal(t, 2, code, stderr)
			assert.True(t, strings.Contains(stderr, tc.msg), stderr)
		})
	}
}
