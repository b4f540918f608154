package sim_test

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/sim"
)

// TestARefusedTreeResultStaysOutOfTheSum: a branch whose label sums and histograms the
// coordinator refuses (sign-flipped: negative counts) adds nothing to the trees. The base score
// is the log-odds of the honest branches' labels alone, and every tree's root counts their rows
// alone: a refused result is not summed before it is refused.
func TestARefusedTreeResultStaysOutOfTheSum(t *testing.T) {
	cfg := parse(t, `
seed: 9
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 400}
attack: {kind: sign_flip, fraction: 0.25}
run:
  rounds: 3
  min_clients: 3
  eval_every: 3
  model:
    kind: gbdt
    gbdt: {max_depth: 3, bins: 16}
`)
	f := false
	cfg.Centralized = &f
	world, err := sim.Load(context.Background(), cfg)
	require.NoError(t, err)
	names := make([]string, len(world.Clients))
	for i, c := range world.Clients {
		names[i] = c.Name
	}
	malicious := cfg.Attack.Malicious(names, cfg.Seed)
	require.Len(t, malicious, 1)

	rows, positives := 0, 0.0
	for _, c := range world.Clients {
		if malicious[c.Name] {
			continue
		}
		rows += c.Train.Len()
		for _, y := range c.Train.Label {
			positives += y
		}
	}

	res, err := sim.Run(context.Background(), cfg, sim.Options{World: world, Release: true})
	require.NoError(t, err)
	require.Equal(t, "completed", res.Summary.Status, res.Summary.Message)
	assert.Equal(t, 3, res.Summary.Rejected, "the attacker's label sums and each tree's first level are refused")
	require.NotNil(t, res.Model)
	m := res.Model.Trees
	require.NotNil(t, m)
	require.Len(t, m.Trees, 3)

	p := positives / float64(rows)
	assert.InDelta(t, math.Log(p/(1-p)), m.BaseScore, 1e-12, "the base score is the honest branches' log-odds")
	for i, tr := range m.Trees {
		assert.EqualValues(t, rows, tr.Nodes[0].Count, "tree %d's root counts the honest branches' rows", i)
	}
}
