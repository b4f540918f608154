package sim_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/sim"
)

// crossDevice is a small cross-device federation: 300 app clients of about 10 records (about 8
// to train on, unreliable: 10% drop each task) and 4 reliable branches of about 400, whose
// committee (any 3 of the 4) holds the collective key.
const crossDevice = `
seed: 21
data:
  source: synthetic
  synthetic: {branches: 300, customers_per_branch: 10}
  branch_clients: {count: 4, customers_per_branch: 400}
committee_size: 4
failures: {dropout: 0.1}
run:
  rounds: 3
  min_clients: 200
  cohort_fraction: 0.3
  quorum: 30
  eval_every: 3
  histogram_bins: 50
  train: {epochs: 1, batch_size: 8, learning_rate: 0.1}
  secure_aggregation: {mode: he, threshold: 3, min_contributors: 30}
centralized: false
`

// TestCrossDeviceAppClientsEncryptAndHoldNoKeys: the committee comes from the branches; app
// clients never hold key material, get no keygen or decrypt task and send nothing in
// plaintext, while their dropouts do not stop the run; and the run trains the model its
// plaintext twin trains.
func TestCrossDeviceAppClientsEncryptAndHoldNoKeys(t *testing.T) {
	he := parse(t, crossDevice)
	assert.Equal(t, []string{"branch-000", "branch-001", "branch-002", "branch-003"}, he.Run.SecureAggregation.Committee)
	res, err := sim.Run(context.Background(), he, sim.Options{})
	require.NoError(t, err)
	s := res.Summary
	assert.Equal(t, "completed", s.Status)
	assert.Equal(t, 3, s.Rounds)
	assert.Positive(t, s.Dropped, "app clients dropped tasks")

	require.Len(t, s.Populations, 2)
	branch, app := s.Populations[0], s.Populations[1]
	assert.Equal(t, "branch", branch.Kind)
	assert.Equal(t, 4, branch.Clients)
	assert.Equal(t, 4, branch.KeyHolders)
	assert.Positive(t, branch.Tasks["keygen"])
	assert.Positive(t, branch.Tasks["decrypt"])

	assert.Equal(t, "app", app.Kind)
	assert.Greater(t, app.Clients, 250)
	assert.Less(t, app.TrainRows, 12*app.Clients, "about 8 training records each")
	assert.Zero(t, app.KeyHolders, "app clients hold no key material")
	assert.Zero(t, app.Tasks["keygen"], "app clients take no part in the committee setup")
	assert.Zero(t, app.Tasks["decrypt"], "app clients never help decrypt")
	assert.Positive(t, app.Tasks["train"])
	assert.Positive(t, app.Tasks["evaluate"])
	assert.Zero(t, app.PlaintextResults, "app clients send only ciphertexts")
	assert.Positive(t, app.EncryptedResults)
	assert.Zero(t, branch.PlaintextResults)

	// The same federation in plaintext (a research opt-out: app clients hold about 10 records)
	// trains the same model: secure aggregation changes who can read the sums, not the sums.
	plain := parse(t, strings.Replace(strings.Replace(crossDevice,
		"secure_aggregation: {mode: he, threshold: 3, min_contributors: 30}", "secure_aggregation: {mode: none}", 1),
		"  rounds: 3\n", "  rounds: 3\n  min_records_plaintext: 0\n", 1))
	// The he run's first phase starts after the committee setup, when every client has
	// registered; the twin waits for all of them too, so that both ask the same clients.
	plain.Run.MinClients = s.Clients
	twin, err := sim.Run(context.Background(), plain, sim.Options{})
	require.NoError(t, err)
	assert.Equal(t, s.Dropped, twin.Summary.Dropped, "the same failures")
	assert.Less(t, maxAbsDiff(t, twin.Summary.Weights, s.Weights), 1e-6)
	assert.InDelta(t, twin.Summary.Final.AUC, s.Final.AUC, 1e-4)
	assert.Greater(t, s.Final.AUC, 0.7, "it trains")
	assert.Equal(t, twin.Summary.Populations[1].Tasks, app.Tasks)
	assert.Positive(t, twin.Summary.Populations[1].PlaintextResults)
	assert.Zero(t, twin.Summary.Populations[1].KeyHolders)
}

// TestPlaintextSimulationOfSmallClientsNeedsTheOptOut: a plaintext simulation of app clients
// stops with the coordinator's refusal, which names the setting and the fix; with the explicit
// opt-out it runs and says so in summary.json and in its printed summary; in he mode nothing
// needs opting out.
func TestPlaintextSimulationOfSmallClientsNeedsTheOptOut(t *testing.T) {
	const doc = `
seed: 4
data:
  source: synthetic
  synthetic: {branches: 60, customers_per_branch: 20}
run:
  rounds: 1
  min_clients: 40
  quorum: 10
%s
centralized: false
`
	_, err := sim.Run(context.Background(), parse(t, strings.Replace(doc, "%s\n", "", 1)), sim.Options{})
	require.ErrorIs(t, err, coordinator.ErrTooFewRecords)
	assert.Contains(t, err.Error(), "run.min_records_plaintext 100")
	assert.Contains(t, err.Error(), "secure_aggregation.mode he")

	res, err := sim.Run(context.Background(), parse(t, strings.Replace(doc, "%s", "  min_records_plaintext: 0", 1)), sim.Options{})
	require.NoError(t, err)
	s := res.Summary
	assert.True(t, s.SmallClientsInPlaintext)
	assert.Equal(t, s.Clients, s.ClientsBelowMinRecords, "every client holds about 16 training records")

	dir := t.TempDir()
	require.NoError(t, sim.WriteResults(dir, res))
	raw, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	require.NoError(t, err)
	var written map[string]any
	require.NoError(t, json.Unmarshal(raw, &written))
	assert.Equal(t, true, written["small_clients_in_plaintext"])
	var printed strings.Builder
	sim.PrintSummary(&printed, s, dir)
	assert.Contains(t, printed.String(), "research opt-out: plaintext aggregation with run.min_records_plaintext 0")

	he, err := sim.Run(context.Background(), parse(t, strings.Replace(doc, "%s",
		"  secure_aggregation: {mode: he, threshold: 2, min_contributors: 10}\ncommittee_size: 3", 1)), sim.Options{})
	require.NoError(t, err)
	assert.False(t, he.Summary.SmallClientsInPlaintext)
	assert.Zero(t, he.Summary.ClientsBelowMinRecords)
}

// TestSummaryStatesTheSimulatorSeededTheClientsRandomness: a simulation repeats because the
// simulator seeds every client's private source, which a production client never allows;
// summary.json and the printed summary say so.
func TestSummaryStatesTheSimulatorSeededTheClientsRandomness(t *testing.T) {
	cfg := parse(t, smallSynthetic)
	res, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	r := res.Summary.ClientRandomness
	assert.True(t, r.SeededBySimulator)
	assert.Equal(t, cfg.Seed, r.Seed)
	assert.Contains(t, r.Note, "simulation only")
	assert.Contains(t, r.Note, "crypto/rand")
	assert.Contains(t, r.Covers, "encryption")

	dir := t.TempDir()
	require.NoError(t, sim.WriteResults(dir, res))
	raw, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	require.NoError(t, err)
	var written struct {
		ClientRandomness struct {
			SeededBySimulator bool   `json:"seeded_by_simulator"`
			Seed              uint64 `json:"seed"`
		} `json:"client_randomness"`
		SmallClientsInPlaintext *bool `json:"small_clients_in_plaintext"`
	}
	require.NoError(t, json.Unmarshal(raw, &written))
	assert.True(t, written.ClientRandomness.SeededBySimulator)
	assert.Equal(t, cfg.Seed, written.ClientRandomness.Seed)
	require.NotNil(t, written.SmallClientsInPlaintext, "always written, false here")
	assert.False(t, *written.SmallClientsInPlaintext)
	var printed strings.Builder
	sim.PrintSummary(&printed, res.Summary, dir)
	assert.Contains(t, printed.String(), "seeded from seed 9 by the simulator, for reproducibility: simulation only")
}

func TestBranchClientsConfig(t *testing.T) {
	cases := []struct {
		name, doc, wantErr string
	}{
		{"only with synthetic data", "data:\n  source: csv\n  csv: {path: a.csv, schema: s.yaml}\n  branch_clients: {count: 2}\n", "data.branch_clients: only with data.source synthetic"},
		{"committee from the branches", "data:\n  branch_clients: {count: 2}\ncommittee_size: 3\nrun: {secure_aggregation: {mode: he, threshold: 2}}\n", "committee_size: 3, but the committee comes from the 2 data.branch_clients"},
		{"no negative count", "data:\n  branch_clients: {count: -1}\n", "data.branch_clients: count and customers_per_branch must not be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sim.ParseConfig("test", []byte(tc.doc))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
	cfg := parse(t, "data:\n  branch_clients: {count: 3}\n")
	assert.Equal(t, 2000, cfg.Data.BranchClients.CustomersPerBranch, "default size of a branch")
}

// TestConfigsSimAppHE: the cross-device configuration parses as specified, and its
// plaintext twin differs only in the aggregation (and the opt-out that plaintext needs).
func TestConfigsSimAppHE(t *testing.T) {
	load := func(name string) sim.Config {
		raw, err := os.ReadFile(filepath.Join("..", "configs", name))
		require.NoError(t, err)
		cfg, err := sim.ParseConfig(name, raw)
		require.NoError(t, err)
		return cfg
	}
	he := load("sim-app-he.yaml")
	assert.Equal(t, 100000, he.Data.Synthetic.Branches)
	assert.Equal(t, 10, he.Data.Synthetic.CustomersPerBranch)
	assert.Equal(t, 10, he.Data.BranchClients.Count)
	assert.Equal(t, 100, he.Run.Rounds)
	assert.Equal(t, coordinator.DPClient, he.Run.Privacy.Mechanism)
	assert.InDelta(t, 0.01, he.Run.Privacy.SamplingRate, 0)
	assert.InDelta(t, 0.1, he.Failures.Dropout, 0)
	sa := he.Run.SecureAggregation
	assert.Equal(t, coordinator.SecAggHE, sa.Mode)
	assert.Equal(t, 6, sa.Threshold)
	require.Len(t, sa.Committee, 10)
	for _, id := range sa.Committee {
		assert.True(t, strings.HasPrefix(id, "branch-"), "committee member %s is a branch", id)
	}
	assert.False(t, he.Run.SmallClientsInPlaintext())

	plain := load("sim-app-he-plaintext.yaml")
	assert.True(t, plain.Run.SmallClientsInPlaintext())
	plain.Run.SecureAggregation, plain.Run.MinRecordsPlaintext = he.Run.SecureAggregation, he.Run.MinRecordsPlaintext
	plain.CommitteeSize = he.CommitteeSize
	assert.Equal(t, he, plain, "the twin differs only in its aggregation")

	app := load("sim-app.yaml")
	assert.True(t, app.Run.SmallClientsInPlaintext(), "the plaintext research reference opts out explicitly")
}
