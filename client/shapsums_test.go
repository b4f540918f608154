package client_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/task"
)

// TestATreeEvaluationAppendsItsSHAPSumsOnlyWhenAsked: an evaluate task of a tree model gets
// the evaluation sums, followed by the model's |TreeSHAP| sums over the held-out rows when
// the task sets SHAPSums, and nothing more otherwise. A task asking them of a logistic model,
// or beside differential privacy's noise (which would not cover them), is declined.
func TestATreeEvaluationAppendsItsSHAPSumsOnlyWhenAsked(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	base := tasks(t, schema, train)[2]
	std, err := train.Stats().Standardization()
	require.NoError(t, err)
	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth, p.Bins = 3, 3, 16
	m, err := gbdt.Fit(train, std, p)
	require.NoError(t, err)
	trees := base
	trees.Weights, trees.Trees = nil, m
	shap, err := m.AbsSHAPSums(eval)
	require.NoError(t, err)
	n := metrics.VectorLen(base.HistogramBins)

	tests := []struct {
		name    string
		tk      task.Task
		wantLen int
		decline string
	}{
		{"trees, not asked", trees, n, ""},
		{"trees, asked", func() task.Task { tk := trees; tk.SHAPSums = true; return tk }(), n + gbdt.AbsSHAPLen(len(m.Features)), ""},
		{"logistic, asked", func() task.Task { tk := base; tk.SHAPSums = true; return tk }(), 0, "|SHAP| sums are asked only with a tree model"},
		{"trees under DP, asked", func() task.Task {
			tk := trees
			tk.SHAPSums = true
			tk.Noise = &task.ReleaseNoise{NoiseMultiplier: 1, Delta: 1e-5, Level: task.DPRecord}
			return tk
		}(), 0, "without differential privacy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
			require.NoError(t, err)
			res, _, err := s.Handle(context.Background(), tt.tk)
			if tt.decline != "" {
				require.ErrorIs(t, err, client.ErrDeclined)
				assert.Contains(t, err.Error(), tt.decline)
				return
			}
			require.NoError(t, err)
			got := make([]float64, res.Sum.Len())
			require.NoError(t, res.Sum.AddTo(got))
			require.Len(t, got, tt.wantLen)
			if tt.tk.SHAPSums {
				assert.Equal(t, shap, got[n:], "the model's |SHAP| sums over the held-out rows")
				assert.Equal(t, float64(eval.Len()), got[0], "over the rows the evaluation counts")
			}
		})
	}
}
