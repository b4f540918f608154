package inmem

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/task"
)

func TestDeepCopySharesNothing(t *testing.T) {
	orig := task.Task{
		ID: "t1", RunID: "r", Round: 2, Kind: task.KindTrain, Deadline: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC),
		Weights:   []float64{1, 2, 3},
		Encoding:  task.Encoding{SchemaHash: "h", Mean: []float64{0.5}, Std: []float64{2}},
		PublicKey: []byte{1, 2, 3},
		KeyInfo:   &task.CollectiveKey{},
		DP:        &task.DPSpec{Mechanism: task.DPClient, NoiseMultiplier: 1.1, ClipNorm: 1},
		Fairness:  &task.FairnessSpec{Thresholds: []float64{0.5}, Groups: map[string][]string{"age": {"<30", "30+"}}},
	}
	got := deepCopy(orig)
	require.Equal(t, orig, got, "a copy equals its original")

	got.Weights[0] = 99
	got.Encoding.Mean[0] = 99
	got.PublicKey[0] = 99
	got.DP.ClipNorm = 99
	got.Fairness.Groups["age"][0] = "x"
	assert.Equal(t, 1.0, orig.Weights[0])
	assert.Equal(t, 0.5, orig.Encoding.Mean[0])
	assert.Equal(t, byte(1), orig.PublicKey[0])
	assert.Equal(t, 1.0, orig.DP.ClipNorm)
	assert.Equal(t, "<30", orig.Fairness.Groups["age"][0])
	assert.NotSame(t, orig.KeyInfo, got.KeyInfo)

	// nil and empty stay apart: a sparse vector with no entries is not a dense one.
	r := task.Result{Sum: task.Vector{Plain: []float64{}, Index: []uint32{}, Length: 4}}
	rc := deepCopy(r)
	assert.NotNil(t, rc.Sum.Index)
	assert.Nil(t, rc.Boxes)
	assert.Equal(t, r, rc)
}
