package client_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/task"
)

// audit is the fairness part of an evaluate task over the synthetic schema: age bands and the
// declared gender groups, at one threshold.
func audit() *task.FairnessSpec {
	return &task.FairnessSpec{Thresholds: []float64{0.5}, Bins: 10, Groups: map[string][]string{"gender": {"female", "male"}}}
}

// TestEvaluationIsNotAQueryInterface: an evaluate task may group only by the schema's
// sensitive attributes and their declared groups, and asks for capped bins and few thresholds
// in (0, 1); anything else is declined before a row is scored.
func TestEvaluationIsNotAQueryInterface(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	base := tasks(t, schema, train)[2]
	base.Fairness = audit()
	cases := []struct {
		name string
		edit func(tk *task.Task)
		want string // "" means answered
	}{
		{"the declared groups", func(*task.Task) {}, ""},
		{"a raw value as a group", func(tk *task.Task) { tk.Fairness.Groups = map[string][]string{"gender": {"female", "postcode 1017"}} },
			`fairness group "postcode 1017" of "gender" is not one the schema declares`},
		{"a column that is not sensitive", func(tk *task.Task) { tk.Fairness.Groups = map[string][]string{"region": {"north"}} },
			`fairness groups for "region", which is not a sensitive attribute`},
		{"a band that is not the schema's", func(tk *task.Task) { tk.Fairness.Groups = map[string][]string{"age": {"<31"}} },
			`fairness group "<31" of "age"`},
		{"more histogram bins than the cap", func(tk *task.Task) { tk.HistogramBins = metrics.DefaultBins + 1 }, "histogram_bins 2001"},
		{"more fairness bins than the cap", func(tk *task.Task) { tk.Fairness.Bins = 65536 }, "fairness bins 65536"},
		{"many thresholds", func(tk *task.Task) {
			tk.Fairness.Thresholds = []float64{0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}
		}, "10 fairness thresholds, at most 9"},
		{"a threshold outside (0, 1)", func(tk *task.Task) { tk.Fairness.Thresholds = []float64{1.5} }, "threshold 1.5 is not in (0, 1)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
			require.NoError(t, err)
			tk := base
			f := *base.Fairness
			tk.Fairness = &f
			tc.edit(&tk)
			_, _, err = s.Handle(context.Background(), tk)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, client.ErrDeclined)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestEachModelVersionIsEvaluatedOnce: a repeat of an evaluate task (a retry) gets the same
// answer; another question about the same model (other weights, other groups) is declined, and
// so is a model older than one evaluated.
func TestEachModelVersionIsEvaluatedOnce(t *testing.T) {
	schema, train, eval := branchFile(t, false, 300)
	s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
	require.NoError(t, err)
	tk := tasks(t, schema, train)[2]
	tk.Fairness, tk.ModelVersion = audit(), 3
	first, _, err := s.Handle(context.Background(), tk)
	require.NoError(t, err)
	retry := tk
	retry.ID, retry.Seed = "e-attempt-2", 77
	again, _, err := s.Handle(context.Background(), retry)
	require.NoError(t, err)
	assert.Equal(t, first.Sum.Plain, again.Sum.Plain)

	// A restarted coordinator trains the same candidate again but sums in another order: the
	// weights differ by rounding, and the answer is the first one, to the bit.
	restarted := tk
	restarted.Weights = slices.Clone(tk.Weights)
	for i := range restarted.Weights {
		restarted.Weights[i] *= 1 + 1e-12
		restarted.Weights[i] += 1e-13
	}
	again, _, err = s.Handle(context.Background(), restarted)
	require.NoError(t, err)
	assert.Equal(t, first.Sum.Plain, again.Sum.Plain)

	for name, edit := range map[string]func(tk *task.Task){
		"other weights": func(tk *task.Task) { tk.Weights = slices.Clone(tk.Weights); tk.Weights[2] = 5 },
		"weights beyond rounding": func(tk *task.Task) {
			tk.Weights = slices.Clone(tk.Weights)
			tk.Weights[0] *= 1 + 1e-4
		},
		"other bins":  func(tk *task.Task) { tk.HistogramBins = 50 },
		"no audit":    func(tk *task.Task) { tk.Fairness = nil },
		"older model": func(tk *task.Task) { tk.ModelVersion = 2 },
	} {
		other := tk
		edit(&other)
		_, _, err := s.Handle(context.Background(), other)
		require.ErrorIs(t, err, client.ErrDeclined, name)
		assert.Contains(t, err.Error(), "evaluates each model version once", name)
	}
	sameModel := tk
	sameModel.ModelVersion = 4
	_, _, err = s.Handle(context.Background(), sameModel)
	require.ErrorIs(t, err, client.ErrDeclined, "the same weights under a newer version number are the same model")
	assert.Contains(t, err.Error(), "are those of version 3")
	next := sameModel
	next.Weights = slices.Clone(tk.Weights)
	next.Weights[1] += 0.25
	_, _, err = s.Handle(context.Background(), next)
	require.NoError(t, err, "a newer model is evaluated")
}

// dpEvaluate is the evaluate task of a DP run for the model after version (the candidate of
// the round that trained from it): record level unless clientLevel, in he mode when expected
// is positive.
func dpEvaluate(base task.Task, version uint64, z float64, expected int, clientLevel bool) task.Task {
	tk := base
	tk.ModelVersion = version + 1
	tk.HistogramBins = metrics.DefaultDPBins
	tk.Fairness = audit()
	tk.Noise = &task.ReleaseNoise{NoiseMultiplier: z, ExpectedContributors: expected, Delta: 1e-5, Level: task.DPRecord}
	if expected > 0 {
		tk.PublicKey = []byte("collective key")
	}
	if clientLevel {
		tk.Noise.Level = task.DPClient
	}
	return tk
}

// recorder is a session whose protector keeps what the session would send and stops before
// encryption.
type recorder struct {
	s    *client.Session
	seen [][]float64
}

func newRecorder(t *testing.T, floor privacy.Floor) (*recorder, task.Task, task.Task, *dataset.Dataset) {
	t.Helper()
	schema, train, eval := branchFile(t, false, 600)
	r := &recorder{}
	var err error
	r.s, err = client.NewSession("b", schema, train, eval, client.SessionOptions{Floor: floor,
		Protector: client.ProtectorFunc(func(_ context.Context, tk task.Task, v []float64) (task.Vector, error) {
			r.seen = append(r.seen, slices.Clone(v))
			if tk.PublicKey != nil {
				return task.Vector{}, errStop
			}
			return task.Vector{Plain: v}, nil
		})})
	require.NoError(t, err)
	ts := tasks(t, schema, train)
	return r, ts[1], ts[2], eval
}

// train releases a DP-SGD update trained from version, so that the client may evaluate it and
// its successor.
func (r *recorder) train(t *testing.T, base task.Task, version uint64) {
	t.Helper()
	tk := dpSGD(base, 1)
	tk.ModelVersion = version
	_, _, err := r.s.Handle(context.Background(), tk)
	require.NoError(t, err)
}

// TestADPEvaluationNeedsAModelTheClientTrainedFrom: under differential privacy a client
// evaluates the model it last trained from, or the candidate trained from it, and nothing else.
func TestADPEvaluationNeedsAModelTheClientTrainedFrom(t *testing.T) {
	r, trainTask, evalTask, _ := newRecorder(t, privacy.Floor{})
	_, _, err := r.s.Handle(context.Background(), dpEvaluate(evalTask, 6, 50, 0, false))
	require.ErrorIs(t, err, client.ErrDeclined)
	assert.Contains(t, err.Error(), "has not trained in run r")

	r.train(t, trainTask, 6)
	_, _, err = r.s.Handle(context.Background(), dpEvaluate(evalTask, 7, 50, 0, false))
	require.ErrorIs(t, err, client.ErrDeclined, "version 8 is not one it trained from")
	assert.Contains(t, err.Error(), "neither the version 6")
	_, _, err = r.s.Handle(context.Background(), dpEvaluate(evalTask, 6, 50, 0, false))
	require.NoError(t, err, "version 7, the candidate trained from 6")
}

// TestADPEvaluationReleasesBoundedSumsUnderTheClientsLedger: a record-level DP evaluation in
// plaintext mode sends the evaluation and fairness sums without importance, each record's log
// loss capped, leaves the noise to the coordinator (it adds none of its own) and is composed
// in the client's ledger; a client whose floor is enforced does not leave the noise to the
// coordinator, and one whose ledger is spent declines.
func TestADPEvaluationReleasesBoundedSumsUnderTheClientsLedger(t *testing.T) {
	r, trainTask, evalTask, eval := newRecorder(t, privacy.Floor{})
	r.train(t, trainTask, 1)
	before, _ := r.s.Epsilon()
	tk := dpEvaluate(evalTask, 1, 20, 0, false)
	res, _, err := r.s.Handle(context.Background(), tk)
	require.NoError(t, err)
	layout, err := fairness.NewLayout(eval.Schema, fairness.LayoutConfig{Thresholds: tk.Fairness.Thresholds, Bins: tk.Fairness.Bins, Groups: tk.Fairness.Groups})
	require.NoError(t, err)
	n := len(metrics.NewEvalSums(tk.HistogramBins).Vector())
	require.Len(t, res.Sum.Plain, n+layout.VectorLen(), "evaluation and fairness sums, no importance")
	ev, err := metrics.EvalSumsFromVector(res.Sum.Plain[:n], tk.HistogramBins)
	require.NoError(t, err)
	assert.Equal(t, float64(eval.Len()), ev.N, "plaintext: exact sums, the coordinator adds the noise")
	assert.LessOrEqual(t, ev.LogLossSum, ev.N*metrics.MaxRowLogLoss)
	after, _ := r.s.Epsilon()
	want := privacy.NewAccountant(nil)
	require.NoError(t, want.Compose(0.1, 1, 10))
	require.NoError(t, want.Compose(1, 20, 1))
	wantEps, _, err := want.Epsilon(1e-5, privacy.PLD)
	require.NoError(t, err)
	assert.Greater(t, after, before)
	assert.InDelta(t, wantEps, after, 1e-9, "the ledger composes the evaluation with the training")

	again, _, err := r.s.Handle(context.Background(), tk)
	require.NoError(t, err)
	assert.Equal(t, res.Sum.Plain, again.Sum.Plain)
	repeated, _ := r.s.Epsilon()
	assert.Equal(t, after, repeated, "a repeat costs nothing more")

	enforced, trainTask, evalTask, _ := newRecorder(t, privacy.Floor{Require: privacy.RequireRecord})
	enforced.train(t, trainTask, 1)
	_, _, err = enforced.s.Handle(context.Background(), dpEvaluate(evalTask, 1, 20, 0, false))
	require.ErrorIs(t, err, privacy.ErrBelowFloor)
	assert.Contains(t, err.Error(), "leaves the noise to the coordinator")

	spent, trainTask, evalTask, _ := newRecorder(t, privacy.Floor{MaxEpsilon: 5})
	spent.train(t, trainTask, 1)
	_, _, err = spent.s.Handle(context.Background(), dpEvaluate(evalTask, 1, 0.3, 0, false))
	require.ErrorIs(t, err, privacy.ErrBelowFloor, "an evaluation at z = 0.3 would take the ledger past max_epsilon 5")
	assert.Contains(t, err.Error(), "above max_epsilon 5")

	weak, trainTask, evalTask, _ := newRecorder(t, privacy.Floor{})
	weak.train(t, trainTask, 1)
	bad := dpEvaluate(evalTask, 1, 20, 0, false)
	bad.Noise.ExpectedContributors = 10
	_, _, err = weak.s.Handle(context.Background(), bad)
	require.ErrorIs(t, err, privacy.ErrBelowFloor, "a noise share the coordinator would read alone")
}

// TestInHEModeTheClientAddsItsNoiseShare: in he mode each client adds z*scale/sqrt(m) to every
// value (m capped by its floor), from its private source; a retry that expects fewer
// contributors gets the same release topped up to the larger share, never a fresh draw.
func TestInHEModeTheClientAddsItsNoiseShare(t *testing.T) {
	r, trainTask, evalTask, eval := newRecorder(t, privacy.Floor{})
	r.train(t, trainTask, 1)
	// The exact sums of the same weights, from another session over the same records: a
	// client evaluates a model (by its weights) once.
	ref, refTrain, _, _ := newRecorder(t, privacy.Floor{})
	ref.train(t, refTrain, 1)
	exactTask := dpEvaluate(evalTask, 1, 40, 0, false)
	exactTask.ModelVersion = 1 // the model trained from, evaluated exactly (plaintext)
	exact, _, err := ref.s.Handle(context.Background(), exactTask)
	require.NoError(t, err)

	// The candidate has the same weights, so its exact sums are the ones above.
	tk := dpEvaluate(evalTask, 1, 40, 25, false)
	_, _, err = r.s.Handle(context.Background(), tk)
	require.ErrorIs(t, err, errStop)
	noised := r.seen[len(r.seen)-1]
	layout, err := fairness.NewLayout(eval.Schema, fairness.LayoutConfig{Thresholds: tk.Fairness.Thresholds, Bins: tk.Fairness.Bins, Groups: tk.Fairness.Groups})
	require.NoError(t, err)
	scales := metrics.NoiseScales(metrics.EvalSumsRecordBound(tk.HistogramBins), layout.RecordBound())
	require.Len(t, noised, len(scales))
	normalised := func(v []float64) float64 {
		var sq float64
		for i := range v {
			d := (v[i] - exact.Sum.Plain[i]) / scales[i]
			sq += d * d
		}
		return math.Sqrt(sq / float64(len(v)))
	}
	assert.InEpsilon(t, 40/math.Sqrt(25), normalised(noised), 0.12, "share z/sqrt(m) of each value's scale")

	retry := tk
	retry.Noise = &task.ReleaseNoise{NoiseMultiplier: 40, ExpectedContributors: 4, Delta: 1e-5, Level: tk.Noise.Level}
	_, _, err = r.s.Handle(context.Background(), retry)
	require.ErrorIs(t, err, errStop)
	topped := r.seen[len(r.seen)-1]
	assert.InEpsilon(t, 40/math.Sqrt(4), normalised(topped), 0.12, "topped up to the share a smaller m asks")
	assert.NotEqual(t, noised, topped)
	_, _, err = r.s.Handle(context.Background(), tk)
	require.ErrorIs(t, err, errStop)
	assert.Equal(t, topped, r.seen[len(r.seen)-1], "a repeat with the first m keeps the larger share")
}

// TestAClientLevelEvaluationCountsTheClientOnce: at client level each record weighs 1/n, so
// the client's whole evaluation adds what one record would: N sums to 1.
func TestAClientLevelEvaluationCountsTheClientOnce(t *testing.T) {
	r, trainTask, evalTask, eval := newRecorder(t, privacy.Floor{})
	r.train(t, trainTask, 2)
	res, _, err := r.s.Handle(context.Background(), dpEvaluate(evalTask, 2, 20, 0, true))
	require.NoError(t, err)
	ev, err := metrics.EvalSumsFromVector(res.Sum.Plain[:len(metrics.NewEvalSums(metrics.DefaultDPBins).Vector())], metrics.DefaultDPBins)
	require.NoError(t, err)
	assert.InDelta(t, 1, ev.N, 1e-9)
	assert.InDelta(t, float64(eval.Positives())/float64(eval.Len()), ev.Positives, 1e-9)
}
