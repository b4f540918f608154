package grpctransport

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/task"
)

// TestSHAPSumsFlagCrossesTheWire: the evaluate flag that asks a tree run's clients for their
// |SHAP| sums survives the proto round trip, set and unset.
func TestSHAPSumsFlagCrossesTheWire(t *testing.T) {
	for _, asked := range []bool{false, true} {
		back, err := taskFromProto(taskToProto(task.Task{ID: "e", RunID: "r", Kind: task.KindEvaluate, HistogramBins: 10, SHAPSums: asked}))
		require.NoError(t, err)
		assert.Equal(t, asked, back.SHAPSums)
	}
}
