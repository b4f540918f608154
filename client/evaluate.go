package client

import (
	"fmt"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/explain"
	"github.com/fedprop/fedprop/fairness"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/task"
)

// evaluate scores the global model on the held-out rows and returns only counts and sums.
func (s *Session) evaluate(t task.Task) ([]float64, int, error) {
	if err := s.encode(t); err != nil {
		return nil, 0, err
	}
	if err := s.checkWeights(t); err != nil {
		return nil, 0, err
	}
	if t.HistogramBins < 2 || t.HistogramBins > maxHistogramBins {
		return nil, 0, fmt.Errorf("histogram_bins: %d is outside [2, %d]", t.HistogramBins, maxHistogramBins)
	}
	sums := metrics.NewEvalSums(t.HistogramBins)
	var scores []float64
	if s.xEval != nil {
		scores = model.PredictAll(t.Weights, s.xEval, nil)
		sums.AddScores(scores, s.eval.Label)
	}
	out := sums.Vector()
	if f := t.Fairness; f != nil {
		// The fairness audit: the same counts per group of every sensitive attribute.
		layout, err := fairness.NewLayout(s.schema, fairness.LayoutConfig{Thresholds: f.Thresholds, Bins: f.Bins, Groups: f.Groups})
		if err != nil {
			return nil, 0, fmt.Errorf("fairness: %w", err)
		}
		groups := fairness.NewGroupSums(layout)
		if scores != nil {
			if err := groups.AddScores(scores, s.eval.Label, s.eval.Groups); err != nil {
				return nil, 0, fmt.Errorf("fairness: %w", err)
			}
		}
		out = append(out, groups.Vector()...)
	}
	// Global feature importance: the sums of each feature's contribution to the log-odds.
	x, err := s.explainer(t)
	if err != nil {
		return nil, 0, err
	}
	imp := x.NewImportanceSums()
	if s.eval.Len() > 0 {
		if err := x.AddImportance(&imp, s.eval); err != nil {
			return nil, 0, fmt.Errorf("importance: %w", err)
		}
	}
	return append(out, imp.Vector()...), s.eval.Len(), nil
}

// explainer explains scores of the task's model under its encoding.
func (s *Session) explainer(t task.Task) (*explain.Explainer, error) {
	enc, err := dataset.NewEncoder(s.schema, dataset.Standardization{Mean: t.Encoding.Mean, Std: t.Encoding.Std})
	if err != nil {
		return nil, err
	}
	return explain.New(task.ModelDocument(s.schema, t.Encoding, enc.FeatureNames(), t.Weights))
}
