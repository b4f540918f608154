package coordinator_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/task"
)

const testSchemaYAML = `
name: tiny
label: {column: y, positive: "1", negative: ["0"]}
numeric: [x]
categorical:
  - {column: c, values: [a, b]}
consent: {tracked: false}
`

func tinySchema(t *testing.T) *dataset.Schema {
	t.Helper()
	s, err := dataset.ParseSchema("tiny", []byte(testSchemaYAML))
	require.NoError(t, err)
	return s
}

func tinyConfig() coordinator.RunConfig {
	return coordinator.RunConfig{
		ID: "r1", Rounds: 2, MinClients: 3, MinCohort: 3, Quorum: 2, HistogramBins: 10,
		Strategy: strategy.Config{Name: "fedavg"},
	}.WithDefaults()
}

// harness drives a Core the way a driver does and records what it was asked to persist.
type harness struct {
	t       *testing.T
	core    *coordinator.Core
	commits []coordinator.ModelVersion
	runs    []coordinator.RunState
}

func newHarness(t *testing.T, cfg coordinator.RunConfig, prev *coordinator.RunState, last *coordinator.ModelVersion) *harness {
	t.Helper()
	require.NoError(t, cfg.Validate())
	core, err := coordinator.NewCore(cfg, tinySchema(t), []byte(testSchemaYAML), prev, last)
	require.NoError(t, err)
	core.SetDeadlineTicks(5)
	h := &harness{t: t, core: core}
	h.flush()
	return h
}

func (h *harness) flush() {
	a := h.core.Ready()
	if a.Commit != nil {
		h.commits = append(h.commits, *a.Commit)
	}
	if a.Run != nil {
		h.runs = append(h.runs, *a.Run)
	}
	h.core.Advance()
}

func (h *harness) poll(id string) (task.Task, bool) {
	t, ok, err := h.core.Poll(id)
	require.NoError(h.t, err)
	return t, ok
}

func (h *harness) submit(id string, values []float64) {
	h.t.Helper()
	tk, ok := h.poll(id)
	require.True(h.t, ok, "client %s has a task", id)
	dup, err := h.core.Submit(task.Result{ClientID: id, TaskID: tk.ID, RunID: tk.RunID, Round: tk.Round, Kind: tk.Kind, Sum: task.Vector{Plain: values}})
	require.NoError(h.t, err)
	require.False(h.t, dup)
	h.flush()
}

// stats returns a stats vector: count n, sum, sum of squares, excluded.
func stats(n, sum, sumSq float64) []float64 { return []float64{n, sum, sumSq, 0} }

// trainVec is n, n*delta for each of the 4 weights (intercept, x, c=a, c=b), n*loss.
func trainVec(n float64, delta ...float64) []float64 {
	v := []float64{n}
	for _, d := range delta {
		v = append(v, n*d)
	}
	return append(v, n*0.5)
}

func evalVec(bins int) []float64 {
	e := metrics.NewEvalSums(bins)
	e.AddScores([]float64{0.9, 0.2, 0.6, 0.1}, []float64{1, 0, 1, 0})
	// Then the importance sums of the two raw features x and c: rows, sums, sums of squares.
	return append(e.Vector(), 4, 0.5, -0.5, 1, 1)
}

func registerAll(h *harness, ids ...string) {
	for _, id := range ids {
		require.NoError(h.t, h.core.Register(task.Registration{ClientID: id, TrainRecords: coordinator.DefaultMinRecordsPlaintext}))
		h.flush()
	}
}

func TestCoreRunsStatsTrainEvaluateAndCommits(t *testing.T) {
	h := newHarness(t, tinyConfig(), nil, nil)
	_, _, err := h.core.Poll("a")
	require.ErrorIs(t, err, coordinator.ErrUnknownClient)
	registerAll(h, "a", "b")
	_, ok := h.poll("a")
	assert.False(t, ok, "no task before min_clients registered")
	registerAll(h, "c")

	tk, ok := h.poll("a")
	require.True(t, ok)
	assert.Equal(t, task.KindStats, tk.Kind)
	h.submit("a", stats(2, 2, 4))
	h.submit("b", stats(1, 5, 25))
	h.submit("c", stats(1, 1, 1))
	st := h.core.Status()
	require.NotNil(t, st.Standardization)
	assert.InDelta(t, 2.0, st.Standardization.Mean[0], 1e-12) // (2+5+1)/4
	assert.False(t, st.ConsentTracked, "the run records that consent was not tracked")

	for round := 1; round <= 2; round++ {
		tk, ok = h.poll("b")
		require.True(t, ok)
		require.Equal(t, task.KindTrain, tk.Kind)
		require.Equal(t, round, tk.Round)
		require.Len(t, tk.Weights, 4)
		before := tk.Weights
		h.submit("a", trainVec(1, 1, 1, 1, 1))
		h.submit("b", trainVec(3, 5, 5, 5, 5))
		h.submit("c", trainVec(4, 0, 0, 0, 0))
		tk, ok = h.poll("c")
		require.True(t, ok)
		require.Equal(t, task.KindEvaluate, tk.Kind)
		for _, id := range []string{"a", "b", "c"} {
			h.submit(id, evalVec(10))
		}
		require.Len(t, h.commits, round)
		v := h.commits[round-1]
		assert.Equal(t, uint64(round), v.Version)
		// FedAvg weights the updates by example count: (1*1 + 3*5 + 4*0)/8 = 2.
		for i := range v.Weights {
			assert.InDelta(t, before[i]+2, v.Weights[i], 1e-12)
		}
		require.NotNil(t, v.Evaluation)
		assert.InDelta(t, 1.0, v.Evaluation.AUC, 1e-12)
		assert.Equal(t, 8.0, v.Examples)
	}
	assert.Equal(t, coordinator.RunCompleted, h.core.Status().Status)
	_, ok = h.poll("a")
	assert.False(t, ok, "nothing outstanding after the run")
}

// toTraining registers three clients and completes the stats phase.
func toTraining(t *testing.T, cfg coordinator.RunConfig) *harness {
	h := newHarness(t, cfg, nil, nil)
	registerAll(h, "a", "b", "c")
	for _, id := range []string{"a", "b", "c"} {
		h.submit(id, stats(2, 2, 4))
	}
	return h
}

func TestCoreLeavesOutClientsPastTheDeadline(t *testing.T) {
	cfg := tinyConfig()
	cfg.EvalEvery = 100
	cfg.Rounds = 3
	h := toTraining(t, cfg)
	late, ok := h.poll("c")
	require.True(t, ok)
	h.submit("a", trainVec(1, 1, 1, 1, 1))
	h.submit("b", trainVec(1, 3, 3, 3, 3))
	for range 5 {
		h.core.Tick()
		h.flush()
	}
	require.Len(t, h.commits, 1, "quorum 2 reached: the round commits without c")
	assert.Equal(t, 2, h.commits[0].Contributors)
	assert.InDelta(t, 2.0, h.commits[0].Weights[0], 1e-12)

	_, err := h.core.Submit(task.Result{ClientID: "c", TaskID: late.ID, RunID: "r1", Round: 1, Kind: task.KindTrain, Sum: task.Vector{Plain: trainVec(1, 9, 9, 9, 9)}})
	var perr *coordinator.ProtocolError
	require.ErrorAs(t, err, &perr)
	assert.ErrorIs(t, err, coordinator.ErrStale)
	assert.Equal(t, "task_id", perr.Field)
	assert.Equal(t, "c", perr.Client)
	assert.Contains(t, err.Error(), `client "c", run "r1", round 1, field task_id`)
}

func TestCoreRetriesARoundThatMissesQuorumAndNeverCommitsItHalfDone(t *testing.T) {
	cfg := tinyConfig()
	cfg.MaxAttempts = 2
	h := toTraining(t, cfg)
	first, _ := h.poll("a")
	h.submit("a", trainVec(1, 1, 1, 1, 1))
	for range 5 {
		h.core.Tick()
		h.flush()
	}
	assert.Empty(t, h.commits, "one result of quorum 2: nothing committed")
	second, ok := h.poll("a")
	require.True(t, ok, "the round is retried")
	assert.NotEqual(t, first.ID, second.ID)
	assert.Equal(t, 1, second.Round)
	for range 5 {
		h.core.Tick()
		h.flush()
	}
	st := h.core.Status()
	assert.Equal(t, coordinator.RunFailed, st.Status)
	assert.Contains(t, st.Message, "failed 2 times")
	assert.Contains(t, st.Message, "quorum 2")
	assert.Empty(t, h.commits)
}

func TestCoreRejectsMalformedResultsAndKeepsTheRound(t *testing.T) {
	h := toTraining(t, tinyConfig())
	tk, _ := h.poll("a")
	good := trainVec(2, 1, 1, 1, 1)
	cases := []struct {
		name  string
		edit  func(r *task.Result)
		field string
		err   error
	}{
		{"unknown client", func(r *task.Result) { r.ClientID = "zz" }, "client_id", coordinator.ErrUnknownClient},
		{"other run", func(r *task.Result) { r.RunID = "r0" }, "run_id", coordinator.ErrStale},
		{"another client's task", func(r *task.Result) { r.ClientID = "b" }, "task_id", coordinator.ErrStale},
		{"made-up task", func(r *task.Result) { r.TaskID = "r1/train/r1/a1/x" }, "task_id", coordinator.ErrStale},
		{"wrong round", func(r *task.Result) { r.Round = 7 }, "round", coordinator.ErrInvalid},
		{"wrong kind", func(r *task.Result) { r.Kind = task.KindStats }, "kind", coordinator.ErrInvalid},
		{"short vector", func(r *task.Result) { r.Sum.Plain = good[:3] }, "sum", coordinator.ErrInvalid},
		{"NaN", func(r *task.Result) { r.Sum.Plain = append([]float64{2, math.NaN()}, good[2:]...) }, "sum.plain", coordinator.ErrInvalid},
		{"infinity", func(r *task.Result) { r.Sum.Plain = append([]float64{2, math.Inf(1)}, good[2:]...) }, "sum.plain", coordinator.ErrInvalid},
		{"zero examples", func(r *task.Result) { r.Sum.Plain = append([]float64{0}, good[1:]...) }, "sum.plain", coordinator.ErrInvalid},
		{"ciphertext in a plaintext run", func(r *task.Result) { r.Sum = task.Vector{Ciphertext: []byte{1}, Length: len(good)} }, "sum.ciphertext", coordinator.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := task.Result{ClientID: "a", TaskID: tk.ID, RunID: "r1", Round: 1, Kind: task.KindTrain, Sum: task.Vector{Plain: good}}
			tc.edit(&r)
			_, err := h.core.Submit(r)
			var perr *coordinator.ProtocolError
			require.ErrorAs(t, err, &perr)
			assert.ErrorIs(t, err, tc.err)
			assert.Equal(t, tc.field, perr.Field)
		})
	}
	// The round is intact: the valid results still give the exact aggregate.
	h.submit("a", trainVec(1, 1, 1, 1, 1))
	dup, err := h.core.Submit(task.Result{ClientID: "a", TaskID: tk.ID, RunID: "r1", Round: 1, Kind: task.KindTrain, Sum: task.Vector{Plain: trainVec(1, 1, 1, 1, 1)}})
	require.NoError(t, err)
	assert.True(t, dup, "a repeated submission is accepted once")
	_, err = h.core.Submit(task.Result{ClientID: "b", TaskID: tk.ID, RunID: "r1", Round: 1, Kind: task.KindTrain, Sum: task.Vector{Plain: trainVec(1, 1, 1, 1, 1)}})
	require.ErrorIs(t, err, coordinator.ErrStale, "another client replaying an accepted task id is refused, not taken as a duplicate")
	h.submit("b", trainVec(1, 3, 3, 3, 3))
	h.submit("c", trainVec(2, 0, 0, 0, 0))
	for _, id := range []string{"a", "b", "c"} {
		h.submit(id, evalVec(10))
	}
	require.Len(t, h.commits, 1)
	assert.InDelta(t, 1.0, h.commits[0].Weights[1], 1e-12) // (1*1 + 1*3 + 2*0)/4
	assert.Equal(t, 3, h.commits[0].Contributors)
}

func TestCoreResumesAfterTheLastCommittedRound(t *testing.T) {
	cfg := tinyConfig()
	cfg.Rounds = 4
	cfg.EvalEvery = 100
	h := toTraining(t, cfg)
	for _, id := range []string{"a", "b", "c"} {
		h.submit(id, trainVec(1, 1, 1, 1, 1))
	}
	require.Len(t, h.commits, 1)
	run := h.runs[len(h.runs)-1]
	require.Equal(t, 1, run.LastRound)

	// A new core from the stored record continues at round 2 from version 1's weights.
	r := newHarness(t, cfg, &run, &h.commits[0])
	registerAll(r, "a", "b", "c")
	tk, ok := r.poll("a")
	require.True(t, ok)
	assert.Equal(t, task.KindTrain, tk.Kind, "the pinned standardisation is not recomputed")
	assert.Equal(t, 2, tk.Round)
	assert.Equal(t, h.commits[0].Weights, tk.Weights)
	for _, id := range []string{"a", "b", "c"} {
		r.submit(id, trainVec(1, 1, 1, 1, 1))
	}
	require.Len(t, r.commits, 1)
	assert.Equal(t, uint64(2), r.commits[0].Version)
	assert.Equal(t, uint64(1), r.commits[0].Parent)
}

func TestCoreIsDeterministic(t *testing.T) {
	cfg := tinyConfig()
	cfg.CohortFraction = 0.5
	cfg.MinCohort = 2
	ids := func() []string {
		h := toTraining(t, cfg)
		return h.core.Cohort()
	}
	first := ids()
	assert.Len(t, first, 2)
	for range 5 {
		assert.Equal(t, first, ids(), "the same seed selects the same cohort")
	}
}
