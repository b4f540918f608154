package sim_test

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/sim"
)

// TestTreesTrainAsTheCentralizedFit runs a tree run on synthetic branches through the
// production coordinator and agents: one tree a round, level by level from the branches'
// histograms. The federated model is the centralized fit of the same algorithm on the pooled
// rows (same splits; the AUCs agree to rounding), and the run repeats bit for bit.
func TestTreesTrainAsTheCentralizedFit(t *testing.T) {
	const doc = `
seed: 9
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 400}
run:
  rounds: 8
  min_clients: 4
  eval_every: 4
  model:
    kind: gbdt
    gbdt: {max_depth: 3, bins: 32}
`
	cfg := parse(t, doc)
	a, err := sim.Run(context.Background(), cfg, sim.Options{Release: true})
	require.NoError(t, err)
	require.Equal(t, "completed", a.Summary.Status, a.Summary.Message)
	require.Len(t, a.Rounds, 8)
	require.NotNil(t, a.Model)
	require.NotNil(t, a.Model.Trees)
	assert.Len(t, a.Model.Trees.Trees, 8)
	require.NotNil(t, a.Summary.Centralized)
	assert.InDelta(t, a.Summary.Centralized.AUC, a.Summary.Final.AUC, 1e-9, "the federated trees are the centralized fit's")
	assert.Greater(t, a.Summary.Final.AUC, 0.6)
	for i := 1; i < len(a.Rounds); i++ {
		assert.LessOrEqual(t, a.Rounds[i].Test.LogLoss, a.Rounds[i-1].Test.LogLoss+1e-9, "every tree lowers the training loss; the test loss follows here")
	}

	b, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	assert.Equal(t, a.Summary.Final, b.Summary.Final, "same seed, same trees, bit for bit")
	assert.False(t, math.IsNaN(a.Summary.Final.LogLoss))
}

// TestTreesOnBankFull: configs/sim-bank-gbdt.yaml reaches the test AUC the issue asks of it
// on bank-full's fixed test rows, within 0.003 of the same algorithm's centralized fit.
func TestTreesOnBankFull(t *testing.T) {
	cfg := bankConfig(t, "configs/sim-bank-gbdt.yaml")
	res, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	require.Equal(t, "completed", res.Summary.Status, res.Summary.Message)
	assert.GreaterOrEqual(t, res.Summary.Final.AUC, 0.800)
	require.NotNil(t, res.Summary.Centralized)
	assert.InDelta(t, res.Summary.Centralized.AUC, res.Summary.Final.AUC, 0.003)
	t.Logf("federated AUC %.4f, centralized %.4f", res.Summary.Final.AUC, res.Summary.Centralized.AUC)
}

// TestEarlyStoppingEndsARunThatNoLongerImproves: trees that overfit a small federation stop
// once run.early_stopping evaluations in a row have not lowered the evaluation log loss; the
// run completes with the versions it committed and says why it stopped.
func TestEarlyStoppingEndsARunThatNoLongerImproves(t *testing.T) {
	const doc = `
seed: 9
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 500}
run:
  rounds: 80
  min_clients: 4
  eval_every: 2
  early_stopping: 3
  model:
    kind: gbdt
    gbdt: {max_depth: 6, learning_rate: 0.5, min_child_weight: 0}
`
	res, err := sim.Run(context.Background(), parse(t, doc), sim.Options{})
	require.NoError(t, err)
	require.Equal(t, "completed", res.Summary.Status, res.Summary.Message)
	assert.Less(t, res.Summary.Rounds, 80, "stopped before its last tree")
	assert.Contains(t, res.Summary.Message, "stopped early")
	t.Logf("%s", res.Summary.Message)
}

// TestTreesUnderHEGrowThePlaintextTrees: configs/sim-bank-gbdt-he.yaml (every sketch and
// histogram encrypted under the committee's key, each level decrypted by 6 of the 10 members)
// grows the trees configs/sim-bank-gbdt.yaml grows in plaintext: the same splits, node for
// node, leaf values within 1e-6 and the same test AUC within 1e-4. The first trees of the run
// are compared here (the whole run takes a minute, see BENCHMARKS.md); every level of them is
// a separate aggregate that the members check and decrypt.
func TestTreesUnderHEGrowThePlaintextTrees(t *testing.T) {
	const trees = 4
	run := func(path string) *sim.Result {
		cfg := bankConfig(t, path)
		cfg.Run.Rounds, cfg.Run.EvalEvery = trees, trees
		f := false
		cfg.Centralized = &f
		res, err := sim.Run(context.Background(), cfg, sim.Options{Release: true})
		require.NoError(t, err)
		require.Equal(t, "completed", res.Summary.Status, res.Summary.Message)
		require.NotNil(t, res.Model)
		require.NotNil(t, res.Model.Trees)
		return res
	}
	plain, he := run("configs/sim-bank-gbdt.yaml"), run("configs/sim-bank-gbdt-he.yaml")
	assert.Equal(t, "he", he.Summary.SecureAggregation)
	assert.Equal(t, 10, he.Summary.CommitteeSize)
	assert.Equal(t, 6, he.Summary.Threshold)
	p, h := plain.Model.Trees, he.Model.Trees
	assert.Equal(t, p.BaseScore, h.BaseScore, "the label sums are counts: exact after rounding")
	assert.Equal(t, p.Features, h.Features, "so are the sketches: the same bin edges")
	require.Len(t, h.Trees, trees)
	worst := 0.0
	for i := range p.Trees {
		pn, hn := p.Trees[i].Nodes, h.Trees[i].Nodes
		require.Len(t, hn, len(pn), "tree %d", i)
		for k := range pn {
			a, b := pn[k], hn[k]
			assert.Equal(t, [5]any{a.Left, a.Right, a.Feature, a.Bin, a.MissingLeft}, [5]any{b.Left, b.Right, b.Feature, b.Bin, b.MissingLeft}, "tree %d node %d: the same split", i, k)
			assert.Equal(t, a.Count, b.Count, "tree %d node %d: the same rows", i, k)
			worst = math.Max(worst, math.Abs(a.Value-b.Value))
		}
	}
	assert.Less(t, worst, 1e-6, "leaf values")
	assert.InDelta(t, plain.Summary.Final.AUC, he.Summary.Final.AUC, 1e-4)
	assert.Positive(t, he.Summary.CiphertextsPerClientLevel)
	assert.Positive(t, he.Summary.BytesPerClientTree)
	t.Logf("max |leaf he - leaf plain| = %.3g; AUC %.6f / %.6f; %.1f ciphertexts per client per level, %.0f bytes per client per tree",
		worst, plain.Summary.Final.AUC, he.Summary.Final.AUC, he.Summary.CiphertextsPerClientLevel, he.Summary.BytesPerClientTree)
}
