package coordinator_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/task"
)

// boundedSchemaYAML is the tiny schema with public bounds for x, which a DP run needs.
const boundedSchemaYAML = testSchemaYAML + `bounds:
  x: [0, 10]
`

// newDPHarness starts a core over the bounded schema and registers clients a, b and c, each
// announcing enough records for a plaintext run.
func newDPHarness(t *testing.T, cfg coordinator.RunConfig) *harness {
	t.Helper()
	require.NoError(t, cfg.Validate())
	schema, err := dataset.ParseSchema("tiny", []byte(boundedSchemaYAML))
	require.NoError(t, err)
	core, err := coordinator.NewCore(cfg, schema, []byte(boundedSchemaYAML), nil, nil)
	require.NoError(t, err)
	core.SetDeadlineTicks(5)
	core.SetNoiseSource(rand.NewPCG(1, 2))
	h := &harness{t: t, core: core}
	h.flush()
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, core.Register(task.Registration{ClientID: id, TrainRecords: 1000}))
		h.flush()
	}
	return h
}

func dpConfig(rounds int, adaptive bool) coordinator.RunConfig {
	cfg := tinyConfig()
	cfg.Rounds = rounds
	cfg.EvalEvery = 1000
	cfg.Quorum = 3
	cfg.Privacy = coordinator.PrivacyConfig{Mechanism: "client", NoiseMultiplier: 2, ClipNorm: 0.5, SamplingRate: 1, AdaptiveClipping: adaptive}
	return cfg.WithDefaults()
}

// dpVec is a client-level DP train result: count 1, the (clipped) update, the indicator.
func dpVec(indicator float64, delta ...float64) []float64 {
	return append(append([]float64{1}, delta...), indicator)
}

// dpEvalVec is a DP evaluation result with bins histogram bins and no fairness or importance
// sums: n rows, none positive, every one in the first bin.
func dpEvalVec(bins int, n float64) []float64 {
	e := metrics.NewEvalSums(bins)
	e.N, e.LogLossSum, e.Correct, e.NegHist[0] = n, 0.1*n, n, n
	return e.Vector()
}

// TestCoordinatorNoiseHasStandardDeviationZTimesC: with zero updates from three clients the
// new weights are pure noise divided by m=3, so their spread measures the noise the
// coordinator added: z*C/m. A wrong factor (C missing, sqrt(m), m^2) fails.
func TestCoordinatorNoiseHasStandardDeviationZTimesC(t *testing.T) {
	const rounds = 150
	h := newDPHarness(t, dpConfig(rounds, false))
	var prev []float64
	var draws []float64
	for r := 1; r <= rounds; r++ {
		for _, id := range []string{"a", "b", "c"} {
			h.submit(id, dpVec(0.5, 0, 0, 0, 0))
		}
		if r == rounds {
			// The last round is evaluated before it commits.
			for _, id := range []string{"a", "b", "c"} {
				h.submit(id, dpEvalVec(10, 100))
			}
		}
		w := h.commits[len(h.commits)-1].Weights
		if prev == nil {
			prev = make([]float64, len(w))
		}
		for i := range w {
			draws = append(draws, w[i]-prev[i])
		}
		prev = w
	}
	var mean, sq float64
	for _, d := range draws {
		mean += d
	}
	mean /= float64(len(draws))
	for _, d := range draws {
		sq += (d - mean) * (d - mean)
	}
	std := math.Sqrt(sq / float64(len(draws)-1))
	want := 2 * 0.5 / 3.0
	assert.InDelta(t, want, std, 0.06*want, "noise std %v, want z*C/m = %v", std, want)
	assert.InDelta(t, 0, mean, 4*want/math.Sqrt(float64(len(draws))))

	rep := h.commits[len(h.commits)-1].Privacy
	require.NotNil(t, rep)
	assert.Equal(t, rounds, rep.Steps)
	assert.Equal(t, 2.0, rep.NoiseMultiplier)
	assert.Positive(t, rep.Epsilon)
}

// TestAdaptiveClippingShrinksTheNormWhenMostUpdatesAreUnclipped checks the direction of
// Andrew et al.'s update: more than gamma unclipped -> C shrinks; fewer -> C grows.
func TestAdaptiveClippingShrinksTheNormWhenMostUpdatesAreUnclipped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		indicator float64
		shrink    bool
	}{
		{"all unclipped", +0.5, true},
		{"all clipped", -0.5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := dpConfig(6, true)
			// With m=3 clients the count's noise is m/20: the sum can only keep z if z < m/10.
			cfg.Privacy.NoiseMultiplier = 0.2
			h := newDPHarness(t, cfg)
			for range 5 {
				for _, id := range []string{"a", "b", "c"} {
					h.submit(id, dpVec(tc.indicator, 0, 0, 0, 0))
				}
				tk, ok := h.poll("a")
				if ok && tk.Kind == task.KindTrain {
					require.NotNil(t, tk.DP)
					assert.Equal(t, "client", tk.DP.Mechanism)
				}
			}
			sched := h.commits[len(h.commits)-1].Privacy.ClipSchedule
			require.Len(t, sched, 5)
			assert.Equal(t, 0.5, sched[0])
			for i := 1; i < len(sched); i++ {
				if tc.shrink {
					assert.Less(t, sched[i], sched[i-1], "round %d", i+1)
				} else {
					assert.Greater(t, sched[i], sched[i-1], "round %d", i+1)
				}
			}
		})
	}
}

// TestDPRunStandardisesFromPublicBoundsAndAsksNoStatistics: the first task of a DP run is a
// train task; the standardisation comes from the schema's bounds (centre 5, scale 5 for
// x in [0, 10]) and the first release says it cost nothing. A run without DP still asks for
// statistics.
func TestDPRunStandardisesFromPublicBoundsAndAsksNoStatistics(t *testing.T) {
	h := newDPHarness(t, dpConfig(2, false))
	tk, ok := h.poll("a")
	require.True(t, ok)
	assert.Equal(t, task.KindTrain, tk.Kind, "no stats task in a DP run")
	assert.Equal(t, []float64{5}, tk.Encoding.Mean)
	assert.Equal(t, []float64{5}, tk.Encoding.Std)
	st := h.core.Status()
	require.NotNil(t, st.Privacy)
	require.NotEmpty(t, st.Privacy.Releases)
	assert.Equal(t, modelfile.Release{Kind: modelfile.ReleaseStatistics, Mechanism: modelfile.MechanismPublicBounds}, st.Privacy.Releases[0])
	assert.Zero(t, st.Privacy.Epsilon)

	cfg := dpConfig(2, false)
	cfg.Privacy = coordinator.PrivacyConfig{}
	h = newDPHarness(t, cfg.WithDefaults())
	tk, ok = h.poll("a")
	require.True(t, ok)
	assert.Equal(t, task.KindStats, tk.Kind, "without DP the federated statistics are exact, and asked for")
}

// TestDPRunWithoutBoundsIsRefusedNamingTheFeatureAndTheFix: the tiny schema has no bounds for
// x: a DP run over it is refused before any task, saying which feature and what to do.
func TestDPRunWithoutBoundsIsRefusedNamingTheFeatureAndTheFix(t *testing.T) {
	for _, mech := range []string{"client", "record"} {
		cfg := dpConfig(2, false)
		cfg.Privacy.Mechanism = mech
		cfg = cfg.WithDefaults()
		require.NoError(t, cfg.Validate())
		_, err := coordinator.NewCore(cfg, tinySchema(t), []byte(testSchemaYAML), nil, nil)
		require.Error(t, err, mech)
		require.ErrorIs(t, err, dataset.ErrNoBounds)
		assert.Contains(t, err.Error(), "without public bounds: x")
		assert.Contains(t, err.Error(), "declare them under bounds:")
	}
	cfg := dpConfig(2, false)
	cfg.Privacy = coordinator.PrivacyConfig{}
	_, err := coordinator.NewCore(cfg.WithDefaults(), tinySchema(t), []byte(testSchemaYAML), nil, nil)
	require.NoError(t, err, "a run without DP needs no bounds")
}

// TestEvaluationIsNoisedAndAccounted: in a plaintext DP run the evaluate task carries the
// release's noise (for the coordinator to add: no expected contributors), asks for the DP
// histogram resolution and no importance sums; the committed figures carry noise of z_eval
// times the count's scale, and the evaluation is a release of its own in the accountant.
func TestEvaluationIsNoisedAndAccounted(t *testing.T) {
	const rounds = 120
	cfg := dpConfig(rounds, false)
	cfg.EvalEvery = 1
	cfg.HistogramBins = 500 // capped in a DP run
	cfg.Privacy.EvaluationNoiseMultiplier = 3
	h := newDPHarness(t, cfg)
	scale := metrics.NoiseScales(metrics.EvalSumsRecordBound(metrics.DefaultDPBins))[0]
	const n = 1e6 // far from 0: the clamping of noised counts never applies
	var devs []float64
	for r := 1; r <= rounds; r++ {
		for _, id := range []string{"a", "b", "c"} {
			h.submit(id, dpVec(0.5, 0, 0, 0, 0))
		}
		tk, ok := h.poll("b")
		require.True(t, ok)
		require.Equal(t, task.KindEvaluate, tk.Kind)
		require.NotNil(t, tk.Noise, "every evaluate task of a DP run carries its noise")
		assert.Equal(t, task.ReleaseNoise{NoiseMultiplier: 3, Delta: 1e-5, Level: task.DPClient}, *tk.Noise,
			"the client weighs its records for client-level DP")
		assert.Equal(t, metrics.DefaultDPBins, tk.HistogramBins)
		for _, id := range []string{"a", "b", "c"} {
			h.submit(id, dpEvalVec(metrics.DefaultDPBins, n))
		}
		v := h.commits[len(h.commits)-1]
		require.NotNil(t, v.Evaluation)
		devs = append(devs, v.EvalSums[0]-3*n)
		assert.Nil(t, v.Importance, "no importance in a DP release")
	}
	var sq float64
	for _, d := range devs {
		sq += d * d
	}
	std := math.Sqrt(sq / float64(len(devs)))
	want := 3 * scale
	assert.InDelta(t, want, std, 0.2*want, "noise on N %v, want z_eval*sqrt(6) = %v", std, want)

	rep := h.commits[len(h.commits)-1].Privacy
	require.NotNil(t, rep)
	require.Len(t, rep.Releases, 1+2*rounds, "statistics, then a train and an evaluate release per round")
	acc := privacy.NewAccountant(nil)
	var sum float64
	for i, rel := range rep.Releases[1:] {
		want := modelfile.ReleaseTrain
		if i%2 == 1 {
			want = modelfile.ReleaseEvaluate
		}
		assert.Equal(t, want, rel.Kind)
		require.NoError(t, acc.Compose(rel.SamplingRate, rel.NoiseMultiplier, rel.Steps))
		sum += rel.Epsilon
	}
	total, _, err := acc.Epsilon(1e-5, privacy.PLD)
	require.NoError(t, err)
	assert.InDelta(t, total, rep.Epsilon, 1e-9, "the run's epsilon composes training and evaluations")
	assert.InDelta(t, rep.Epsilon, sum, 1e-9, "the releases' epsilons add up to the total")
	assert.Equal(t, 3.0, rep.EvaluationNoiseMultiplier)
	trainOnly, _, err := privacy.Epsilon(1, 2, rounds, 1e-5, nil, privacy.PLD)
	require.NoError(t, err)
	assert.Greater(t, rep.Epsilon, trainOnly, "the evaluations cost budget")
}

// TestTheBudgetReservesTheEvaluationsFirst: with z derived from an epsilon budget, the
// evaluations' noise is set so that they alone spend evaluation_share of it, and the
// training's so that both together spend the budget, in one accountant.
func TestTheBudgetReservesTheEvaluationsFirst(t *testing.T) {
	for _, mech := range []string{"client", "record"} {
		t.Run(mech, func(t *testing.T) {
			cfg := dpConfig(10, false)
			cfg.EvalEvery = 3 // rounds 3, 6, 9 and 10: 4 evaluations
			cfg.Privacy = coordinator.PrivacyConfig{Mechanism: mech, Epsilon: 2, Delta: 1e-5, SamplingRate: 0.2, StepsPerRound: 5}
			cfg = cfg.WithDefaults()
			h := newDPHarness(t, cfg)
			ps := h.core.Status().Privacy
			require.NotNil(t, ps)
			evals, _, err := privacy.Epsilon(1, ps.EvaluationNoiseMultiplier, 4, 1e-5, nil, privacy.PLD)
			require.NoError(t, err)
			assert.InDelta(t, coordinator.DefaultEvaluationShare*2, evals, 1e-6, "4 evaluations alone spend the share")

			steps := 10
			if mech == "record" {
				steps = 50
			}
			acc := privacy.NewAccountant(nil)
			require.NoError(t, acc.Compose(1, ps.EvaluationNoiseMultiplier, 4))
			require.NoError(t, acc.Compose(0.2, ps.NoiseMultiplier, steps))
			total, _, err := acc.Epsilon(1e-5, privacy.PLD)
			require.NoError(t, err)
			assert.LessOrEqual(t, total, 2.0)
			assert.InDelta(t, 2.0, total, 1e-4, "the training gets what the evaluations leave")
			trainOnly, err := privacy.SigmaFor(0.2, steps, 1e-5, 2, nil, privacy.PLD)
			require.NoError(t, err)
			assert.Greater(t, ps.NoiseMultiplier, trainOnly)
		})
	}
}

// TestTheBudgetStopCountsEvaluations: z = 3 on every client every round costs about as much as
// an evaluation at z_eval = 3; a budget that fits 4 rounds alone fits only 2 with their
// evaluations, and the run stops there, before a round whose evaluation would not fit.
func TestTheBudgetStopCountsEvaluations(t *testing.T) {
	eps := func(rounds, evals int) float64 {
		acc := privacy.NewAccountant(nil)
		require.NoError(t, acc.Compose(1, 3, rounds))
		if evals > 0 {
			require.NoError(t, acc.Compose(1, 3, evals))
		}
		e, _, err := acc.Epsilon(1e-5, privacy.PLD)
		require.NoError(t, err)
		return e
	}
	budget := (eps(2, 2) + eps(3, 3)) / 2
	require.Greater(t, budget, eps(4, 0), "without evaluations 4 rounds would fit")
	cfg := dpConfig(10, false)
	cfg.EvalEvery = 1
	cfg.Privacy.NoiseMultiplier = 3
	cfg.Privacy.Epsilon = budget
	cfg.Privacy.EvaluationNoiseMultiplier = 3
	h := newDPHarness(t, cfg)
	for range 3 {
		for _, id := range []string{"a", "b", "c"} {
			if tk, ok := h.poll(id); ok && tk.Kind == task.KindTrain {
				h.submit(id, dpVec(0.5, 0, 0, 0, 0))
			}
		}
		for _, id := range []string{"a", "b", "c"} {
			if tk, ok := h.poll(id); ok && tk.Kind == task.KindEvaluate {
				h.submit(id, dpEvalVec(10, 100))
			}
		}
	}
	require.Len(t, h.commits, 2)
	st := h.core.Status()
	assert.Equal(t, coordinator.RunCompleted, st.Status)
	assert.Contains(t, st.Message, "stopped by the privacy budget after 2 rounds")
	assert.InDelta(t, eps(2, 2), h.commits[1].Privacy.Epsilon, 1e-9)
}

// TestClientSamplingDrawsFromThePrivateSource: under client-level DP the cohort is a Poisson
// sample drawn from the coordinator's noise source, not from the run's seed (which the model
// card prints): the same seed with another source samples another cohort. The evaluation of
// the round asks exactly the clients that were asked to train the model.
func TestClientSamplingDrawsFromThePrivateSource(t *testing.T) {
	cfg := dpConfig(3, false)
	cfg.Quorum = 1
	cfg.EvalEvery = 1
	cfg.Privacy.SamplingRate = 0.5
	cohorts := map[string]bool{}
	for seed := range uint64(12) {
		require.NoError(t, cfg.Validate())
		schema, err := dataset.ParseSchema("tiny", []byte(boundedSchemaYAML))
		require.NoError(t, err)
		core, err := coordinator.NewCore(cfg, schema, []byte(boundedSchemaYAML), nil, nil)
		require.NoError(t, err)
		core.SetNoiseSource(rand.NewPCG(seed, 9))
		for _, id := range []string{"a", "b", "c"} {
			require.NoError(t, core.Register(task.Registration{ClientID: id, TrainRecords: 1000}))
		}
		trained := core.Cohort()
		cohorts[string(rune('0'+len(trained)))+joined(trained)] = true
		if len(trained) == 0 {
			continue
		}
		for _, id := range trained {
			tk, ok, err := core.Poll(id)
			require.NoError(t, err)
			require.True(t, ok)
			_, err = core.Submit(task.Result{ClientID: id, TaskID: tk.ID, RunID: tk.RunID, Round: tk.Round, Kind: tk.Kind,
				Sum: task.Vector{Plain: dpVec(0.5, 0, 0, 0, 0)}})
			require.NoError(t, err)
		}
		tk, ok, err := core.Poll(trained[0])
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, task.KindEvaluate, tk.Kind)
		assert.Equal(t, trained, core.Cohort(), "the evaluation asks the clients that trained from the model")
	}
	assert.Greater(t, len(cohorts), 2, "the sample follows the private source: %v", cohorts)
}

func joined(ids []string) string {
	out := ""
	for _, id := range ids {
		out += id + ","
	}
	return out
}

// TestPlannedDPSGDReachesTheClientsAndTheAccountant: a record-level run with sampling_rate unset
// is planned by privacy.PlanDPSGD from the budget, the declared records, min_clients, rounds and
// the schema (1 numeric, 1 categorical: R2 = 3), and its train tasks carry exactly the plan,
// the reference records included; the run's stored configuration keeps the plan, and a resume
// with the unplanned configuration takes it from there instead of planning again.
func TestPlannedDPSGDReachesTheClientsAndTheAccountant(t *testing.T) {
	cfg := tinyConfig()
	cfg.Rounds, cfg.EvalEvery, cfg.Quorum = 4, 2, 3
	cfg.Privacy = coordinator.PrivacyConfig{Mechanism: "record", Epsilon: 1, Delta: 1e-5, Records: 6000}
	cfg = cfg.WithDefaults()
	require.NoError(t, cfg.Validate())

	conv := privacy.PLD
	zEval, err := privacy.SigmaFor(1, 2, 1e-5, coordinator.DefaultEvaluationShare, nil, conv)
	require.NoError(t, err)
	reserved := privacy.NewAccountant(nil)
	require.NoError(t, reserved.Compose(1, zEval, 2))
	want, err := privacy.PlanDPSGD(privacy.DPSGDPlanInput{Budget: privacy.Budget{Epsilon: 1, Delta: 1e-5, Conversion: conv},
		Reserved: reserved, Records: 6000, Clients: 3, Rounds: 4, RowNormSquared: 3})
	require.NoError(t, err)

	h := newDPHarness(t, cfg)
	tk, ok := h.poll("a")
	require.True(t, ok)
	require.Equal(t, task.KindTrain, tk.Kind)
	require.NotNil(t, tk.DP)
	assert.Equal(t, task.DPSpec{Mechanism: "record", ClipNorm: want.ClipNorm, SamplingRate: want.SamplingRate, Steps: want.StepsPerRound,
		NoiseMultiplier: want.NoiseMultiplier, Delta: 1e-5, ReferenceRecords: want.ReferenceRecords}, *tk.DP)
	assert.Equal(t, 2000, want.ReferenceRecords)
	assert.InEpsilon(t, want.LearningRate, tk.Train.LearningRate, 1e-12, "the plan's learning rate, not the default")

	st := h.core.Status()
	planned := st.Config.Privacy
	assert.Equal(t, want.SamplingRate, planned.SamplingRate)
	assert.Equal(t, want.StepsPerRound, planned.StepsPerRound)
	assert.Equal(t, want.ReferenceRecords, planned.ReferenceRecords)

	schema, err := dataset.ParseSchema("tiny", []byte(boundedSchemaYAML))
	require.NoError(t, err)
	resumed, err := coordinator.NewCore(cfg, schema, []byte(boundedSchemaYAML), &st, nil)
	require.NoError(t, err)
	assert.Equal(t, planned, resumed.Status().Config.Privacy, "a resumed run keeps its plan")
}

func TestPlannedDPSGDConfigurationIsChecked(t *testing.T) {
	base := coordinator.PrivacyConfig{Mechanism: "record", Epsilon: 1, Delta: 1e-5}
	tests := []struct {
		name   string
		mutate func(p *coordinator.PrivacyConfig)
		key    string
	}{
		{name: "no budget to plan from", mutate: func(p *coordinator.PrivacyConfig) { p.Epsilon, p.NoiseMultiplier = 0, 2 }, key: "run.privacy.epsilon"},
		{name: "noise with a planned schedule", mutate: func(p *coordinator.PrivacyConfig) { p.NoiseMultiplier = 2 }, key: "run.privacy.sampling_rate"},
		{name: "steps with a planned schedule", mutate: func(p *coordinator.PrivacyConfig) { p.StepsPerRound = 10 }, key: "run.privacy.sampling_rate"},
		{name: "negative records", mutate: func(p *coordinator.PrivacyConfig) { p.Records = -1 }, key: "run.privacy.records"},
		{name: "nan batch", mutate: func(p *coordinator.PrivacyConfig) { p.Batch = math.NaN() }, key: "run.privacy.batch"},
		{name: "records with an explicit schedule", mutate: func(p *coordinator.PrivacyConfig) { p.SamplingRate, p.StepsPerRound, p.Records = 0.1, 10, 100 }, key: "run.privacy.records"},
		{name: "negative reference", mutate: func(p *coordinator.PrivacyConfig) { p.SamplingRate, p.StepsPerRound, p.ReferenceRecords = 0.1, 10, -1 }, key: "run.privacy.reference_records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tinyConfig()
			cfg.Privacy = base
			tt.mutate(&cfg.Privacy)
			cfg = cfg.WithDefaults()
			err := cfg.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.key)
		})
	}

	cfg := tinyConfig()
	cfg.Privacy = base
	cfg = cfg.WithDefaults()
	require.NoError(t, cfg.Validate(), "records may come later (the simulator fills them)")
	schema, err := dataset.ParseSchema("tiny", []byte(boundedSchemaYAML))
	require.NoError(t, err)
	_, err = coordinator.NewCore(cfg, schema, []byte(boundedSchemaYAML), nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run.privacy.records", "but not never")
}
