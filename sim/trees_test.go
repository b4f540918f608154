package sim_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/release/modelfile"
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

// TestTreesUnderDPSpendTheirBudgetLevelByLevel: configs/sim-bank-gbdt-dp.yaml (record-level
// DP, every branch noising its own label sums, sketch and histograms; in he mode each adds its
// 1/sqrt(m) share) stays within epsilon 4 at delta 1e-5: the standardisation from public
// bounds, one release per tree with the levels it took (the first with the sketch), and the
// noised evaluations compose, in one accountant, to the epsilon the model card states. The
// noise leaves a useful model: test AUC 0.733 here (0.764 for the same trees without DP).
func TestTreesUnderDPSpendTheirBudgetLevelByLevel(t *testing.T) {
	cfg := bankConfig(t, "configs/sim-bank-gbdt-dp.yaml")
	f := false
	cfg.Centralized = &f
	var trace bytes.Buffer
	res, err := sim.Run(context.Background(), cfg, sim.Options{Trace: &trace})
	require.NoError(t, err)
	assert.NotContains(t, trace.String(), "far below the noise", "its regularisation is set for the noise")
	s := res.Summary
	require.Equal(t, "completed", s.Status, s.Message)
	require.NotNil(t, s.Privacy)
	p := s.Privacy
	t.Logf("AUC %.4f at epsilon %.4f (delta %g): z %.4f over %d steps, evaluations at z %.4f", s.Final.AUC, p.Epsilon, p.Delta, p.NoiseMultiplier, p.Steps, p.EvaluationNoiseMultiplier)
	assert.Equal(t, "record", p.Mechanism)
	assert.LessOrEqual(t, p.Epsilon, 4.0)
	assert.Greater(t, p.Epsilon, 3.9, "the derived noise spends the budget, not far less")
	assert.GreaterOrEqual(t, s.Final.AUC, 0.72)

	const maxDepth = 3
	require.NotEmpty(t, p.Releases)
	assert.Equal(t, modelfile.MechanismPublicBounds, p.Releases[0].Mechanism, "no statistics are read: public bounds")
	acc := privacy.NewAccountant(nil)
	steps, trees := 0, 0
	for _, r := range p.Releases[1:] {
		switch r.Kind {
		case modelfile.ReleaseTrain:
			trees++
			assert.Equal(t, modelfile.MechanismTreeHistograms, r.Mechanism)
			assert.Equal(t, p.NoiseMultiplier, r.NoiseMultiplier, "every share arrived: the planned noise")
			limit := maxDepth
			if r.Round == 1 {
				limit++ // the sketch
			}
			assert.LessOrEqual(t, r.Steps, limit, "tree %d", r.Round)
			assert.Positive(t, r.Steps)
			require.NoError(t, acc.Compose(1, r.NoiseMultiplier, r.Steps))
			steps += r.Steps
		case modelfile.ReleaseEvaluate:
			require.NoError(t, acc.Compose(1, r.NoiseMultiplier, 1))
		}
	}
	assert.Equal(t, 10, trees)
	assert.Equal(t, p.Steps, steps)
	eps, _, err := acc.Epsilon(p.Delta, privacy.PLD)
	require.NoError(t, err)
	assert.InDelta(t, p.Epsilon, eps, 1e-9, "the card's epsilon is the composition of its releases")
}

// TestTreesStopAtTheirPrivacyBudget: with the noise fixed and a budget that does not hold
// every tree, the run stops before a tree whose levels (and evaluation) would exceed it, and
// the epsilon spent stays within the budget.
func TestTreesStopAtTheirPrivacyBudget(t *testing.T) {
	const z = 2.0
	budget, _, err := privacy.Epsilon(1, z, 12, 1e-5, nil, privacy.PLD)
	require.NoError(t, err)
	res, err := sim.Run(context.Background(), parse(t, fmt.Sprintf(`
seed: 9
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 400}
run:
  rounds: 20
  min_clients: 4
  model:
    kind: gbdt
    gbdt: {max_depth: 2, bins: 16, lambda: 50, min_child_weight: 20}
  privacy: {mechanism: record, noise_multiplier: %v, epsilon: %v, delta: 1.0e-5, evaluation_noise_multiplier: %v}
`, z, budget, z)), sim.Options{})
	require.NoError(t, err)
	s := res.Summary
	require.Equal(t, "completed", s.Status, s.Message)
	assert.Contains(t, s.Message, "stopped by the privacy budget")
	assert.Less(t, s.Rounds, 20)
	assert.Positive(t, s.Rounds)
	require.NotNil(t, s.Privacy)
	assert.LessOrEqual(t, s.Privacy.Epsilon, budget)
	t.Logf("%s; epsilon %.4f of %.4f", s.Message, s.Privacy.Epsilon, budget)
}

// TestDPTreesWithoutRegularisationWarn: a DP tree run left at the trees' defaults (lambda 1,
// min_child_weight 1, 256 bins) runs, and its operator is told that the noise on a node's
// hessian sum is hundreds of times its regularisation.
func TestDPTreesWithoutRegularisationWarn(t *testing.T) {
	var trace bytes.Buffer
	res, err := sim.Run(context.Background(), parse(t, `
seed: 7
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 400}
run:
  rounds: 2
  min_clients: 4
  model: {kind: gbdt}
  privacy: {mechanism: record, epsilon: 4}
`), sim.Options{Trace: &trace})
	require.NoError(t, err)
	require.Equal(t, "completed", res.Summary.Status, res.Summary.Message)
	assert.Contains(t, trace.String(), "far below the noise of a node's hessian sum")
}
