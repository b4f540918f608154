package coordinator_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/task"
)

// TestOutcomeOfClassifiesResultsByTheirErrors submits, in turn, the results a coordinator
// refuses for each reason (and one it accepts, repeated, and one declined) to a core, and
// classifies each answer as the metrics do: by the errors' identity.
func TestOutcomeOfClassifiesResultsByTheirErrors(t *testing.T) {
	h := newHarness(t, tinyConfig(), nil, nil)
	registerAll(h, "a", "b", "c")
	result := func(id string, values []float64) task.Result {
		tk, ok := h.poll(id)
		require.True(t, ok)
		return task.Result{ClientID: id, TaskID: tk.ID, RunID: tk.RunID, Round: tk.Round, Kind: tk.Kind, Sum: task.Vector{Plain: values}}
	}
	honest := result("a", stats(2, 2, 4))
	cases := []struct {
		name string
		r    task.Result
		want coordinator.Outcome
	}{
		{"outside the run's bounds", result("c", stats(1e300, 50, 40)), coordinator.OutcomeBounds},
		{"malformed", result("c", []float64{1}), coordinator.OutcomeInvalid},
		{"for another run", func() task.Result { r := result("c", stats(2, 2, 4)); r.RunID = "r0"; return r }(), coordinator.OutcomeStale},
		{"from a stranger", func() task.Result { r := result("c", stats(2, 2, 4)); r.ClientID = "zed"; return r }(), coordinator.OutcomeUnknownClient},
		{"accepted", honest, coordinator.OutcomeAccepted},
		{"repeated", honest, coordinator.OutcomeDuplicate},
		{"declined", func() task.Result { r := result("b", nil); r.Refusal = "below my privacy floor"; return r }(), coordinator.OutcomeDeclined},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dup, err := h.core.Submit(tc.r)
			assert.Equal(t, tc.want, coordinator.OutcomeOf(tc.r, dup, err), "err: %v", err)
			if tc.want == coordinator.OutcomeBounds {
				require.ErrorIs(t, err, coordinator.ErrInvalid, "a result outside the bounds is still invalid, for clients and the transport")
				assert.Contains(t, err.Error(), "field sum.plain: invalid request: outside the run's bounds: count 1e+300 is above", "the message is the bounds check's, unchanged")
			}
		})
	}
	for _, err := range []error{coordinator.ErrStopped, context.Canceled, errors.New("disk full")} {
		assert.Equal(t, coordinator.OutcomeOther, coordinator.OutcomeOf(honest, false, err), "%v", err)
	}
}

// drain returns the notes the core has pending and acknowledges them, as the driver does.
func drain(h *harness) []coordinator.Note {
	notes := h.core.Ready().Notes
	h.flush()
	return notes
}

// TestCoreNotesTheEventsMetricsCount: a phase that misses its quorum is retried, then fails
// the run; each failure is a note with EventPhaseFailed, whatever its message, and no other
// note has an event.
func TestCoreNotesTheEventsMetricsCount(t *testing.T) {
	cfg := tinyConfig()
	cfg.MaxAttempts = 2
	h := toTraining(t, cfg)
	h.submit("a", trainVec(1, 1, 1, 1, 1))
	var notes []coordinator.Note
	for range 10 {
		h.core.Tick()
		notes = append(notes, drain(h)...)
	}
	require.Equal(t, coordinator.RunFailed, h.core.Status().Status)
	var failures []string
	for _, n := range notes {
		switch n.Event {
		case coordinator.EventPhaseFailed:
			failures = append(failures, n.Msg)
		case coordinator.EventNone:
		default:
			t.Errorf("note %q: unexpected event %v", n.Msg, n.Event)
		}
	}
	assert.Equal(t, []string{"phase failed, retrying", "run failed"}, failures, "both attempts' failures, the last one failing the run")
	assert.Equal(t, "aggregate_discarded", coordinator.EventAggregateDiscarded.String())
}

// recordingObserver keeps what a Server reports.
type recordingObserver struct {
	mu       sync.Mutex
	flushes  []coordinator.Flush
	outcomes map[coordinator.Outcome]int
	audited  []audit.Action
}

func (o *recordingObserver) Flushed(f coordinator.Flush) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushes = append(o.flushes, f)
}

func (o *recordingObserver) Submitted(_ task.Kind, out coordinator.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outcomes[out]++
}

func (o *recordingObserver) Audited(a audit.Action) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.audited = append(o.audited, a)
}

// TestTheServerReportsWhatItCarriedOut drives a Server through a one-round run in process and
// reads what its Observer heard: each batch of actions after the store wrote it, each result's
// outcome and each audit entry.
func TestTheServerReportsWhatItCarriedOut(t *testing.T) {
	cfg := tinyConfig()
	cfg.Rounds = 1
	cfg.RoundDeadline = time.Minute
	obs := &recordingObserver{outcomes: map[coordinator.Outcome]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := coordinator.NewServer(ctx, mem.New(), &coordinator.RunSpec{Config: cfg, Schema: tinySchema(t), SchemaYAML: []byte(testSchemaYAML)},
		coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: quiet(), Observer: obs})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		require.NoError(t, srv.Register(ctx, task.Registration{ClientID: id, TrainRecords: coordinator.DefaultMinRecordsPlaintext}))
	}
	answer := func(kind task.Kind, values []float64) {
		for _, id := range ids {
			tk, ok, err := srv.PollTask(ctx, id, 5*time.Second)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, kind, tk.Kind)
			_, err = srv.SubmitResult(ctx, task.Result{ClientID: id, TaskID: tk.ID, RunID: tk.RunID, Round: tk.Round, Kind: tk.Kind, Sum: task.Vector{Plain: values}})
			require.NoError(t, err)
		}
	}
	answer(task.KindStats, stats(2, 2, 4))
	answer(task.KindTrain, trainVec(1, 1, 1, 1, 1))
	answer(task.KindEvaluate, evalVec(10))
	_, err = srv.SubmitResult(ctx, task.Result{ClientID: "zed", RunID: cfg.ID, TaskID: "t"})
	require.ErrorIs(t, err, coordinator.ErrUnknownClient)

	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, map[coordinator.Outcome]int{coordinator.OutcomeAccepted: 9, coordinator.OutcomeUnknownClient: 1}, obs.outcomes)
	assert.Equal(t, []audit.Action{audit.ActionRunStart, audit.ActionCommit, audit.ActionRunStop}, obs.audited)
	commits := 0
	for _, f := range obs.flushes {
		if f.Actions.Run != nil {
			assert.Positive(t, f.StoreWrite, "the store's write is timed")
		} else {
			assert.Zero(t, f.StoreWrite, "nothing written, nothing timed")
		}
		if f.Actions.Commit != nil {
			commits++
		}
	}
	assert.Equal(t, 1, commits)
	require.NotEmpty(t, obs.flushes)
	last := obs.flushes[len(obs.flushes)-1].Progress
	assert.Equal(t, coordinator.Progress{Run: cfg.ID, Phase: "done", Round: 1, Registered: 3}, last)
}
