package sim_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/sharedtest"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/sim"
	"github.com/fedprop/fedprop/sim/attack"
	"github.com/fedprop/fedprop/strategy"
)

func parse(t *testing.T, doc string) sim.Config {
	t.Helper()
	cfg, err := sim.ParseConfig("test", []byte(doc))
	require.NoError(t, err)
	return cfg
}

const smallSynthetic = `
seed: 9
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 400}
run:
  rounds: 4
  min_clients: 4
`

func TestSimulationRepeatsBitForBit(t *testing.T) {
	cfg := parse(t, smallSynthetic)
	a, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	b, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	require.Len(t, a.Rounds, 4)
	assert.Equal(t, a.Summary.Weights, b.Summary.Weights, "same seed, same weights, bit for bit")
	assert.Equal(t, a.Summary.Final, b.Summary.Final)
	for i := range a.Rounds {
		assert.Equal(t, a.Rounds[i].Test, b.Rounds[i].Test)
	}

	cfg.Seed++
	cfg.Run.Seed++
	c, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	assert.NotEqual(t, a.Summary.Weights, c.Summary.Weights, "another seed, another run")
}

func TestSimulationLearnsTheSyntheticPropensity(t *testing.T) {
	res, err := sim.Run(context.Background(), parse(t, smallSynthetic), sim.Options{})
	require.NoError(t, err)
	s := res.Summary
	require.NotNil(t, s.Centralized)
	assert.Greater(t, s.Final.AUC, 0.65)
	assert.InDelta(t, s.Centralized.AUC, s.Final.AUC, 0.03, "federated is close to centralized")
	assert.True(t, s.ConsentTracked)
	assert.Positive(t, s.ExcludedNoConsent, "the generator's opted-out customers are excluded and counted")
	// The federated evaluation the coordinator computed from the clients' sums agrees with
	// the exact evaluation on the pooled test rows.
	last := res.Rounds[len(res.Rounds)-1]
	require.NotNil(t, last.Federated)
	assert.InDelta(t, last.Test.AUC, last.Federated.AUC, 1e-3)
	assert.InDelta(t, last.Test.LogLoss, last.Federated.LogLoss, 1e-9)
	assert.Equal(t, last.Test.N, last.Federated.N)
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := map[string]string{
		"seed: 1\nrunn: {}\n":                          "runn",
		"data: {source: parquet}\n":                    "data.source",
		"data: {source: csv, csv: {schema: s.yaml}}\n": "data.csv.path",
		"run: {rounds: -1}\n":                          "run.rounds",
		"data: {source: csv, csv: {path: a, schema: b}, partition: {method: natural}}\n": "data.partition.column",
	}
	for doc, key := range cases {
		_, err := sim.ParseConfig("cfg.yaml", []byte(doc))
		require.Error(t, err, doc)
		assert.Contains(t, err.Error(), key)
		assert.Contains(t, err.Error(), "cfg.yaml")
	}
}

// TestBankFederatedMatchesCentralized is the foundation's acceptance check on the real UCI
// Bank Marketing data: configs/sim-bank.yaml.
func TestBankFederatedMatchesCentralized(t *testing.T) {
	cfg := bankConfig(t, "configs/sim-bank.yaml")
	res, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	s := res.Summary
	t.Logf("federated AUC %.4f log loss %.4f accuracy %.4f; centralized AUC %.4f log loss %.4f accuracy %.4f",
		s.Final.AUC, s.Final.LogLoss, s.Final.Accuracy, s.Centralized.AUC, s.Centralized.LogLoss, s.Centralized.Accuracy)
	assert.Equal(t, 9043, s.TestRows)
	assert.Equal(t, 36168, s.TrainRows)
	assert.False(t, s.ConsentTracked, "bank-full has no consent column, and the run says so")
	assert.GreaterOrEqual(t, s.Final.AUC, 0.765)
	assert.GreaterOrEqual(t, s.Centralized.AUC, 0.770)
}

// maxAbsDiff is the largest absolute difference between two weight vectors.
func maxAbsDiff(t *testing.T, a, b []float64) float64 {
	t.Helper()
	require.Len(t, b, len(a))
	worst := 0.0
	for i := range a {
		worst = max(worst, math.Abs(a[i]-b[i]))
	}
	return worst
}

func TestHEModeTrainsTheSameModelAsPlaintext(t *testing.T) {
	plain := parse(t, smallSynthetic)
	he := parse(t, `
seed: 9
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 400}
committee_size: 4
run:
  rounds: 4
  min_clients: 4
  secure_aggregation: {mode: he, threshold: 3}
`)
	require.Len(t, he.Run.SecureAggregation.Committee, 4)
	a, err := sim.Run(context.Background(), plain, sim.Options{})
	require.NoError(t, err)
	b, err := sim.Run(context.Background(), he, sim.Options{})
	require.NoError(t, err)
	assert.Equal(t, "he", b.Summary.SecureAggregation)
	assert.Less(t, maxAbsDiff(t, a.Summary.Weights, b.Summary.Weights), 1e-6)
	assert.InDelta(t, a.Summary.Final.AUC, b.Summary.Final.AUC, 1e-4)
	assert.Greater(t, b.Summary.BytesPerClientRound, 8*float64(len(a.Summary.Weights)), "ciphertexts, not plaintext, were sent")
	assert.Positive(t, b.Summary.EncryptionSeconds)
	assert.Positive(t, b.Summary.DecryptionSeconds)

	// Not bit for bit: lattigo draws the key-generation and smudging noise of the multiparty
	// protocols from crypto/rand, as it must (predictable smudging noise would reveal the
	// members' key shares). The noise stays far below the model's precision.
	c, err := sim.Run(context.Background(), he, sim.Options{})
	require.NoError(t, err)
	assert.Less(t, maxAbsDiff(t, b.Summary.Weights, c.Summary.Weights), 1e-8, "he runs repeat to within the protocol noise")
}

// TestBankHEMatchesPlaintext is issue 3's acceptance check: configs/sim-bank-he.yaml gives the
// model of configs/sim-bank.yaml to 1e-6, and its test AUC to 1e-4.
func TestBankHEMatchesPlaintext(t *testing.T) {
	run := func(path string) sim.Summary {
		cfg := bankConfig(t, path)
		f := false
		cfg.Centralized = &f
		res, err := sim.Run(context.Background(), cfg, sim.Options{})
		require.NoError(t, err)
		return res.Summary
	}
	plain := run("configs/sim-bank.yaml")
	he := run("configs/sim-bank-he.yaml")
	diff := maxAbsDiff(t, plain.Weights, he.Weights)
	t.Logf("max |w_he - w_plain| = %.3g; AUC plain %.6f he %.6f", diff, plain.Final.AUC, he.Final.AUC)
	assert.Less(t, diff, 1e-6)
	assert.InDelta(t, plain.Final.AUC, he.Final.AUC, 1e-4)
	assert.Equal(t, 10, he.CommitteeSize)
	assert.Equal(t, 6, he.Threshold)
}

// TestBankDPSGDAtEpsilonOne is issue 4's utility check, with issue 10's accounting and the
// planned DP-SGD of privacy.PlanDPSGD: record-level DP-SGD at epsilon 1, delta 1e-5
// (configs/sim-bank-dp.yaml, no DP-SGD setting given) reaches test AUC 0.76 with every release
// inside the same budget: the standardisation from the schema's public bounds (no data read,
// epsilon 0), 30 training rounds and ten noised evaluations (every third round), composed in
// one accountant, the evaluations' share reserved before the training's noise is derived.
func TestBankDPSGDAtEpsilonOne(t *testing.T) {
	cfg := bankConfig(t, "configs/sim-bank-dp.yaml")
	f := false
	cfg.Centralized = &f
	res, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	s := res.Summary
	require.NotNil(t, s.Privacy)
	p := s.Privacy
	t.Logf("DP-SGD: AUC %.4f, epsilon %.4f at delta %g, q %.4g, z %.4f, %d steps, evaluations at z %.4f (noise %.1f per count)",
		s.Final.AUC, p.Epsilon, p.Delta, p.SamplingRate, p.NoiseMultiplier, p.Steps, p.EvaluationNoiseMultiplier, p.EvaluationNoiseStd)
	assert.Equal(t, "record", p.Mechanism)
	assert.LessOrEqual(t, p.Epsilon, 1.0)
	assert.Greater(t, p.Epsilon, 0.99, "the derived noise spends the budget, not far less")
	assert.GreaterOrEqual(t, s.Final.AUC, 0.76)

	const rounds, evalEvery = 30, 3
	require.Len(t, p.Releases, 1+rounds+rounds/evalEvery, "statistics, then a train release each round and an evaluate release every third")
	assert.Equal(t, modelfile.Release{Kind: modelfile.ReleaseStatistics, Mechanism: modelfile.MechanismPublicBounds}, p.Releases[0],
		"the standardisation comes from public bounds and costs nothing")
	var sum float64
	acc := privacy.NewAccountant(nil)
	i := 1
	for round := 1; round <= rounds; round++ {
		r := p.Releases[i]
		assert.Equal(t, modelfile.ReleaseTrain, r.Kind, "release %d", i)
		assert.Equal(t, round, r.Round)
		assert.Positive(t, r.Epsilon)
		sum += r.Epsilon
		i++
		if round%evalEvery == 0 {
			r := p.Releases[i]
			assert.Equal(t, modelfile.ReleaseEvaluate, r.Kind, "release %d", i)
			assert.Equal(t, round, r.Round)
			assert.Equal(t, p.EvaluationNoiseMultiplier, r.NoiseMultiplier)
			require.NoError(t, acc.Compose(1, r.NoiseMultiplier, 1))
			sum += r.Epsilon
			i++
		}
	}
	assert.InDelta(t, p.Epsilon, sum, 1e-9, "the releases' epsilons add up to the composed total")
	require.NoError(t, acc.Compose(p.SamplingRate, p.NoiseMultiplier, p.Steps))
	total, _, err := acc.Epsilon(p.Delta, privacy.PLD)
	require.NoError(t, err)
	assert.InDelta(t, total, p.Epsilon, 1e-9, "one accountant over DP-SGD's steps and the evaluations")
	alone, _, err := privacy.Epsilon(1, p.EvaluationNoiseMultiplier, rounds/evalEvery, p.Delta, nil, privacy.PLD)
	require.NoError(t, err)
	assert.InDelta(t, coordinator.DefaultEvaluationShare, alone, 1e-6, "the evaluations alone would spend their reserved share")
	require.NotNil(t, s.FederatedEvaluation, "the federated evaluation is released, noised")
}

// TestSyntheticDPSGDNearNonPrivate is the other half of "no per-dataset tuning": the run and
// privacy blocks of configs/sim-bank-dp.yaml on a synthetic population of another size (12,095
// training records) and base rate (7%), configs/sim-synthetic-dp.yaml, lose at most 0.02 AUC
// against the same run without differential privacy.
func TestSyntheticDPSGDNearNonPrivate(t *testing.T) {
	raw, err := os.ReadFile("../configs/sim-synthetic-dp.yaml")
	require.NoError(t, err)
	cfg, err := sim.ParseConfig("sim-synthetic-dp.yaml", raw)
	require.NoError(t, err)
	f := false
	cfg.Centralized = &f
	private, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	require.NotNil(t, private.Summary.Privacy)
	assert.LessOrEqual(t, private.Summary.Privacy.Epsilon, 1.0)

	cfg.Run.Privacy = coordinator.PrivacyConfig{Mechanism: coordinator.DPNone}
	plain, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	t.Logf("synthetic: AUC %.4f at epsilon 1, %.4f without DP", private.Summary.Final.AUC, plain.Summary.Final.AUC)
	assert.GreaterOrEqual(t, private.Summary.Final.AUC, plain.Summary.Final.AUC-0.02)
}

// TestPrivacyBudgetStopsTheRun: a run whose budget allows exactly 7 rounds commits 7 versions
// and says why it stopped.
func TestPrivacyBudgetStopsTheRun(t *testing.T) {
	const z, q = 3.0, 1.0
	// Every round is evaluated, each evaluation at z as well: k rounds compose 2k mechanisms.
	eps7, _, err := privacy.Epsilon(q, z, 14, 1e-5, nil, privacy.PLD)
	require.NoError(t, err)
	eps8, _, err := privacy.Epsilon(q, z, 16, 1e-5, nil, privacy.PLD)
	require.NoError(t, err)
	budget := (eps7 + eps8) / 2
	cfg := parse(t, fmt.Sprintf(`
seed: 5
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 300}
run:
  rounds: 20
  min_clients: 4
  min_records_plaintext: 0
  privacy: {mechanism: client, noise_multiplier: %v, sampling_rate: %v, epsilon: %v, delta: 1.0e-5, clip_norm: 0.5, evaluation_noise_multiplier: %v}
`, z, q, budget, z))
	res, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	s := res.Summary
	assert.Equal(t, 7, s.Rounds)
	require.Len(t, res.Rounds, 7)
	assert.Equal(t, "completed", s.Status)
	assert.Contains(t, s.Message, "stopped by the privacy budget after 7 rounds")
	assert.Contains(t, s.Message, "round 8 would raise epsilon")
	require.NotNil(t, s.Privacy)
	assert.InDelta(t, eps7, s.Privacy.Epsilon, 1e-9)
	assert.LessOrEqual(t, s.Privacy.Epsilon, budget)
}

func TestFailuresAreSimulatedAndRepeat(t *testing.T) {
	cfg := parse(t, `
seed: 12
data:
  source: synthetic
  synthetic: {branches: 12, customers_per_branch: 150}
run:
  rounds: 6
  min_clients: 8
  min_records_plaintext: 0 # research: branches of about 110 training records, some below 100
  min_cohort: 4
  quorum: 4
  max_attempts: 10
failures:
  dropout: 0.1
  straggler: {median_ticks: 1, sigma: 1.0}
  deadline_ticks: 3
  join_late: {fraction: 0.25, round: 3}
  leave: {fraction: 0.2, round: 4}
`)
	a, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	s := a.Summary
	assert.Equal(t, 6, s.Rounds)
	assert.Positive(t, s.Dropped, "some answers were dropped")
	assert.Positive(t, s.Late, "some stragglers missed the deadline")
	var contributors []int
	for _, r := range a.Rounds {
		contributors = append(contributors, r.Contributors)
	}
	assert.NotEqual(t, 12, slices.Max(contributors), "never every client at once: %v", contributors)

	b, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	assert.Equal(t, s.Weights, b.Summary.Weights, "failures are drawn from seeds: the run repeats")
	assert.Equal(t, s.Dropped, b.Summary.Dropped)
	assert.Equal(t, s.Late, b.Summary.Late)
}

// TestRobustAggregationDefeatsTheAttack is issue 5's defence check on bank-full: 20% of the
// branches flip and scale their update by 10; FedAvg falls below AUC 0.70 while the trimmed
// mean, the median and Krum stay at 0.75 or more.
func TestRobustAggregationDefeatsTheAttack(t *testing.T) {
	base := bankConfig(t, "configs/sim-bank-attack.yaml")
	require.Equal(t, 0.2, base.Attack.Fraction)
	for _, tc := range []struct {
		robust         strategy.RobustConfig
		atLeast, below float64
	}{
		{strategy.RobustConfig{}, 0, 0.70},
		{strategy.RobustConfig{Name: "trimmed_mean", Beta: 0.2}, 0.75, 1},
		{strategy.RobustConfig{Name: "median"}, 0.75, 1},
		{strategy.RobustConfig{Name: "krum", F: 2}, 0.75, 1},
	} {
		cfg := base
		cfg.Run.Robust = tc.robust
		res, err := sim.Run(context.Background(), cfg, sim.Options{})
		require.NoError(t, err)
		auc := res.Summary.Final.AUC
		t.Logf("%-12s AUC %.4f", tc.robust.Name, auc)
		assert.GreaterOrEqual(t, auc, tc.atLeast, "defence %q", tc.robust.Name)
		assert.Less(t, auc, tc.below, "defence %q", tc.robust.Name)
	}
}

func TestRobustAggregationIsRefusedInHEMode(t *testing.T) {
	_, err := sim.ParseConfig("cfg.yaml", []byte(`
data: {source: synthetic, synthetic: {branches: 4}}
committee_size: 4
run:
  min_clients: 4
  robust: {name: median}
  secure_aggregation: {mode: he, threshold: 3}
`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run.robust.name")
	assert.Contains(t, err.Error(), "hides them from the coordinator")
}

// TestPersonalizationPerJob is issue 5's personalization check: bank-full partitioned
// naturally by job, the summary compares the global and the personalized model per client.
func TestPersonalizationPerJob(t *testing.T) {
	cfg := bankConfig(t, "configs/sim-bank-personalize.yaml")
	f := false
	cfg.Centralized = &f
	res, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	p := res.Summary.Personalization
	require.NotNil(t, p)
	require.Len(t, p.Clients, 12, "one client per job value")
	for _, c := range p.Clients {
		assert.True(t, strings.HasPrefix(c.Client, "job="), c.Client)
		require.NotNil(t, c.GlobalAUC, c.Client)
		require.NotNil(t, c.PersonalizedAUC, c.Client)
		assert.NotEqual(t, *c.GlobalAUC, *c.PersonalizedAUC, "%s: fine-tuning changed the model", c.Client)
	}
	assert.Equal(t, 12, p.Global.Clients)
	assert.LessOrEqual(t, p.Global.P25, p.Global.Median)
	assert.LessOrEqual(t, p.Global.Median, p.Global.P75)
	t.Logf("global median AUC %.4f, personalized %.4f; %d of 12 improved", p.Global.Median, p.Personalized.Median, p.Improved)
}

func TestEpsilonNoneMeansNoDifferentialPrivacy(t *testing.T) {
	base := "data: {source: synthetic}\nrun:\n  privacy: {mechanism: record, epsilon: %s, sampling_rate: 0.1}\n"
	for _, v := range []string{"none", "null"} {
		cfg, err := sim.ParseConfig("cfg.yaml", []byte(fmt.Sprintf(base, v)))
		require.NoError(t, err, v)
		assert.Equal(t, "none", cfg.Run.Privacy.Mechanism, v)
	}
	_, err := sim.ParseConfig("cfg.yaml", []byte("data: {source: synthetic}\nrun:\n  privacy: {mechanism: record, sampling_rate: 0.1}\n"))
	require.Error(t, err, "an absent epsilon is not taken for none")
	assert.Contains(t, err.Error(), "run.privacy.noise_multiplier")
}

// TestFederatedEvaluationAndFairnessEqualCentralFigures is issue 6's check: on bank-full with
// 10 Dirichlet clients, the federated AUC, log loss and every fairness figure equal the figures
// computed centrally on the pooled test rows (AUC within the histogram bound, counts exactly),
// in plaintext and in he mode.
func TestFederatedEvaluationAndFairnessEqualCentralFigures(t *testing.T) {
	for _, path := range []string{"configs/sim-bank.yaml", "configs/sim-bank-he.yaml"} {
		t.Run(path, func(t *testing.T) {
			cfg := bankConfig(t, path)
			f := false
			cfg.Centralized = &f
			cfg.Run.Rounds = 3
			world, err := sim.Load(context.Background(), cfg)
			require.NoError(t, err)
			res, err := sim.Run(context.Background(), cfg, sim.Options{})
			require.NoError(t, err)
			s := res.Summary
			require.NotNil(t, s.Fairness)
			require.NotNil(t, s.FederatedEvaluation)

			// Central figures: the final weights scored on the pooled test rows.
			enc, err := encoderFor(world)
			require.NoError(t, err)
			scores := logreg.PredictAll(s.Weights, enc.Encode(world.Test), nil)
			exact := metrics.Evaluate(scores, world.Test.Label)
			fed := *s.FederatedEvaluation
			assert.Equal(t, exact.N, math.Round(fed.N))
			assert.InDelta(t, exact.AUC, fed.AUC, 0.001, "within the histogram bound")
			assert.InDelta(t, exact.LogLoss, fed.LogLoss, 1e-6)
			assert.InDelta(t, exact.Accuracy, fed.Accuracy, 1e-9)

			layout, err := fairness.NewLayout(world.Schema, cfg.Run.Fairness.LayoutConfig)
			require.NoError(t, err)
			central := fairness.NewGroupSums(layout)
			require.NoError(t, central.AddScores(scores, world.Test.Label, world.Test.Groups))
			want, err := central.Report()
			require.NoError(t, err)
			require.Len(t, s.Fairness.Attributes, len(want.Attributes))
			for a, wa := range want.Attributes {
				ga := s.Fairness.Attributes[a]
				require.Equal(t, wa.Attribute, ga.Attribute)
				for g, wg := range wa.Groups {
					gg := ga.Groups[g]
					assert.Equal(t, float64(wg.N), math.Round(float64(gg.N)), "%s=%s size", wa.Attribute, wg.Group)
					assert.Equal(t, float64(wg.Positives), math.Round(float64(gg.Positives)), "%s=%s positives", wa.Attribute, wg.Group)
					for k := range wg.Rates {
						assert.Equal(t, float64(wg.Rates[k].PredictedPositive), math.Round(float64(gg.Rates[k].PredictedPositive)))
						assert.Equal(t, float64(wg.Rates[k].TruePositive), math.Round(float64(gg.Rates[k].TruePositive)))
						assert.InDelta(t, float64(wg.Rates[k].PositiveRate), float64(gg.Rates[k].PositiveRate), 1e-9)
					}
					if !math.IsNaN(float64(wg.AUC)) {
						assert.InDelta(t, float64(wg.AUC), float64(gg.AUC), 1e-6)
					}
				}
				for k := range wa.Gaps {
					assert.InDelta(t, float64(wa.Gaps[k].DemographicParity), float64(ga.Gaps[k].DemographicParity), 1e-9)
					assert.InDelta(t, float64(wa.Gaps[k].EqualOpportunity), float64(ga.Gaps[k].EqualOpportunity), 1e-9)
				}
			}
		})
	}
}

// encoderFor pins the encoding the run pinned: the standardisation of the pooled training rows.
func encoderFor(w *sim.World) (*dataset.Encoder, error) {
	std, err := w.PooledTrain().Stats().Standardization()
	if err != nil {
		return nil, err
	}
	return dataset.NewEncoder(w.Schema, std)
}

// bankConfig loads a shipped configuration that reads the UCI data from ../shared/data,
// running from the module root as its paths expect; it skips (or fails under CI) without the data.
func bankConfig(t *testing.T, path string) sim.Config {
	t.Helper()
	sharedtest.Path(t, "bank-full.csv")
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	t.Chdir(root)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	cfg, err := sim.ParseConfig(path, raw)
	require.NoError(t, err)
	return cfg
}

// TestTheCoordinatorRekeysBeforeTheKeysBudgetRunsOut: with a small rekey_after the committee
// makes a new collective key between rounds, more than once, and the model is the one the
// plaintext run trains.
func TestTheCoordinatorRekeysBeforeTheKeysBudgetRunsOut(t *testing.T) {
	plain := parse(t, smallSynthetic)
	he := parse(t, `
seed: 9
data:
  source: synthetic
  synthetic: {branches: 4, customers_per_branch: 400}
committee_size: 4
run:
  rounds: 4
  min_clients: 4
  secure_aggregation: {mode: he, threshold: 3, rekey_after: 21}
`)
	var logs bytes.Buffer
	a, err := sim.Run(context.Background(), plain, sim.Options{})
	require.NoError(t, err)
	b, err := sim.Run(context.Background(), he, sim.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	setups := strings.Count(logs.String(), "committee setup complete")
	t.Logf("%d committee setups", setups)
	assert.GreaterOrEqual(t, setups, 3, "the first setup and at least two new keys")
	assert.Contains(t, logs.String(), "collective key near its decryption budget")
	assert.Contains(t, logs.String(), "setup=sim/setup-3")
	assert.Less(t, maxAbsDiff(t, a.Summary.Weights, b.Summary.Weights), 1e-6)
}

// TestOneMaximalInBoundClientAmongTenKeepsTheModel is the integrity issue's check on
// configs/sim-bank.yaml: one client of ten sends, every round, its honest update turned around
// at exactly the run's max_update_norm with its full example count (the strongest update the
// default bounds admit). None is refused, the run completes, and the model keeps AUC >= 0.74.
// (With other partition seeds FedAvg does not always hold this; README, "Attacks and
// defences", gives the figures and the robust aggregators that do.)
func TestOneMaximalInBoundClientAmongTenKeepsTheModel(t *testing.T) {
	cfg := bankConfig(t, "configs/sim-bank.yaml")
	cfg.Attack = attack.Config{Kind: attack.MaxNorm, Fraction: 0.1}
	require.NoError(t, cfg.Validate())
	res, err := sim.Run(context.Background(), cfg, sim.Options{})
	require.NoError(t, err)
	assert.Equal(t, "completed", res.Summary.Status)
	assert.Zero(t, res.Summary.Rejected, "in-bound: the coordinator refuses none of its updates")
	assert.GreaterOrEqual(t, res.Summary.Final.AUC, 0.74)
	t.Logf("AUC %.4f with one max_norm client among %d", res.Summary.Final.AUC, res.Summary.Clients)
}
