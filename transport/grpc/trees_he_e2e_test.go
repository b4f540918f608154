package grpctransport_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
)

// TestBranchesGrowTreesUnderTheCommitteeKeyOverGRPC: four branches, all of them committee
// members (T=3), grow trees over real sockets with every sketch and level encrypted under
// their collective key and decrypted by three of them, level by level. The trees are those of
// the same run in plaintext, node for node, with leaves within 1e-6. The same run with
// record-level DP then has each branch add its 1/sqrt(4) share of the noise to every level;
// members that enforce a noise floor help decrypt every level, and the run's epsilon is the
// composition of its releases.
func TestBranchesGrowTreesUnderTheCommitteeKeyOverGRPC(t *testing.T) {
	cfg := synth.Config{Branches: 4, CustomersPerBranch: 250, Seed: 17}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var committee []string
	for _, b := range branches {
		committee = append(committee, b.Name)
	}
	p := gbdt.DefaultParams()
	p.MaxDepth, p.Bins, p.MinChildWeight = 3, 16, 1
	grow := func(id, mode string, pc coordinator.PrivacyConfig) (coordinator.RunState, coordinator.ModelVersion) {
		rc := coordinator.RunConfig{ID: id, Rounds: 3, MinClients: 4, MinCohort: 4, Quorum: 4, RoundDeadline: 5 * time.Second, Seed: 8,
			EvalEvery: 3, MaxAttempts: 3, Strategy: strategy.Config{Name: "fedavg"}, Model: coordinator.ModelConfig{Kind: coordinator.ModelGBDT, GBDT: &p},
			Privacy: pc}
		if mode == coordinator.SecAggHE {
			rc.SecureAggregation = coordinator.SecureAggregationConfig{Mode: mode, Committee: committee, Threshold: 3, MinContributors: 2}
		}
		rc = rc.WithDefaults()
		f := startFed(t, rc, schema)
		dir := t.TempDir()
		floor := privacy.Floor{}
		if pc.Mechanism == coordinator.DPRecord {
			floor = privacy.Floor{Require: privacy.RequireRecord, MinNoiseMultiplier: 0.5, MaxClipNorm: 1}
		}
		for _, b := range branches {
			opts := client.SessionOptions{Floor: floor}
			if mode == coordinator.SecAggHE {
				state := client.StateDir(filepath.Join(dir, b.Name))
				identity, err := state.Identity()
				require.NoError(t, err)
				member, err := client.NewMember(client.MemberConfig{MinContributors: 2, Identity: identity, Persist: state.SaveMember, Floor: floor})
				require.NoError(t, err)
				opts.Member, opts.RequireEncryption = member, true
			}
			s, err := client.NewSession(b.Name, schema, b.Train, b.Test, opts)
			require.NoError(t, err)
			runAgent(t, f.addr, s, nil, nil)
		}
		run := f.waitFinished(t, id)
		require.Equal(t, coordinator.RunCompleted, run.Status, run.Message)
		versions, err := f.store.Versions(context.Background())
		require.NoError(t, err)
		require.Len(t, versions, 3)
		last := versions[len(versions)-1]
		require.NotNil(t, last.Trees)
		return run, last
	}

	_, plain := grow("trees-plain", coordinator.SecAggNone, coordinator.PrivacyConfig{})
	_, he := grow("trees-he", coordinator.SecAggHE, coordinator.PrivacyConfig{})
	require.Len(t, he.Trees.Trees, len(plain.Trees.Trees))
	worst := 0.0
	for i, tree := range plain.Trees.Trees {
		other := he.Trees.Trees[i].Nodes
		require.Len(t, other, len(tree.Nodes), "tree %d", i)
		for k, a := range tree.Nodes {
			b := other[k]
			assert.Equal(t, [6]any{a.Left, a.Right, a.Feature, a.Bin, a.MissingLeft, a.Count}, [6]any{b.Left, b.Right, b.Feature, b.Bin, b.MissingLeft, b.Count},
				"tree %d node %d", i, k)
			worst = math.Max(worst, math.Abs(a.Value-b.Value))
		}
	}
	assert.Less(t, worst, 1e-6)
	t.Logf("trees under he: max |leaf he - leaf plain| = %.3g", worst)

	run, dp := grow("trees-he-dp", coordinator.SecAggHE, coordinator.PrivacyConfig{Mechanism: coordinator.DPRecord, Epsilon: 8, Delta: 1e-5})
	require.NotNil(t, run.Privacy)
	require.NotNil(t, dp.Privacy)
	assert.LessOrEqual(t, run.Privacy.Epsilon, 8.0)
	assert.Positive(t, run.Privacy.Steps)
	acc := privacy.NewAccountant(nil)
	for _, r := range run.Privacy.Releases {
		if r.Steps > 0 {
			require.NoError(t, acc.Compose(r.SamplingRate, r.NoiseMultiplier, r.Steps))
		}
	}
	eps, _, err := acc.Epsilon(run.Privacy.Delta, privacy.PLD)
	require.NoError(t, err)
	assert.InDelta(t, run.Privacy.Epsilon, eps, 1e-9)
	t.Logf("trees under he and DP: epsilon %.4f over %d steps at z %.4f", run.Privacy.Epsilon, run.Privacy.Steps, run.Privacy.NoiseMultiplier)
}
