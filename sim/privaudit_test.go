package sim_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/sim"
	"github.com/fedprop/fedprop/sim/privaudit"
)

// overfitted is configs/sim-audit-overfit.yaml: two tiny branches with 150 noise features,
// 20 epochs a round, no L2 penalty, no practical bound on the update.
const overfitted = `
seed: 3
data:
  source: synthetic
  synthetic: {branches: 2, customers_per_branch: 200, extra_features: 150, consent_opt_out: -1, test_fraction: 0.2}
run:
  rounds: 10
  min_clients: 2
  min_records_plaintext: 0
  max_update_norm: 1000
  train: {epochs: 20, batch_size: 8, learning_rate: 0.2, l2: 0}
`

// overfittedDP is the same federation under record-level DP-SGD at epsilon 1 (Rényi DP's
// accountant, fast enough for a test).
const overfittedDP = `
seed: 3
data:
  source: synthetic
  synthetic: {branches: 2, customers_per_branch: 200, extra_features: 150, consent_opt_out: -1, test_fraction: 0.2}
run:
  rounds: 10
  min_clients: 2
  min_records_plaintext: 0
  train: {learning_rate: 0.5, l2: 0}
  privacy: {mechanism: record, epsilon: 1, delta: 1.0e-5, conversion: tight, clip_norm: 1, sampling_rate: 0.1, steps_per_round: 20}
`

// TestPrivacyAuditSeesAnOverfittedModel: the audit can see what it should. Without DP, a model
// that memorises two tiny branches lets the likelihood-ratio attack tell members from
// non-members (AUC clearly above 0.5), and its report and model card say so.
func TestPrivacyAuditSeesAnOverfittedModel(t *testing.T) {
	cfg := parse(t, overfitted+"privacy_audit: {shadows: 16}\n")
	res, err := sim.PrivacyAudit(context.Background(), cfg, sim.AuditOptions{Version: "test"})
	require.NoError(t, err)
	r := res.Report
	lira, loss := r.Attack(privaudit.AttackLiRA), r.Attack(privaudit.AttackLoss)
	t.Logf("overfitted, no DP: lira AUC %.4f TPR %v, loss AUC %.4f; epsilon >= %.3f; test AUC %.4f",
		lira.AUC, lira.TPRAtFPR, loss.AUC, r.EpsilonLowerBound, r.Model.TestAUC)
	assert.Greater(t, lira.AUC, 0.65)
	assert.Equal(t, 160, r.Targets, "half of the 320 training rows, the most an audit takes")
	assert.Equal(t, 80, r.Members)
	assert.Equal(t, 16, r.Shadows)
	assert.Equal(t, 320-80, r.Model.TrainRows, "the audited run trained without the non-member targets")
	assert.Nil(t, r.Accountant, "no differential privacy, no accountant")
	assert.Equal(t, 1e-5, r.Delta)

	require.NotNil(t, res.Card)
	require.NotNil(t, res.Card.PrivacyAudit)
	assert.Equal(t, r.EpsilonLowerBound, res.Card.PrivacyAudit.EpsilonLowerBound)
	md := string(res.Card.Markdown())
	assert.Contains(t, md, "### Empirical privacy audit")
	assert.Contains(t, md, "The run has no such guarantee to compare it with")

	dir := t.TempDir()
	files, err := sim.WriteAudit(dir, res)
	require.NoError(t, err)
	assert.Len(t, files, 4)
	f, err := os.Open(filepath.Join(dir, "audit.json"))
	require.NoError(t, err)
	defer f.Close()
	back, err := privaudit.DecodeReport(f)
	require.NoError(t, err)
	assert.Equal(t, r.EpsilonLowerBound, back.EpsilonLowerBound)
	rerun, err := sim.ParseConfig("audit.json", back.Config)
	require.NoError(t, err, "the report's config runs the audit again")
	assert.Equal(t, 160, rerun.PrivacyAudit.Targets)
	cardFile, err := os.Open(filepath.Join(dir, "model-card.json"))
	require.NoError(t, err)
	defer cardFile.Close()
	card, err := modelcard.Decode(cardFile)
	require.NoError(t, err)
	require.NotNil(t, card.PrivacyAudit)
}

// TestPrivacyAuditBoundStaysBelowTheAccountant is the DP check on a small federation:
// the same overfitted setting under DP-SGD at epsilon 1. The attack falls to a guess, and the
// empirical lower bound is below the accountant's epsilon, which the report and the card show
// side by side.
func TestPrivacyAuditBoundStaysBelowTheAccountant(t *testing.T) {
	cfg := parse(t, overfittedDP+"privacy_audit: {shadows: 8}\n")
	res, err := sim.PrivacyAudit(context.Background(), cfg, sim.AuditOptions{})
	require.NoError(t, err)
	r := res.Report
	require.NotNil(t, r.Accountant)
	lira := r.Attack(privaudit.AttackLiRA)
	t.Logf("DP-SGD: lira AUC %.4f, epsilon >= %.3f against the accountant's %.3f", lira.AUC, r.EpsilonLowerBound, r.Accountant.Epsilon)
	assert.Equal(t, "record", r.Accountant.Mechanism)
	assert.InDelta(t, 1, r.Accountant.Epsilon, 0.01)
	assert.Less(t, r.EpsilonLowerBound, r.Accountant.Epsilon)
	assert.Less(t, lira.AUC, 0.6)
	assert.Equal(t, r.Accountant.Delta, r.Delta, "the bound is at the accountant's delta")
	md := string(res.Card.Markdown())
	assert.Contains(t, md, "The accountant's ε = 1.000 is an upper bound on what any attack could show")
	assert.Contains(t, md, "membership-inference audit: ε ≥")
}

// TestPrivacyAuditRepeats: the same config gives the same report, however many runs go at once.
func TestPrivacyAuditRepeats(t *testing.T) {
	cfg := parse(t, strings.Replace(overfitted, "rounds: 10", "rounds: 3", 1)+"privacy_audit: {shadows: 4, targets: 60, seed: 11}\n")
	a, err := sim.PrivacyAudit(context.Background(), cfg, sim.AuditOptions{Parallel: 1})
	require.NoError(t, err)
	b, err := sim.PrivacyAudit(context.Background(), cfg, sim.AuditOptions{Parallel: 2})
	require.NoError(t, err)
	a.Report.WallSeconds, b.Report.WallSeconds = 0, 0
	assert.Equal(t, a.Report, b.Report)

	cfg.PrivacyAudit.Seed++
	c, err := sim.PrivacyAudit(context.Background(), cfg, sim.AuditOptions{})
	require.NoError(t, err)
	assert.NotEqual(t, a.Report.Attacks[0].AUC, c.Report.Attacks[0].AUC, "another audit seed, other targets and shadows")
}

func TestPrivacyAuditConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ doc, key string }{
		{"privacy_audit: {shadows: 2}\n", "privacy_audit.shadows"},
		{"privacy_audit: {shadows: 5000}\n", "privacy_audit.shadows"},
		{"privacy_audit: {targets: -1}\n", "privacy_audit.targets"},
		{"privacy_audit: {shadow: 16}\n", "shadow"},
	} {
		_, err := sim.ParseConfig("cfg.yaml", []byte(tc.doc))
		require.Error(t, err, tc.doc)
		assert.Contains(t, err.Error(), tc.key)
		assert.Contains(t, err.Error(), "cfg.yaml")
	}
	// How many targets a run can give is known once its data is.
	cfg := parse(t, overfitted+"privacy_audit: {targets: 1000}\n")
	_, err := sim.PrivacyAudit(context.Background(), cfg, sim.AuditOptions{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, coordinator.ErrBadConfig), "a config error: exit status 2")
	assert.Contains(t, err.Error(), "privacy_audit.targets: 1000 is more than half of the run's 320 training rows")
}

// FuzzParseConfigPrivacyAudit: a privacy_audit section either parses within its bounds or is
// refused with an error naming it.
func FuzzParseConfigPrivacyAudit(f *testing.F) {
	f.Add([]byte("privacy_audit: {shadows: 16, targets: 1000, seed: 3}\n"))
	f.Add([]byte("privacy_audit: {shadows: -4}\n"))
	f.Add([]byte("privacy_audit: {targets: 1e9}\n"))
	f.Add([]byte("privacy_audit: null\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		cfg, err := sim.ParseConfig("fuzz.yaml", doc)
		if err != nil {
			return
		}
		a := cfg.PrivacyAudit
		if a.Shadows != 0 {
			assert.True(t, a.Shadows >= 4 && a.Shadows <= sim.MaxAuditShadows, "shadows %d", a.Shadows)
		}
		if a.Targets != 0 {
			assert.True(t, a.Targets >= 2 && a.Targets <= sim.MaxAuditTargets, "targets %d", a.Targets)
		}
	})
}

// TestBankPrivacyAudit is the acceptance check on the UCI data: the audit of
// configs/sim-bank.yaml (no DP) and configs/sim-bank-dp.yaml writes its report, and for the DP
// run the empirical epsilon lower bound is below the accountant's. Each is 17 runs of the
// simulation (1-2 minutes on 2 cores): skipped with -short.
func TestBankPrivacyAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: 34 runs of the bank simulation (run without -short)")
	}
	for _, path := range []string{"configs/sim-bank.yaml", "configs/sim-bank-dp.yaml"} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg := bankConfig(t, path)
			res, err := sim.PrivacyAudit(context.Background(), cfg, sim.AuditOptions{})
			require.NoError(t, err)
			files, err := sim.WriteAudit(t.TempDir(), res)
			require.NoError(t, err)
			assert.Len(t, files, 4)
			r := res.Report
			var text strings.Builder
			require.NoError(t, r.WriteText(&text))
			t.Logf("%s (%.0f s):\n%s", path, r.WallSeconds, text.String())
			assert.Equal(t, sim.DefaultAuditTargets, r.Targets)
			assert.Equal(t, sim.DefaultAuditShadows, r.Shadows)
			if r.Accountant != nil {
				assert.Less(t, r.EpsilonLowerBound, r.Accountant.Epsilon)
			}
		})
	}
}
