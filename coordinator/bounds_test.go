package coordinator_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/task"
)

// TestExtremeButFiniteResultsAreRefusedAndTheRoundGoesOn plays one client that sends
// well-formed, finite but extreme values in a plaintext run. Each is refused as invalid,
// naming the bound; the phase completes with the two honest clients and its sum is theirs.
func TestExtremeButFiniteResultsAreRefusedAndTheRoundGoesOn(t *testing.T) {
	honestStats := stats(100, 50, 40)
	honestTrain := trainVec(100, 0.1, -0.1, 0.05, 0)
	bins := 10
	badEval := func(edit func(e *metrics.EvalSums)) []float64 {
		e := metrics.NewEvalSums(bins)
		e.AddScores([]float64{0.9, 0.2, 0.6, 0.1}, []float64{1, 0, 1, 0})
		edit(&e)
		return append(e.Vector(), 4, 0.5, -0.5, 1, 1)
	}
	cases := []struct {
		name  string
		phase task.Kind
		bad   []float64
		want  string
	}{
		{"a feature sum of 1e300", task.KindStats, stats(100, 1e300, 40), "inconsistent"},
		{"a negative sum of squares", task.KindStats, stats(100, 5, -1), "negative sum of squares"},
		{"a count of 1e300", task.KindStats, stats(1e300, 50, 40), "above the 100 training records"},
		{"an update of 1e300", task.KindTrain, trainVec(100, 1e300, 0, 0, 0), "above run.max_update_norm 10"},
		{"MaxFloat64", task.KindTrain, trainVec(1, math.MaxFloat64, 0, 0, 0), "above run.max_update_norm"},
		{"an example count of 1e300", task.KindTrain, trainVec(1e300, 0.1, 0, 0, 0), "above the 100 training records"},
		{"a negative mean loss", task.KindTrain, append(trainVec(100, 0.1, 0, 0, 0)[:5], -50), "mean loss"},
		{"an evaluation of -1e6 records", task.KindEvaluate, badEval(func(e *metrics.EvalSums) { e.N = -1e6 }), "must not be negative"},
		{"more positives than records", task.KindEvaluate, badEval(func(e *metrics.EvalSums) { e.Positives = 10 }), "positives"},
		{"histograms that do not hold the records", task.KindEvaluate, badEval(func(e *metrics.EvalSums) { e.PosHist[3] += 7 }), "histograms hold"},
		{"a negative log-loss sum", task.KindEvaluate, badEval(func(e *metrics.EvalSums) { e.LogLossSum = -0.5 }), "log-loss sum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tinyConfig(), nil, nil)
			registerAll(h, "a", "b", "c")
			if tc.phase != task.KindStats {
				for _, id := range []string{"a", "b", "c"} {
					h.submit(id, honestStats)
				}
			}
			if tc.phase == task.KindEvaluate {
				for _, id := range []string{"a", "b", "c"} {
					h.submit(id, honestTrain)
				}
			}
			tk, ok := h.poll("c")
			require.True(t, ok)
			require.Equal(t, tc.phase, tk.Kind)
			_, err := h.core.Submit(task.Result{ClientID: "c", TaskID: tk.ID, RunID: tk.RunID, Round: tk.Round, Kind: tk.Kind, Sum: task.Vector{Plain: tc.bad}})
			require.ErrorIs(t, err, coordinator.ErrInvalid)
			assert.Contains(t, err.Error(), "outside the run's bounds")
			assert.Contains(t, err.Error(), tc.want)

			for _, id := range []string{"a", "b"} {
				switch tc.phase {
				case task.KindStats:
					h.submit(id, honestStats)
				case task.KindTrain:
					h.submit(id, honestTrain)
				case task.KindEvaluate:
					h.submit(id, evalVec(bins))
				}
			}
			for range 6 {
				h.core.Tick()
				h.flush()
			}
			st := h.core.Status()
			require.NotEqual(t, coordinator.RunFailed, st.Status, st.Message)
			switch tc.phase {
			case task.KindStats:
				assert.Equal(t, 200.0, st.StatsRecords, "the honest clients' statistics only")
			case task.KindTrain:
				for _, id := range []string{"a", "b"} {
					h.submit(id, evalVec(bins))
				}
				for range 6 {
					h.core.Tick()
					h.flush()
				}
				require.NotEmpty(t, h.commits)
				assert.Equal(t, 2, h.commits[0].Contributors)
				assert.InDelta(t, 0.1, h.commits[0].Weights[0], 1e-9, "the honest mean update")
			case task.KindEvaluate:
				require.NotEmpty(t, h.commits)
				assert.Equal(t, 8.0, h.commits[0].Evaluation.N, "the honest clients' records")
			}
		})
	}
}

// TestAnHonestClientClipsToTheRunsBound: the bound travels with every train task of a run
// without differential privacy.
func TestAnHonestClientClipsToTheRunsBound(t *testing.T) {
	cfg := tinyConfig()
	cfg.MaxUpdateNorm = 2.5
	h := newHarness(t, cfg, nil, nil)
	registerAll(h, "a", "b", "c")
	for _, id := range []string{"a", "b", "c"} {
		h.submit(id, stats(100, 50, 40))
	}
	tk, ok := h.poll("a")
	require.True(t, ok)
	require.Equal(t, task.KindTrain, tk.Kind)
	assert.Equal(t, 2.5, tk.MaxUpdateNorm)
	cfg.MaxUpdateNorm = math.NaN()
	require.Error(t, cfg.Validate())
}
