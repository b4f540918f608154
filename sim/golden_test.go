package sim_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/sim"
)

var update = flag.Bool("update", false, "rewrite the golden scenario traces in testdata/scenarios")

// TestGoldenScenarios runs each scenario of testdata/scenarios (a small federation, its
// failures, a few rounds) through the production coordinator and agents, and compares the
// protocol's trace (registrations, tasks, what became of each answer, commits, the
// coordinator's warnings) with the scenario's .trace file. A change of protocol behaviour
// shows up as a diff to review; `go test ./sim -run Golden -update` accepts it.
func TestGoldenScenarios(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.yaml"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(paths), 5)
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			doc, err := os.ReadFile(path)
			require.NoError(t, err)
			cfg, err := sim.ParseConfig(path, doc)
			require.NoError(t, err)
			var trace bytes.Buffer
			res, err := sim.Run(context.Background(), cfg, sim.Options{Trace: &trace})
			require.NoError(t, err)
			// Every simulation leaves an audit log that verifies.
			require.NoError(t, audit.Verify(res.Audit, nil))
			assert.NotEmpty(t, res.Audit)

			golden := strings.TrimSuffix(path, ".yaml") + ".trace"
			if *update {
				require.NoError(t, os.WriteFile(golden, trace.Bytes(), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden trace: run go test ./sim -run Golden -update and review it")
			assert.Equal(t, string(want), trace.String())
		})
	}
}
