package client_test

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/task"
)

// TestATreeStepLeavesTheClientNoisedAndAccounted: under record-level DP a client answers a
// tree step (here the sketch) with every value noised by z times the step's sensitivity from
// its own private source, admitted by its own ledger; a repeat of the step gets the same
// release (fresh noise would average away); a noise below the client's floor, a plaintext task
// that names expected contributors (the coordinator would read one share alone) and a task
// asking for several steps at once are declined.
func TestATreeStepLeavesTheClientNoisedAndAccounted(t *testing.T) {
	schema, train, eval := branchFile(t, false, 600)
	encoding := tasks(t, schema, train)[0].Encoding
	sketch := func(id string, dp *task.DPSpec) task.Task {
		return task.Task{ID: id, RunID: "r", Round: 1, Kind: task.KindTrain, Encoding: encoding,
			GBDT: &task.GBDTSpec{Step: task.GBDTSketch, Params: gbdt.DefaultParams()}, DP: dp}
	}
	dp := func(z float64) *task.DPSpec {
		return &task.DPSpec{Mechanism: task.DPRecord, ClipNorm: 1, NoiseMultiplier: z, SamplingRate: 1, Steps: 1, Delta: 1e-5}
	}
	open := func(floor privacy.Floor) *client.Session {
		s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{Floor: floor})
		require.NoError(t, err)
		return s
	}

	exact, _, err := open(privacy.Floor{}).Handle(context.Background(), sketch("plain", nil))
	require.NoError(t, err)
	s := open(privacy.Floor{Require: privacy.RequireRecord, MinNoiseMultiplier: 1, MaxClipNorm: 1})
	noised, _, err := s.Handle(context.Background(), sketch("a1", dp(2)))
	require.NoError(t, err)
	require.Len(t, noised.Sum.Plain, len(exact.Sum.Plain))
	// The noise's spread is z times the sketch's sensitivity: check it over every value.
	sens := task.GBDTSensitivity(task.GBDTSketch, len(schema.Numeric), 0)
	var ss float64
	for i, v := range noised.Sum.Plain {
		d := v - exact.Sum.Plain[i]
		ss += d * d
	}
	std := math.Sqrt(ss / float64(len(exact.Sum.Plain)))
	assert.InDelta(t, 2*sens, std, 0.1*2*sens, "noise of standard deviation z x sensitivity")
	eps, _ := s.Epsilon()
	want, _, err := privacy.Epsilon(1, 2, 1, 1e-5, nil, privacy.PLD)
	require.NoError(t, err)
	assert.InDelta(t, want, eps, 1e-6, "one Gaussian release in the client's ledger")

	again, _, err := s.Handle(context.Background(), sketch("a2", dp(2)))
	require.NoError(t, err)
	assert.Equal(t, noised.Sum.Plain, again.Sum.Plain, "a repeat of the step is the same release")
	eps2, _ := s.Epsilon()
	assert.Equal(t, eps, eps2, "and costs nothing more")

	_, _, err = s.Handle(context.Background(), sketch("weak", dp(0.5)))
	assert.ErrorIs(t, err, client.ErrDeclined, "below the floor's noise")
	named := dp(2)
	named.ExpectedContributors = 10
	_, _, err = s.Handle(context.Background(), sketch("named", named))
	assert.ErrorIs(t, err, client.ErrDeclined, "a plaintext step that would divide the noise")
	many := dp(2)
	many.Steps = 3
	_, _, err = s.Handle(context.Background(), sketch("many", many))
	assert.ErrorIs(t, err, client.ErrDeclined, "a tree step is one release")
}

// TestALaterTreeLevelNamesItsModelByDigest: a tree's first level carries the model; later
// levels name it by digest, and a client answers them from the model it kept. A client that
// restarted mid-tree (a new session) or is named another model declines the level, so that
// the round starts the tree again with the model in its first level.
func TestALaterTreeLevelNamesItsModelByDigest(t *testing.T) {
	schema, train, eval := branchFile(t, false, 600)
	base := tasks(t, schema, train)[0]
	std, err := train.Stats().Standardization()
	require.NoError(t, err)
	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth, p.Bins = 2, 2, 16
	m, err := gbdt.Fit(train, std, p)
	require.NoError(t, err)
	step := func(id string, levels [][]gbdt.Split, nodes []int32, model *gbdt.Model, digest string) task.Task {
		return task.Task{ID: id, RunID: "r", Round: 3, Kind: task.KindTrain, Encoding: base.Encoding,
			GBDT: &task.GBDTSpec{Step: task.GBDTHistograms, Params: p, Model: model, ModelDigest: digest, Tree: len(m.Trees), Levels: levels, Nodes: nodes}}
	}
	open := func() *client.Session {
		s, err := client.NewSession("b", schema, train, eval, client.SessionOptions{})
		require.NoError(t, err)
		return s
	}
	kept := open()
	_, _, err = kept.Handle(context.Background(), step("l0", nil, []int32{0}, m, ""))
	require.NoError(t, err, "the first level carries the model")
	split := [][]gbdt.Split{{{Node: 0, Feature: 0, Bin: 3, Left: 1, Right: 2}}}
	res, _, err := kept.Handle(context.Background(), step("l1", split, []int32{1}, nil, m.Digest()))
	require.NoError(t, err, "a later level from the model kept")
	require.NotEmpty(t, res.Sum.Plain)

	// The same level from the model itself gives the same histograms.
	full, _, err := open().Handle(context.Background(), step("l1-full", split, []int32{1}, m, ""))
	require.NoError(t, err)
	assert.Equal(t, full.Sum.Plain, res.Sum.Plain)

	_, _, err = open().Handle(context.Background(), step("l1-restarted", split, []int32{1}, nil, m.Digest()))
	assert.ErrorIs(t, err, client.ErrDeclined, "a restarted client holds no model")
	other := *m
	other.BaseScore++
	_, _, err = kept.Handle(context.Background(), step("l1-other", split, []int32{1}, nil, other.Digest()))
	assert.ErrorIs(t, err, client.ErrDeclined, "another model than the one kept")
}
