package client_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
)

// branchFile renders a synthetic branch as its CSV (optionally with the customers who opted
// out) and reads it back as a client would.
func branchFile(t *testing.T, withOptedOut bool, customers int) (*dataset.Schema, *dataset.Dataset, *dataset.Dataset) {
	t.Helper()
	cfg := synth.Config{Branches: 1, CustomersPerBranch: customers, ConsentOptOut: 0.2, Seed: 4}.WithDefaults()
	b, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	read := func(consenting, optedOut *dataset.Dataset) *dataset.Dataset {
		if !withOptedOut {
			optedOut = optedOut.Subset(nil)
		}
		var buf bytes.Buffer
		require.NoError(t, synth.WriteShard(&buf, consenting, optedOut))
		d, err := dataset.ReadCSVFrom(context.Background(), &buf, "branch.csv", schema)
		require.NoError(t, err)
		return d
	}
	return schema, read(b[0].Train, b[0].TrainOptedOut), read(b[0].Test, b[0].TestOptedOut)
}

// tasks returns a stats, a train and an evaluate task for the schema, pinned to an encoding.
func tasks(t *testing.T, schema *dataset.Schema, train *dataset.Dataset) []task.Task {
	t.Helper()
	std, err := train.Stats().Standardization()
	require.NoError(t, err)
	enc, err := dataset.NewEncoder(schema, std)
	require.NoError(t, err)
	encoding := task.Encoding{SchemaHash: task.SchemaHash(schema), Mean: std.Mean, Std: std.Std}
	weights := make([]float64, enc.Dim()+1)
	weights[0] = -1
	return []task.Task{
		{ID: "s", RunID: "r", Kind: task.KindStats, Encoding: encoding},
		{ID: "t", RunID: "r", Round: 1, Kind: task.KindTrain, Encoding: encoding, Weights: weights, Seed: 3,
			Train: logreg.Params{Epochs: 1, BatchSize: 16, LearningRate: 0.05}},
		{ID: "e", RunID: "r", Round: 1, Kind: task.KindEvaluate, Encoding: encoding, Weights: weights, HistogramBins: 100},
	}
}

func TestRowsWithoutConsentChangeNothingAClientSends(t *testing.T) {
	schema, train, eval := branchFile(t, true, 600)
	_, trainC, evalC := branchFile(t, false, 600)
	require.Positive(t, train.ExcludedNoConsent, "the file holds customers who opted out")
	require.Equal(t, train.Len(), trainC.Len())

	with, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
	require.NoError(t, err)
	without, err := client.NewSession("b", schema, trainC, evalC, client.SessionOptions{})
	require.NoError(t, err)
	for _, tk := range tasks(t, schema, trainC) {
		a, _, err := with.Handle(context.Background(), tk)
		require.NoError(t, err)
		b, _, err := without.Handle(context.Background(), tk)
		require.NoError(t, err)
		if tk.Kind == task.KindStats {
			// Only the last value differs: the count of excluded rows, reported so the run
			// can say how many were left out.
			n := len(a.Sum.Plain) - 1
			assert.Equal(t, b.Sum.Plain[:n], a.Sum.Plain[:n])
			assert.Equal(t, float64(train.ExcludedNoConsent+eval.ExcludedNoConsent), a.Sum.Plain[n])
			assert.Equal(t, 0.0, b.Sum.Plain[n])
			continue
		}
		assert.Equal(t, b.Sum.Plain, a.Sum.Plain, "%s result", tk.Kind)
	}
}

func TestWhatAClientSendsIsSizedByTheModelNotItsRecords(t *testing.T) {
	sizes := map[task.Kind][]int{}
	for _, customers := range []int{100, 1500} {
		schema, train, eval := branchFile(t, true, customers)
		s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{Floor: privacy.Floor{MinRecordsPlaintext: new(int)}})
		require.NoError(t, err)
		for _, tk := range tasks(t, schema, train) {
			r, rep, err := s.Handle(context.Background(), tk)
			require.NoError(t, err)
			assert.Equal(t, r.Sum.Bytes(), rep.Bytes)
			sizes[tk.Kind] = append(sizes[tk.Kind], r.Sum.Len())
		}
	}
	for kind, n := range sizes {
		assert.Equal(t, n[0], n[1], "%s result length must not depend on the number of records", kind)
	}
}

// TestSessionRefusesTasksItCannotDoSafely edits one thing of a task the session answers and
// checks that the session refuses it for that reason: the sentinel of the check that should
// fire and of no other, the words that name what was wrong, and the client, run and round.
func TestSessionRefusesTasksItCannotDoSafely(t *testing.T) {
	schema, train, eval := branchFile(t, false, 200)
	s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
	require.NoError(t, err)
	ts := tasks(t, schema, train)
	sentinels := []error{client.ErrSchemaMismatch, client.ErrDeclined, client.ErrRefused, privacy.ErrBelowFloor,
		task.ErrInvalid, logreg.ErrDimension, logreg.ErrNonFinite, logreg.ErrInvalidParams}
	cases := []struct {
		name string
		edit func(tk *task.Task)
		is   []error // every sentinel the error wraps; it wraps none of the others
		msg  string
	}{
		{"another schema", func(tk *task.Task) { tk.Encoding.SchemaHash = "abc" },
			[]error{client.ErrSchemaMismatch}, "the run's schema hash is abc"},
		{"short weights", func(tk *task.Task) { tk.Weights = tk.Weights[:2] },
			[]error{logreg.ErrDimension}, "weights: dimension mismatch: 2 weights for"},
		{"a weight that is not finite", func(tk *task.Task) { tk.Weights[3] = math.NaN() },
			[]error{logreg.ErrNonFinite}, "weight 3 is NaN"},
		{"bad training rate", func(tk *task.Task) { tk.Train.LearningRate = -1 },
			[]error{logreg.ErrInvalidParams}, "learning rate -1 is not a positive finite number"},
		{"huge histogram", func(tk *task.Task) { tk.Kind = task.KindEvaluate; tk.HistogramBins = 1 << 30 },
			[]error{client.ErrDeclined}, "histogram_bins 1073741824 is outside [2, "},
		{"a decrypt task for a client outside the committee", func(tk *task.Task) { tk.Kind = task.KindDecrypt },
			[]error{task.ErrInvalid}, "a decrypt task for a client that is not a committee member"},
		{"differential privacy without noise", func(tk *task.Task) {
			tk.DP = &task.DPSpec{Mechanism: task.DPClient, ClipNorm: 1}
		}, []error{client.ErrDeclined, privacy.ErrBelowFloor}, "dp.noise_multiplier 0: a differentially private task must carry positive, finite noise"},
		{"an unknown privacy mechanism", func(tk *task.Task) {
			tk.DP = &task.DPSpec{Mechanism: "shuffle", ClipNorm: 1, NoiseMultiplier: 1}
		}, []error{client.ErrDeclined}, `dp.mechanism "shuffle" is not supported`},
	}
	edited := func(edit func(*task.Task)) task.Task {
		tk := ts[1]
		tk.Weights = append([]float64(nil), tk.Weights...)
		if edit != nil {
			edit(&tk)
		}
		return tk
	}
	// The task as it was: what every case refuses is its edit, not the task.
	_, _, err = s.Handle(context.Background(), edited(nil))
	require.NoError(t, err, "the unedited train task")

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, _, err := s.Handle(context.Background(), edited(tc.edit))
			require.Error(t, err)
			for _, sentinel := range sentinels {
				want := slices.Contains(tc.is, sentinel)
				assert.Equal(t, want, errors.Is(err, sentinel), "errors.Is(%q): %v", sentinel, err)
			}
			assert.Contains(t, err.Error(), tc.msg)
			assert.True(t, strings.HasPrefix(err.Error(), "client b, run r, round 1"), err.Error())
			// Nothing computed leaves with the error (the committee path returns the
			// result's identifiers; the others a zero Result).
			assert.Zero(t, r.Sum.Len(), "no sum")
			assert.Nil(t, r.DecryptionShare)
			assert.Nil(t, r.PublicKeyShare)
			assert.Empty(t, r.Boxes)
		})
	}
}

func TestClientLevelDPClipsTheUpdateAndAddsItsNoiseShare(t *testing.T) {
	schema, train, eval := branchFile(t, false, 400)
	s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{Random: bytes.NewReader(make([]byte, 64))})
	require.NoError(t, err)
	base := tasks(t, schema, train)[1]
	norm := func(v []float64) float64 {
		sq := 0.0
		for _, x := range v {
			sq += x * x
		}
		return math.Sqrt(sq)
	}
	dim := len(base.Weights)

	tk := base
	tk.DP = &task.DPSpec{Mechanism: task.DPClient, ClipNorm: 1e-3, NoiseMultiplier: 1}
	r, rep, err := s.Handle(context.Background(), tk)
	require.NoError(t, err)
	v := r.Sum.Plain
	assert.Equal(t, 1.0, v[task.TrainCountIndex], "under client-level DP every update counts once")
	assert.InDelta(t, 1e-3, norm(v[task.TrainDeltaStart:task.TrainDeltaStart+dim]), 1e-12, "clipped to C exactly")
	assert.Equal(t, -0.5, v[len(v)-1], "the indicator says clipped")
	assert.True(t, rep.UpdateClipped)

	tk.DP = &task.DPSpec{Mechanism: task.DPClient, ClipNorm: 1e6, NoiseMultiplier: 1}
	tk.ModelVersion++ // a new release: a repeat of the same model would get the first one again
	r, _, err = s.Handle(context.Background(), tk)
	require.NoError(t, err)
	assert.Equal(t, 0.5, r.Sum.Plain[len(r.Sum.Plain)-1], "the indicator says unclipped")
}
