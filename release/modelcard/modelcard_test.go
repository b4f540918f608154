package modelcard_test

import (
	"bytes"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/banktest"
	"github.com/fedprop/fedprop/internal/sharedtest"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// bankInput builds card inputs for a model over the bank schema from fixed, made-up figures: a
// deterministic stand-in for a committed version, independent of the shared data.
func bankInput(t testing.TB) modelcard.Input {
	t.Helper()
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	schema, err := dataset.LoadSchema(filepath.Join(root, "configs", "schema-bank.yaml"))
	require.NoError(t, err)
	std := dataset.Standardization{
		Mean: []float64{40.9362, 1362.2721, 15.8064, 2.7638, 40.1978, 0.5803},
		Std:  []float64{10.6187, 3044.7321, 8.3222, 3.0980, 100.1276, 2.3034},
	}
	enc, err := dataset.NewEncoder(schema, std)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(20, 25))
	coef := make([]float64, enc.Dim())
	for i := range coef {
		coef[i] = math.Round(rng.NormFloat64()*500) / 1000
	}
	created := time.Date(2025, 4, 1, 14, 30, 0, 0, time.UTC)
	doc := &modelfile.Document{
		Format: modelfile.Format, Version: 20, RunID: "bank-2025-04", Round: 20, Created: created,
		Intercept: -2.4817, Coefficients: coef, Features: enc.FeatureNames(), Schema: schema, Standardization: std,
		Contributors: 10, Examples: 36168,
	}
	require.NoError(t, doc.Validate())

	// Held-out rows: scores skewed low as a propensity model's, labels drawn from the scores,
	// groups drawn with a mild dependence on the score.
	n := 9043
	scores, labels, groups := make([]float64, n), make([]float64, n), make([][]string, n)
	for i := range n {
		s := math.Pow(rng.Float64(), 3) * 0.9
		scores[i] = s
		if rng.Float64() < s*1.1 {
			labels[i] = 1
		}
		age := "30-60"
		switch u := rng.Float64(); {
		case u < 0.11+0.1*s:
			age = "<30"
		case u > 0.96-0.2*s:
			age = ">=60"
		}
		groups[i] = []string{age, []string{"married", "divorced", "single"}[rng.IntN(3)]}
	}
	eval := metrics.NewEvalSums(metrics.DefaultBins)
	eval.AddScores(scores, labels)
	layout, err := fairness.NewLayout(schema, fairness.LayoutConfig{Thresholds: []float64{0.2, 0.5}})
	require.NoError(t, err)
	sums := fairness.NewGroupSums(layout)
	require.NoError(t, sums.AddScores(scores, labels, groups))
	report, err := sums.Report()
	require.NoError(t, err)

	var rounds []modelcard.RoundMetrics
	for r := 1; r <= 20; r++ {
		rm := modelcard.RoundMetrics{Round: r, Contributors: 10, Examples: 72336, TrainLoss: 0.29 - 0.002*float64(r)}
		if r%5 == 0 {
			rm.Evaluation = &metrics.Summary{N: 9043, AUC: 0.74 + 0.0015*float64(r), LogLoss: 0.30 - 0.001*float64(r), Accuracy: 0.885, Brier: 0.09 - 0.0002*float64(r)}
			rm.EvalClients = 10
		}
		rounds = append(rounds, rm)
	}
	return modelcard.Input{
		Model:           doc,
		Training:        modelcard.TrainingData{Schema: schema.Name, SchemaHash: "9f2c4e1ab07d35c8e6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7", Clients: 10, Records: 36168, ConsentPurpose: schema.Consent.Purpose, EvaluationClients: 10},
		Rounds:          rounds,
		FinalEvaluation: &eval,
		Fairness:        &report,
		Policy:          &fairness.Policy{MaxDemographicParityGap: 0.10, MaxEqualOpportunityGap: 0.10, Threshold: 0.5},
		Importance: []explain.Importance{
			{Feature: "contact", Importance: 0.596, Share: 0.230}, {Feature: "month", Importance: 0.427, Share: 0.164},
			{Feature: "poutcome", Importance: 0.389, Share: 0.150}, {Feature: "housing", Importance: 0.258, Share: 0.099},
			{Feature: "campaign", Importance: 0.254, Share: 0.098}, {Feature: "age", Importance: 0.071, Share: 0.027},
		},
		Lineage: modelcard.Lineage{RunID: "bank-2025-04", ConfigHash: "3b5d7f9e1c2a4b6d8f0e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382",
			SchemaHash: "9f2c4e1ab07d35c8e6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7", FedpropVersion: "0.2.0",
			ParentVersion: 19, Strategy: "fedavg", Rounds: 20, Seed: 7},
		Generated: time.Date(2025, 4, 2, 9, 0, 0, 0, time.UTC),
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./modelcard -update to create %s", path)
	assert.Equal(t, string(want), string(got), "the Markdown differs from %s (go test ./modelcard -update rewrites it)", path)
}

func TestMarkdownGolden(t *testing.T) {
	cases := []struct {
		name  string
		input func(t *testing.T) modelcard.Input
	}{
		{"candidate-plaintext.md", func(t *testing.T) modelcard.Input {
			in := bankInput(t)
			in.Policy = &fairness.Policy{MaxDemographicParityGap: 0.5, MaxEqualOpportunityGap: 0.5, Threshold: 0.5}
			return in
		}},
		{"approved-override-he-dp.md", func(t *testing.T) modelcard.Input {
			in := bankInput(t)
			in.Privacy = modelcard.Privacy{Mechanism: "Gaussian mechanism, DP-FedAvg (noise added to the clipped sum)", Level: "client",
				Epsilon: 3.2, Delta: 1e-5, ClipNorm: 1, NoiseMultiplier: 0.9, Accountant: "Rényi DP of the sampled Gaussian mechanism"}
			in.SecureAggregation = modelcard.SecureAggregation{Mode: "he", Scheme: "Threshold multiparty CKKS (lattigo v5).",
				Parameters: []modelcard.Parameter{{Name: "Committee", Value: "5 branch agents"}, {Name: "Decryption threshold", Value: "3 of 5"},
					{Name: "Minimum contributors per aggregate", Value: "3"}, {Name: "Ring degree", Value: "2^13"}}}
			in.Approval = modelcard.Approval{Status: modelcard.StatusApproved, Actor: "m.rossi@bank.example", Role: "approver",
				Time: time.Date(2025, 4, 3, 10, 15, 0, 0, time.UTC), Override: true, AuditSeq: 42,
				AuditHash: "c0ffee00112233445566778899aabbccddeeff00112233445566778899aabbcc",
				Reason:    "Age gap reviewed by model risk (MR-2025-114): the >=60 band is 3% of customers | campaign capped per band"}
			in.Generated = time.Date(2025, 4, 3, 11, 0, 0, 0, time.UTC)
			return in
		}},
		{"dp-record-plaintext.md", dpRecordInput},
		{"dp-record-audited.md", func(t *testing.T) modelcard.Input {
			in := dpRecordInput(t)
			in.PrivacyAudit = sampleAudit()
			return in
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			card, err := modelcard.Build(tc.input(t))
			require.NoError(t, err)
			golden(t, tc.name, card.Markdown())
		})
	}
}

// dpRecordInput is a record-level DP run in plaintext mode, as the coordinator reports it: no
// statistics released (public bounds), ten DP-SGD rounds and ten noised evaluations, no
// importance, the releases in the model document.
func dpRecordInput(t *testing.T) modelcard.Input {
	in := bankInput(t)
	in.Importance = nil
	in.Training.Records = 0
	releases := []modelfile.Release{{Kind: modelfile.ReleaseStatistics, Mechanism: modelfile.MechanismPublicBounds}}
	cum := 0.0
	for r := 1; r <= 10; r++ {
		train := 0.3 / float64(r)
		cum += train
		releases = append(releases, modelfile.Release{Kind: modelfile.ReleaseTrain, Round: r, Mechanism: modelfile.MechanismDPSGD,
			NoiseMultiplier: 3.7, SamplingRate: 0.05, Steps: 30, Epsilon: train, Cumulative: cum})
		cum += 0.001
		releases = append(releases, modelfile.Release{Kind: modelfile.ReleaseEvaluate, Round: r, Mechanism: modelfile.MechanismGaussian,
			NoiseMultiplier: 107.5, SamplingRate: 1, Steps: 1, Epsilon: 0.001, Cumulative: cum})
	}
	in.Model.Privacy = &modelfile.Privacy{Mechanism: "record", NoiseMultiplier: 3.7, ClipNorm: 1, SamplingRate: 0.05, Steps: 300,
		EvaluationNoiseMultiplier: 107.5, EvaluationNoiseStd: 504.2, Epsilon: cum, Delta: 1e-5, Conversion: "tight", Budget: 1, Releases: releases}
	in.Privacy = modelcard.Privacy{Mechanism: "Gaussian mechanism, DP-SGD (worst client)", Level: "record", Epsilon: cum, Delta: 1e-5,
		ClipNorm: 1, NoiseMultiplier: 3.7, Accountant: "Rényi DP of the Poisson-subsampled Gaussian mechanism"}
	return in
}

// TestPrivacySectionForEveryCombination: the privacy section opens with what the run's
// combination of differential privacy and secure aggregation protects, and from whom; a run
// without DP says in one sentence that its releases are deliberately outside it.
func TestPrivacySectionForEveryCombination(t *testing.T) {
	he := modelcard.SecureAggregation{Mode: "he", Scheme: "threshold multiparty CKKS"}
	clientDP := modelcard.Privacy{Mechanism: "Gaussian mechanism, DP-FedAvg", Level: "client", Epsilon: 2, Delta: 1e-6}
	recordDP := modelcard.Privacy{Mechanism: "Gaussian mechanism, DP-SGD", Level: "record", Epsilon: 1, Delta: 1e-5}
	outside := "These releases are deliberately outside differential privacy"
	for _, tc := range []struct {
		name    string
		privacy modelcard.Privacy
		secagg  modelcard.SecureAggregation
		want    []string
		not     []string
	}{
		{"neither", modelcard.Privacy{}, modelcard.SecureAggregation{},
			[]string{"**No formal privacy protection.**", "received each client's own sums", outside}, nil},
		{"secure aggregation without DP", modelcard.Privacy{}, he,
			[]string{"**Secure aggregation without differential privacy.**", "never one client's figures", outside}, nil},
		{"client-level DP without secure aggregation", clientDP, modelcard.SecureAggregation{},
			[]string{"**Differentially private, without secure aggregation.**", "(ε = 2.00, δ = 1e-6)", "any one client's data",
				"does not hold against the coordinator itself"}, []string{outside}},
		{"record-level DP without secure aggregation", recordDP, modelcard.SecureAggregation{},
			[]string{"any one customer's record", "already noised by DP-SGD", "its evaluation counts reached it exact"}, []string{outside}},
		{"both", clientDP, he,
			[]string{"**Differentially private under secure aggregation.**", "the guarantee holds against it too"}, []string{outside}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bankInput(t)
			in.Privacy, in.SecureAggregation = tc.privacy, tc.secagg
			card, err := modelcard.Build(in)
			require.NoError(t, err)
			md := string(card.Markdown())
			section := md[strings.Index(md, "## 6. Privacy and security"):strings.Index(md, "## 7. Lineage")]
			for _, w := range tc.want {
				assert.Contains(t, section, w)
			}
			for _, w := range tc.not {
				assert.NotContains(t, section, w)
			}
		})
	}
}

// TestACardListsTheReleasesOfItsModelDocument: the releases and the evaluation noise come from
// the model document; the card adds them up per kind and states the AUC's noise.
func TestACardListsTheReleasesOfItsModelDocument(t *testing.T) {
	in := dpRecordInput(t)
	card, err := modelcard.Build(in)
	require.NoError(t, err)
	require.Len(t, card.Privacy.Releases, 21)
	assert.Equal(t, 504.2, card.Privacy.EvaluationNoiseStd)
	require.NotNil(t, card.Performance.Final.AUCNoiseStd)
	assert.InDelta(t, in.FinalEvaluation.AUCNoiseStd(504.2), *card.Performance.Final.AUCNoiseStd, 1e-12)
	md := string(card.Markdown())
	assert.Contains(t, md, "| Feature statistics | before round 1 | none needed: standardised from the schema's public bounds, no record read | n/a | 0.0000 |")
	assert.Contains(t, md, "| Training | 1–10 | DP-SGD at each client, q = 0.05, 30 steps a round | 3.7000 |")
	assert.Contains(t, md, "| Evaluation | 1–10 | Gaussian noise on the sum | 107.5000 | 0.0100 |")
	assert.Contains(t, md, "| Training records | not released (differential privacy")
	assert.Contains(t, md, "Feature importance is not released")
}

func TestCardJSONRoundTrips(t *testing.T) {
	card, err := modelcard.Build(bankInput(t))
	require.NoError(t, err)
	var first bytes.Buffer
	require.NoError(t, card.Write(&first))
	back, err := modelcard.Decode(bytes.NewReader(first.Bytes()))
	require.NoError(t, err)
	var second bytes.Buffer
	require.NoError(t, back.Write(&second))
	assert.Equal(t, first.String(), second.String())
	assert.Equal(t, card.Markdown(), back.Markdown(), "a decoded card renders the same page")

	_, err = modelcard.Decode(bytes.NewReader(bytes.Replace(first.Bytes(), []byte(modelcard.Format), []byte("other/v9"), 1)))
	require.ErrorIs(t, err, modelcard.ErrInvalid)
	_, err = modelcard.Decode(bytes.NewReader([]byte(`{"format":"fedprop.modelcard/v1","surprise":1}`)))
	require.ErrorIs(t, err, modelcard.ErrInvalid)
}

func TestBuildDerivesVerdictAndDefaults(t *testing.T) {
	in := bankInput(t)
	card, err := modelcard.Build(in)
	require.NoError(t, err)
	assert.Equal(t, modelcard.StatusCandidate, card.Approval.Status)
	assert.Equal(t, "none", card.Privacy.Mechanism)
	assert.Equal(t, "none", card.SecureAggregation.Mode)
	assert.Equal(t, "y = yes", card.Model.Target)
	assert.Len(t, card.Features, 15)
	require.NotNil(t, card.Fairness.Verdict)
	assert.True(t, card.Fairness.Verdict.Flagged, "the made-up age dependence exceeds a 0.10 gap")
	assert.InDelta(t, 9043, card.TrainingData.EvaluationRecords, 0)
	require.NotNil(t, card.Performance.Final)
	assert.Len(t, card.Performance.Final.Calibration, 10)
	assert.Contains(t, string(card.Markdown()), "**Flagged.**")
	assert.NotContains(t, card.IntendedUse.Purpose, "%!", "no formatting errors")
}

func TestBuildRefusesInconsistentInputs(t *testing.T) {
	cases := []struct {
		name   string
		change func(in *modelcard.Input)
	}{
		{"no model", func(in *modelcard.Input) { in.Model = nil }},
		{"unknown status", func(in *modelcard.Input) { in.Approval.Status = "maybe" }},
		{"override of a version that is not flagged", func(in *modelcard.Input) {
			in.Policy = &fairness.Policy{MaxDemographicParityGap: 1, MaxEqualOpportunityGap: 1}
			in.Approval = modelcard.Approval{Status: modelcard.StatusApproved, Actor: "a", Override: true}
		}},
		{"importance of an unknown feature", func(in *modelcard.Input) {
			in.Importance = []explain.Importance{{Feature: "shoe_size", Importance: 1}}
		}},
		{"invalid policy", func(in *modelcard.Input) { in.Policy = &fairness.Policy{} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := bankInput(t)
			tc.change(&in)
			_, err := modelcard.Build(in)
			require.Error(t, err)
		})
	}
}

func TestCalibrationFromHistograms(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	n := 20000
	scores, labels := make([]float64, n), make([]float64, n)
	for i := range n {
		scores[i] = math.Pow(rng.Float64(), 2)
		if rng.Float64() < scores[i] {
			labels[i] = 1
		}
	}
	e := metrics.NewEvalSums(2000)
	e.AddScores(scores, labels)
	bins, err := modelcard.Calibration(e, 10)
	require.NoError(t, err)
	require.Len(t, bins, 10)
	total := 0.0
	for i, b := range bins {
		total += b.N
		assert.InDelta(t, float64(n)/10, b.N, float64(n)/100, "band %d holds about a tenth", i)
		// The exact figures of the rows in the band.
		var sum, pos, cnt float64
		for j, s := range scores {
			if s >= b.Lower && (s < b.Upper || i == len(bins)-1) {
				sum += s
				pos += labels[j]
				cnt++
			}
		}
		assert.Equal(t, cnt, b.N, "band %d", i)
		assert.Equal(t, pos, b.Positives, "band %d", i)
		assert.InDelta(t, sum/cnt, b.MeanPredicted, 0.5/2000+1e-12, "band %d mean within half a histogram bin", i)
		assert.InDelta(t, pos/cnt, b.ObservedRate, 1e-15)
		if i > 0 {
			assert.Equal(t, bins[i-1].Upper, b.Lower, "bands are contiguous")
		}
	}
	assert.Equal(t, float64(n), total)
	assert.Equal(t, 0.0, bins[0].Lower)
	assert.Equal(t, 1.0, bins[len(bins)-1].Upper)

	empty, err := modelcard.Calibration(metrics.NewEvalSums(100), 10)
	require.NoError(t, err)
	assert.Empty(t, empty)
	_, err = modelcard.Calibration(metrics.EvalSums{Bins: 3}, 10)
	require.ErrorIs(t, err, modelcard.ErrInvalid)
}

// TestBankCard builds the card of the bank-full reference model from real figures: the held-out
// evaluation, fairness audit and importance computed on the test rows.
func TestBankCard(t *testing.T) {
	split := banktest.Load(t)
	doc := split.Model(t)
	scores, err := doc.Score(split.Test)
	require.NoError(t, err)
	eval := metrics.NewEvalSums(metrics.DefaultBins)
	eval.AddScores(scores, split.Test.Label)
	layout, err := fairness.NewLayout(split.Schema, fairness.LayoutConfig{Thresholds: []float64{0.2, 0.5}})
	require.NoError(t, err)
	sums := fairness.NewGroupSums(layout)
	require.NoError(t, sums.AddScores(scores, split.Test.Label, split.Test.Groups))
	report, err := sums.Report()
	require.NoError(t, err)
	x, err := explain.New(doc)
	require.NoError(t, err)
	is := x.NewImportanceSums()
	require.NoError(t, x.AddImportance(&is, split.Test))
	imp, err := x.Importance(is)
	require.NoError(t, err)

	card, err := modelcard.Build(modelcard.Input{Model: doc, FinalEvaluation: &eval, Fairness: &report, Importance: imp,
		Policy: &fairness.Policy{MaxDemographicParityGap: 0.1, MaxEqualOpportunityGap: 0.1, Threshold: 0.2}})
	require.NoError(t, err)
	page := string(card.Markdown())
	assert.Contains(t, page, "ROC AUC | 0.77")
	assert.Contains(t, page, "**not tracked**")
	assert.InDelta(t, 0.7718, card.Performance.Final.Summary.AUC, 0.002, "the centralized reference AUC")
	assert.Less(t, *card.Performance.Final.ExpectedCalibrationError, 0.02, "a logistic fit is well calibrated on its own population")
}

// sampleAudit is an empirical privacy audit as the simulator's `sim audit` attaches it.
func sampleAudit() *modelcard.PrivacyAudit {
	return &modelcard.PrivacyAudit{
		Method:  "Membership inference by LiRA on shadow models and a loss threshold, in the simulator.",
		Targets: 1000, Members: 500, Shadows: 16, EpsilonLowerBound: 0.214, Delta: 1e-5, Confidence: 0.95,
		Attacks: []modelcard.AuditAttack{
			{Name: "lira", AUC: 0.5261, EpsilonLowerBound: 0.214, Rates: []modelcard.AuditRate{{FPR: 0.001, TPR: 0.004}, {FPR: 0.01, TPR: 0.018}, {FPR: 0.1, TPR: 0.118}}},
			{Name: "loss", AUC: 0.5173, Rates: []modelcard.AuditRate{{FPR: 0.001, TPR: 0.002}, {FPR: 0.01, TPR: 0.008}, {FPR: 0.1, TPR: 0.102}}},
		},
	}
}

// TestPrivacyAuditSection: a card given an empirical audit shows it in the summary and in the
// privacy section, beside the accountant's epsilon under DP and without a comparison otherwise;
// a card without one (every coordinator's) shows nothing of it; the JSON carries it.
func TestPrivacyAuditSection(t *testing.T) {
	dp := dpRecordInput(t)
	dp.PrivacyAudit = sampleAudit()
	plain := bankInput(t)
	plain.PrivacyAudit = sampleAudit()
	for _, tc := range []struct {
		name string
		in   modelcard.Input
		want []string
		not  []string
	}{
		{"dp", dp, []string{"membership-inference audit: ε ≥ 0.21 (section 6)", "### Empirical privacy audit",
			"| lira | 0.5261 | 0.0040 | 0.0180 | 0.1180 | 0.214 |", "1000 target records were attacked, 500 of them",
			"The accountant's ε = 0.889 is an upper bound"}, []string{"no such guarantee"}},
		{"no dp", plain, []string{"### Empirical privacy audit", "The run has no such guarantee to compare it with"},
			[]string{"The accountant's ε"}},
		{"no audit", bankInput(t), nil, []string{"Empirical privacy audit", "membership-inference audit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			card, err := modelcard.Build(tc.in)
			require.NoError(t, err)
			md := string(card.Markdown())
			for _, w := range tc.want {
				assert.Contains(t, md, w)
			}
			for _, n := range tc.not {
				assert.NotContains(t, md, n)
			}
			var buf bytes.Buffer
			require.NoError(t, card.Write(&buf))
			back, err := modelcard.Decode(&buf)
			require.NoError(t, err)
			assert.Equal(t, card.PrivacyAudit, back.PrivacyAudit)
		})
	}
	in := bankInput(t)
	in.PrivacyAudit = sampleAudit()
	card, err := modelcard.Build(in)
	require.NoError(t, err)
	in.PrivacyAudit.Attacks[0].AUC = 0.99
	assert.Equal(t, 0.5261, card.PrivacyAudit.Attacks[0].AUC, "the card keeps its own copy")
}
