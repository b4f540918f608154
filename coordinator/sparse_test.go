package coordinator_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/task"
)

// sparseOf is v as the transport hands a sparse result to the core: its non-zero values and
// their positions.
func sparseOf(v []float64) task.Vector {
	out := task.Vector{Index: []uint32{}, Length: len(v)}
	for i, x := range v {
		if x != 0 {
			out.Index = append(out.Index, uint32(i))
			out.Plain = append(out.Plain, x)
		}
	}
	return out
}

// submitVector submits a result with the given sum for id's outstanding task.
func (h *harness) submitVector(id string, sum task.Vector) (bool, error) {
	h.t.Helper()
	tk, ok := h.poll(id)
	require.True(h.t, ok, "client %s has a task", id)
	dup, err := h.core.Submit(task.Result{ClientID: id, TaskID: tk.ID, RunID: tk.RunID, Round: tk.Round, Kind: tk.Kind, Sum: sum})
	h.flush()
	return dup, err
}

// A round whose results arrive sparse commits exactly what it commits when they arrive in
// plain: the core adds a sparse result's values where they belong, and its scratch space
// holds nothing of one result when the next arrives.
func TestCoreAddsSparseResultsAsPlainOnes(t *testing.T) {
	run := func(encode func(id string, v []float64) task.Vector) coordinator.ModelVersion {
		h := toTraining(t, tinyConfig())
		for i, id := range []string{"a", "b", "c"} {
			_, err := h.submitVector(id, encode(id, trainVec(float64(i+1), 1, 0, float64(i), 0)))
			require.NoError(t, err)
		}
		for _, id := range []string{"a", "b", "c"} {
			_, err := h.submitVector(id, encode(id, evalVec(10)))
			require.NoError(t, err)
		}
		require.Len(t, h.commits, 1)
		return h.commits[0]
	}
	plain := run(func(_ string, v []float64) task.Vector { return task.Vector{Plain: v} })
	tests := []struct {
		name   string
		encode func(id string, v []float64) task.Vector
	}{
		{"every result sparse", func(_ string, v []float64) task.Vector { return sparseOf(v) }},
		{"sparse and plain mixed", func(id string, v []float64) task.Vector {
			if id == "b" {
				return task.Vector{Plain: v}
			}
			return sparseOf(v)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(tt.encode)
			assert.Equal(t, plain.Weights, got.Weights)
			assert.Equal(t, plain.EvalSums, got.EvalSums)
			assert.Equal(t, plain.Evaluation, got.Evaluation)
			assert.Equal(t, plain.Examples, got.Examples)
		})
	}
}

// toEvaluation brings a run to its first evaluation, every client's train result in.
func toEvaluation(t *testing.T) *harness {
	h := toTraining(t, tinyConfig())
	for _, id := range []string{"a", "b", "c"} {
		h.submit(id, trainVec(1, 1, 1, 1, 1))
	}
	return h
}

// finishEvaluation has b and c evaluate and checks that the committed sums count a's
// result once.
func finishEvaluation(t *testing.T, h *harness) {
	t.Helper()
	h.submit("b", evalVec(10))
	h.submit("c", evalVec(10))
	require.Len(t, h.commits, 1)
	want := evalVec(10)[:len(h.commits[0].EvalSums)]
	for i := range want {
		want[i] *= 3
	}
	assert.InDeltaSlice(t, want, h.commits[0].EvalSums, 1e-12, "a's result counted once")
}

// A sparse result is checked like a plain one: the wrong length, or indices that do not fit,
// are refused and leave the sum and the task as they were.
func TestCoreRefusesSparseResultsThatDoNotFit(t *testing.T) {
	eval := evalVec(10)
	badOrder := sparseOf(eval)
	badOrder.Index[0], badOrder.Index[1] = badOrder.Index[1], badOrder.Index[0]
	beyond := sparseOf(eval)
	beyond.Index[len(beyond.Index)-1] = uint32(len(eval))
	short := sparseOf(eval)
	short.Length--
	unpaired := sparseOf(eval)
	unpaired.Index = unpaired.Index[1:]
	inflated := append([]float64(nil), eval...)
	inflated[0] = 100 // records the histograms do not hold
	tests := []struct {
		name string
		sum  task.Vector
	}{
		// Refused by the content check, after the core spelled it out in its scratch space:
		// were the scratch not cleared, the valid result after it would not add up either.
		{"counts that do not add up", sparseOf(inflated)},
		{"indices out of order", badOrder},
		{"an index at the length", beyond},
		{"a length one short", short},
		{"an index missing for a value", unpaired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := toEvaluation(t)
			_, err := h.submitVector("a", tt.sum)
			require.ErrorIs(t, err, coordinator.ErrInvalid)
			dup, err := h.submitVector("a", sparseOf(eval))
			require.NoError(t, err, "the refusal left the task outstanding")
			require.False(t, dup)
			finishEvaluation(t, h)
		})
	}
}

// A result is the same whether it comes sparse or in plain: a retry in the other form is a
// duplicate, and a different result under the same task id is refused.
func TestCoreRecognisesSparseRepeats(t *testing.T) {
	eval := evalVec(10)
	changed := sparseOf(eval)
	changed.Plain[0]++
	tests := []struct {
		name          string
		first, repeat task.Vector
		dup           bool
	}{
		{"plain, then sparse", task.Vector{Plain: eval}, sparseOf(eval), true},
		{"sparse, then plain", sparseOf(eval), task.Vector{Plain: eval}, true},
		{"sparse, then sparse", sparseOf(eval), sparseOf(eval), true},
		{"sparse, then another value", sparseOf(eval), changed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := toEvaluation(t)
			tk, ok := h.poll("a")
			require.True(t, ok)
			submit := func(sum task.Vector) (bool, error) {
				dup, err := h.core.Submit(task.Result{ClientID: "a", TaskID: tk.ID, RunID: tk.RunID, Round: tk.Round, Kind: tk.Kind, Sum: sum})
				h.flush()
				return dup, err
			}
			dup, err := submit(tt.first)
			require.NoError(t, err)
			require.False(t, dup)
			dup, err = submit(tt.repeat)
			if tt.dup {
				require.NoError(t, err)
				assert.True(t, dup)
			} else {
				require.ErrorIs(t, err, coordinator.ErrInvalid)
			}
			finishEvaluation(t, h)
		})
	}
}
