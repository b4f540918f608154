package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDemoWritesMetricsAndSummary(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sim.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("seed: 2\ndata: {source: synthetic, synthetic: {branches: 3, customers_per_branch: 600}}\nrun: {rounds: 2, min_clients: 3}\n"), 0o644))
	out := filepath.Join(dir, "out")
	require.NoError(t, run(cfg, out))
	for _, name := range []string{"metrics.csv", "summary.json"} {
		info, err := os.Stat(filepath.Join(out, name))
		require.NoError(t, err)
		assert.Positive(t, info.Size(), name)
	}
	require.Error(t, run(filepath.Join(dir, "missing.yaml"), out))
}
