package sim_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/sim"
)

// TestTreeImportanceIsTheCentralMeanAbsSHAP: a tree run's committed version states each
// feature's mean |TreeSHAP value| over the federated evaluation's records, from the clients'
// summed |SHAP| sums: the figure gbdt.MeanAbsSHAP gives over the clients' evaluation rows
// pooled in one place, in plaintext and under he (where the sums are encrypted with the rest
// of the evaluation and only their total is decrypted). The card states it beside every
// feature's share of the trees' split gain, which needs no client data.
func TestTreeImportanceIsTheCentralMeanAbsSHAP(t *testing.T) {
	const doc = `
seed: 9
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 400}
run:
  rounds: 3
  min_clients: 4
  eval_every: 3
  model:
    kind: gbdt
    gbdt: {max_depth: 3, bins: 16}
`
	tests := []struct {
		name, extra string
	}{
		{"plaintext", ""},
		{"he", `
  secure_aggregation: {mode: he, threshold: 3}
committee_size: 4
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parse(t, doc+tt.extra)
			f := false
			cfg.Centralized = &f
			world, err := sim.Load(context.Background(), cfg)
			require.NoError(t, err)
			res, err := sim.Run(context.Background(), cfg, sim.Options{World: world, Release: true})
			require.NoError(t, err)
			require.Equal(t, "completed", res.Summary.Status, res.Summary.Message)
			require.Equal(t, map[string]string{"plaintext": "none", "he": "he"}[tt.name], res.Summary.SecureAggregation)
			require.NotNil(t, res.Model)
			m := res.Model.Trees
			require.NotNil(t, m)
			require.Len(t, m.Trees, 3)

			// Every client answered the last evaluation: its rows are every client's held-out rows.
			parts := make([]*dataset.Dataset, len(world.Clients))
			for i, c := range world.Clients {
				parts[i] = c.Test
			}
			pooled := dataset.Concat(parts...)
			sums, err := m.AbsSHAPSums(pooled)
			require.NoError(t, err)
			want, err := gbdt.MeanAbsSHAP(sums, len(m.Features))
			require.NoError(t, err)

			card := res.ModelCard
			require.NotNil(t, card)
			assert.Equal(t, modelcard.MeanAbsSHAPMethod, card.ImportanceMethod)
			assert.Equal(t, modelcard.GainMethod, card.GainMethod)
			assert.InDelta(t, float64(pooled.Len()), card.TrainingData.EvaluationRecords, 1e-6)
			gain := m.GainImportance()
			totalGain, shares := 0.0, 0.0
			for _, g := range gain {
				totalGain += g
			}
			for k, ft := range m.Features {
				i := -1
				for j, cf := range card.Features {
					if cf.Name == ft.Name {
						i = j
					}
				}
				require.GreaterOrEqual(t, i, 0, "feature %q on the card", ft.Name)
				cf := card.Features[i]
				require.NotNil(t, cf.Importance, "feature %q", ft.Name)
				assert.InDelta(t, want[k], *cf.Importance, 1e-9, "feature %q: mean |SHAP|", ft.Name)
				require.NotNil(t, cf.Share)
				shares += *cf.Share
				require.NotNil(t, cf.GainShare, "feature %q", ft.Name)
				assert.InDelta(t, gain[k]/totalGain, *cf.GainShare, 1e-12, "feature %q: gain share", ft.Name)
			}
			assert.InDelta(t, 1, shares, 1e-9)
			t.Logf("mean |SHAP| %.4g over %d records; gain %.4g", want, pooled.Len(), gain)
			page := string(card.Markdown())
			assert.Contains(t, page, "| Gain share |")
			assert.Contains(t, page, "Importance is the "+modelcard.MeanAbsSHAPMethod)
		})
	}
}
