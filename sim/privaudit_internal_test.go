package sim

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLeaveOutSharesTheRowsAndKeepsThePartition: a run of the audit sees every client's rows
// but the targets it leaves out, each target at its own client, the values shared with the
// loaded world rather than copied.
func TestLeaveOutSharesTheRowsAndKeepsThePartition(t *testing.T) {
	cfg := Config{Seed: 4, Data: DataConfig{Source: "synthetic"}}
	cfg.Data.Synthetic.Branches, cfg.Data.Synthetic.CustomersPerBranch = 3, 200
	cfg = cfg.WithDefaults()
	w, err := Load(context.Background(), cfg)
	require.NoError(t, err)
	targets, err := pickTargets(w, PrivacyAuditConfig{Targets: 100, Seed: 9})
	require.NoError(t, err)
	require.Len(t, targets, 100)
	for i := 1; i < len(targets); i++ {
		prev, t2 := targets[i-1], targets[i]
		assert.True(t, prev.client < t2.client || prev.client == t2.client && prev.row < t2.row, "in (client, row) order")
	}
	in := make([]bool, len(targets))
	out := map[target]bool{}
	for i := range in {
		in[i] = i%3 != 0
		if !in[i] {
			out[targets[i]] = true
		}
	}
	v := w.leaveOut(targets, in)
	require.Len(t, v.Clients, len(w.Clients))
	assert.Equal(t, w.TrainRows()-len(out), v.TrainRows())
	assert.Same(t, w.Test, v.Test)
	for c, cd := range w.Clients {
		got := v.Clients[c].Train
		k := 0
		for r := range cd.Train.Len() {
			if out[target{c, r}] {
				continue
			}
			assert.Same(t, &cd.Train.Numeric[r][0], &got.Numeric[k][0], "client %d row %d: shared, not copied", c, r)
			assert.Equal(t, cd.Train.Label[r], got.Label[k])
			k++
		}
		assert.Equal(t, k, got.Len())
		assert.Equal(t, cd.Name, v.Clients[c].Name)
	}
	rows := gatherRows(w, targets)
	require.Equal(t, len(targets), rows.Len())
	for i, ref := range targets {
		assert.Equal(t, w.Clients[ref.client].Train.Numeric[ref.row], rows.Numeric[i])
		assert.Equal(t, w.Clients[ref.client].Train.Label[ref.row], rows.Label[i])
	}
}

// TestPickTargetsLeavesEveryClientARow: a tiny client never has all its rows attacked, so no
// run of the audit leaves it without data.
func TestPickTargetsLeavesEveryClientARow(t *testing.T) {
	cfg := Config{Seed: 2, Data: DataConfig{Source: "synthetic"}}
	cfg.Data.Synthetic.Branches, cfg.Data.Synthetic.CustomersPerBranch = 6, 8
	cfg = cfg.WithDefaults()
	w, err := Load(context.Background(), cfg)
	require.NoError(t, err)
	n := w.TrainRows() / 2
	targets, err := pickTargets(w, PrivacyAuditConfig{Targets: n, Seed: 1})
	require.NoError(t, err)
	per := make([]int, len(w.Clients))
	for _, ref := range targets {
		per[ref.client]++
	}
	for c, cd := range w.Clients {
		assert.Less(t, per[c], cd.Train.Len(), "client %s", cd.Name)
	}
}
