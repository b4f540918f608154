package client

import (
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/task"
)

// TestTreeStepsAreDifferentContributions: a client's answers to two levels of one tree may be
// the same values (zeros, when none of its rows reach the nodes asked), and must still be two
// contributions: reusing the first level's ciphertext for the second would put one ciphertext
// in two aggregates, which the coordinator's differencing rules then leave out (and members
// refuse). A repeat of the same step, a retried task, stays the same contribution.
func TestTreeStepsAreDifferentContributions(t *testing.T) {
	var key [sha256.Size]byte
	zeros := make([]float64, 12)
	step := func(tree, levels int) task.Task {
		spec := &task.GBDTSpec{Step: task.GBDTHistograms, Tree: tree, Nodes: []int32{1}}
		for range levels {
			spec.Levels = append(spec.Levels, []gbdt.Split{{Node: 0, Left: 1, Right: 2}})
		}
		return task.Task{ID: "r/train/r3/a1/s1/c", RunID: "r", Round: 3, Kind: task.KindTrain, GBDT: spec}
	}
	level1, level2 := step(2, 1), step(2, 2)
	assert.NotEqual(t, contributionKey(level1, key, zeros), contributionKey(level2, key, zeros), "two levels of one tree")
	assert.NotEqual(t, contributionKey(step(2, 0), key, zeros), contributionKey(task.Task{RunID: "r", Round: 3, Kind: task.KindTrain,
		GBDT: &task.GBDTSpec{Step: task.GBDTSketch}}, key, zeros), "the sketch and the root")
	retry := level2
	retry.ID = "r/train/r3/a2/s2/c"
	assert.Equal(t, contributionKey(level2, key, zeros), contributionKey(retry, key, zeros), "a retried step is the same contribution")
}
