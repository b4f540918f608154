package explain_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/model/gbdt"
)

// TestEffectsAreTheModelsOwn: the explainer's effects and log-odds are, to the bit, what the
// logistic model states through model.Model.ExplainAll (against the zero reference, where an
// effect is also the contribution).
func TestEffectsAreTheModelsOwn(t *testing.T) {
	doc, ds := testModel(t, 100)
	m, err := doc.Model()
	require.NoError(t, err)
	x, err := explain.For(m)
	require.NoError(t, err)
	xs, err := m.ExplainAll(ds)
	require.NoError(t, err)
	require.Len(t, xs, ds.Len())
	for i, own := range xs {
		contrib, logOdds, err := x.Contributions(ds, i)
		require.NoError(t, err)
		assert.Equal(t, own.Margin, logOdds, "row %d", i)
		assert.Equal(t, x.Intercept(), own.Expected, "row %d", i)
		for k, c := range contrib {
			assert.Equal(t, own.Values[k], c.Effect, "row %d, %s", i, c.Feature)
			assert.Equal(t, own.Values[k], c.Contribution, "row %d, %s", i, c.Feature)
		}
	}
}

// TestForRefusesKindsWithoutEffects: a tree model has no effect per column; For says so with
// ErrUnsupported (callers fall back to the model's own explanations), inside ErrModel.
func TestForRefusesKindsWithoutEffects(t *testing.T) {
	_, ds := testModel(t, 300)
	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth, p.Bins = 2, 2, 8
	trees, err := gbdt.Fit(ds, dataset.Standardization{Mean: []float64{0, 40}, Std: []float64{1, 10}}, p)
	require.NoError(t, err)
	_, err = explain.For(trees)
	require.ErrorIs(t, err, explain.ErrUnsupported)
	require.ErrorIs(t, err, explain.ErrModel)

	_, err = explain.For(nil)
	require.ErrorIs(t, err, explain.ErrModel)
	assert.NotErrorIs(t, err, explain.ErrUnsupported)
}
