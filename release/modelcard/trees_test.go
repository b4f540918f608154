package modelcard_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/synth"
)

// treeDoc fits a small tree model on synthetic branches and returns its document, with every
// feature's mean |SHAP value| over the held-out rows as a tree run's coordinator states it.
func treeDoc(t *testing.T) (*modelfile.Document, []explain.Importance) {
	t.Helper()
	cfg := synth.Config{Branches: 2, CustomersPerBranch: 400}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	std, err := branches[0].Train.Stats().Standardization()
	require.NoError(t, err)
	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth, p.Bins = 4, 3, 16
	m, err := gbdt.Fit(branches[0].Train, std, p)
	require.NoError(t, err)
	doc := &modelfile.Document{Format: modelfile.Format, Version: 4, RunID: "trees", Round: 4,
		Created: time.Date(2025, 4, 1, 14, 30, 0, 0, time.UTC), Schema: schema, Standardization: std, Contributors: 2, Examples: 800}
	require.NoError(t, doc.SetModel(m))
	sums, err := m.AbsSHAPSums(branches[1].Test)
	require.NoError(t, err)
	mean, err := gbdt.MeanAbsSHAP(sums, len(m.Features))
	require.NoError(t, err)
	total := 0.0
	for _, x := range mean {
		total += x
	}
	imp := make([]explain.Importance, len(m.Features))
	for f, ft := range m.Features {
		imp[f] = explain.Importance{Feature: ft.Name, Importance: mean[f], Share: mean[f] / total}
	}
	return doc, imp
}

// TestTreeCardStatesMeanAbsSHAPAndGain: a tree model's card states each feature's mean
// |TreeSHAP value| (the coordinator's, from the clients' sums) under the tree method, and its
// share of the trees' split gain, which it reads from the trees themselves; under
// differential privacy, where no |SHAP| sums are released, the gain shares remain and the page
// says why the other figure is missing. A logistic card has no gain.
func TestTreeCardStatesMeanAbsSHAPAndGain(t *testing.T) {
	doc, imp := treeDoc(t)
	gain := doc.Trees.GainImportance()
	total := 0.0
	for _, g := range gain {
		total += g
	}
	tests := []struct {
		name       string
		importance []explain.Importance
		privacy    modelcard.Privacy
		wantPage   []string
	}{
		{"plaintext", imp, modelcard.Privacy{}, []string{
			"| Importance | Gain share |",
			"Importance is the mean |TreeSHAP value| over the evaluation records, from the clients' summed sums",
			"Gain share is the feature's share of the total split gain",
		}},
		{"differential privacy", nil, modelcard.Privacy{Mechanism: "record", Epsilon: 2, Delta: 1e-5}, []string{
			"| Importance | Gain share |",
			"Mean |TreeSHAP| importance is not released in a differentially private run",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			card, err := modelcard.Build(modelcard.Input{Model: doc, Importance: tt.importance, Privacy: tt.privacy})
			require.NoError(t, err)
			assert.Equal(t, modelcard.GainMethod, card.GainMethod)
			if tt.importance != nil {
				assert.Equal(t, modelcard.MeanAbsSHAPMethod, card.ImportanceMethod)
			} else {
				assert.Empty(t, card.ImportanceMethod)
			}
			for f, ft := range doc.Trees.Features {
				i := slices.IndexFunc(card.Features, func(c modelcard.Feature) bool { return c.Name == ft.Name })
				require.GreaterOrEqual(t, i, 0, ft.Name)
				c := card.Features[i]
				require.NotNil(t, c.Gain, ft.Name)
				assert.Equal(t, gain[f], *c.Gain, ft.Name)
				assert.InDelta(t, gain[f]/total, *c.GainShare, 1e-15, ft.Name)
				if tt.importance != nil {
					require.NotNil(t, c.Importance, ft.Name)
					assert.Equal(t, imp[f].Importance, *c.Importance, ft.Name)
				} else {
					assert.Nil(t, c.Importance, ft.Name)
				}
			}
			page := string(card.Markdown())
			for _, want := range tt.wantPage {
				assert.Contains(t, page, want)
			}
			assert.NotContains(t, page, "coefficient times its standardised value", "the logistic explanation is not a tree's")

			var b strings.Builder
			require.NoError(t, card.Write(&b))
			back, err := modelcard.Decode(strings.NewReader(b.String()))
			require.NoError(t, err)
			assert.Equal(t, card, back)
		})
	}

	logistic, err := modelcard.Build(bankInput(t))
	require.NoError(t, err)
	assert.Empty(t, logistic.GainMethod)
	for _, f := range logistic.Features {
		assert.Nil(t, f.Gain, f.Name)
	}
	assert.NotContains(t, string(logistic.Markdown()), "Gain share")
}
