package privaudit_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/fedprop/fedprop/sim/privaudit"
)

// gaussianWorld draws the statistic of an idealised audit: target t has difficulty c_t (the
// same for every model), and a model that trained on it sees phi ~ N(c_t + shift, 1), one that
// did not phi ~ N(c_t, 1). Each target is in half of the shadows and the audited model holds
// half of the targets, as package sim sets it up.
func gaussianWorld(seed uint64, targets, shadows int, shift, spread float64) (privaudit.Observations, []privaudit.Observations) {
	rng := rand.New(rand.NewPCG(seed, 1))
	difficulty := make([]float64, targets)
	for t := range difficulty {
		difficulty[t] = spread * rng.NormFloat64()
	}
	draw := func(in []bool) privaudit.Observations {
		o := privaudit.Observations{Phi: make([]float64, targets), In: in}
		for t := range o.Phi {
			o.Phi[t] = difficulty[t] + rng.NormFloat64()
			if in[t] {
				o.Phi[t] += shift
			}
		}
		return o
	}
	memberships := make([][]bool, shadows)
	for k := range memberships {
		memberships[k] = make([]bool, targets)
	}
	for t := range targets {
		for _, k := range rng.Perm(shadows)[:shadows/2] {
			memberships[k][t] = true
		}
	}
	shadowObs := make([]privaudit.Observations, shadows)
	for k := range shadowObs {
		shadowObs[k] = draw(memberships[k])
	}
	in := make([]bool, targets)
	for _, t := range rng.Perm(targets)[:targets/2] {
		in[t] = true
	}
	return draw(in), shadowObs
}

// gaussianDPEpsilon is the epsilon at delta of mu-Gaussian DP, the privacy of telling N(mu, 1)
// from N(0, 1): delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Dong, Roth and
// Su 2022), solved by bisection.
func gaussianDPEpsilon(mu, delta float64) float64 {
	n := distuv.UnitNormal
	deltaAt := func(eps float64) float64 { return n.CDF(-eps/mu+mu/2) - math.Exp(eps)*n.CDF(-eps/mu-mu/2) }
	lo, hi := 0.0, 100.0
	for range 200 {
		mid := (lo + hi) / 2
		if deltaAt(mid) > delta {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// TestAuditOfAMechanismWithKnownEpsilon: a membership signal that is exactly mu-Gaussian DP
// gives a positive lower bound, and one below the mechanism's true epsilon.
func TestAuditOfAMechanismWithKnownEpsilon(t *testing.T) {
	for _, mu := range []float64{1, 2, 4} {
		audited, shadows := gaussianWorld(7, 4000, 16, mu, 3)
		res, err := privaudit.Run(audited, shadows, 1e-5)
		require.NoError(t, err)
		truth := gaussianDPEpsilon(mu, 1e-5)
		t.Logf("mu %v: true epsilon %.3f, audit's bound %.3f (lira AUC %.4f, loss AUC %.4f)", mu, truth, res.EpsilonLowerBound,
			res.Attack(privaudit.AttackLiRA).AUC, res.Attack(privaudit.AttackLoss).AUC)
		assert.Positive(t, res.EpsilonLowerBound, "mu %v", mu)
		assert.Less(t, res.EpsilonLowerBound, truth, "mu %v: a lower bound stays below the truth", mu)
		// The attack sees what separates IN from OUT: its AUC is that of two unit Gaussians mu apart.
		assert.InDelta(t, distuv.UnitNormal.CDF(mu/math.Sqrt2), res.Attack(privaudit.AttackLiRA).AUC, 0.03, "mu %v", mu)
	}
}

// TestLiRABeatsTheLossThresholdOnTargetsOfUnequalDifficulty: when targets differ in how well
// any model fits them, one global loss threshold confuses easy non-members with members; LiRA
// calibrates each target on the shadows.
func TestLiRABeatsTheLossThresholdOnTargetsOfUnequalDifficulty(t *testing.T) {
	audited, shadows := gaussianWorld(3, 2000, 16, 1, 4)
	res, err := privaudit.Run(audited, shadows, 1e-5)
	require.NoError(t, err)
	lira, loss := res.Attack(privaudit.AttackLiRA), res.Attack(privaudit.AttackLoss)
	t.Logf("lira AUC %.4f, loss AUC %.4f", lira.AUC, loss.AUC)
	assert.Greater(t, lira.AUC, 0.7)
	assert.Less(t, loss.AUC, 0.6)
	assert.Equal(t, privaudit.VarianceGlobal, res.Variance, "16 shadows: a global variance")
	assert.Equal(t, 1000, res.Members)
	assert.Equal(t, 1000, res.NonMembers)
	require.Len(t, lira.Bounds, 3)
	for i, b := range lira.Bounds {
		assert.Equal(t, privaudit.FPRLevels[i], b.Level)
		assert.LessOrEqual(t, b.Epsilon, lira.EpsilonLowerBound)
	}
}

// TestAuditWithoutSignalFindsNothing: when membership changes nothing, the attacks guess and
// no bound exceeds 0.
func TestAuditWithoutSignalFindsNothing(t *testing.T) {
	audited, shadows := gaussianWorld(11, 2000, 16, 0, 2)
	res, err := privaudit.Run(audited, shadows, 1e-5)
	require.NoError(t, err)
	for _, a := range res.Attacks {
		assert.InDelta(t, 0.5, a.AUC, 0.04, a.Name)
	}
	assert.Zero(t, res.EpsilonLowerBound)
	assert.InDelta(t, 1-0.05/6, res.TestConfidence, 1e-15, "Bonferroni over 2 attacks x 3 levels")
}

func TestLiRAFitsPerTargetVariancesWithManyShadows(t *testing.T) {
	audited, shadows := gaussianWorld(5, 200, privaudit.PerTargetVarianceShadows+1, 2, 1)
	res, err := privaudit.Run(audited, shadows, 1e-5)
	require.NoError(t, err)
	assert.Equal(t, privaudit.VariancePerTarget, res.Variance)
	assert.Greater(t, res.Attack(privaudit.AttackLiRA).AUC, 0.8)
}

func TestRunRefusesAnAuditItCannotMake(t *testing.T) {
	audited, shadows := gaussianWorld(1, 20, 8, 1, 1)
	allIn := privaudit.Observations{Phi: audited.Phi, In: make([]bool, 20)}
	for i := range allIn.In {
		allIn.In[i] = true
	}
	nan := privaudit.Observations{Phi: append([]float64{math.NaN()}, audited.Phi[1:]...), In: audited.In}
	short := privaudit.Observations{Phi: audited.Phi[:19], In: audited.In[:19]}
	neverIn := append([]privaudit.Observations(nil), shadows...)
	neverIn[0] = privaudit.Observations{Phi: shadows[0].Phi, In: make([]bool, 20)}
	for k := range neverIn {
		neverIn[k].In = make([]bool, 20)
	}
	for _, tc := range []struct {
		name     string
		audited  privaudit.Observations
		shadows  []privaudit.Observations
		delta    float64
		contains string
	}{
		{"three shadows", audited, shadows[:3], 1e-5, "at least 4"},
		{"no non-members", allIn, shadows, 1e-5, "non-member"},
		{"a statistic that is not a number", nan, shadows, 1e-5, "not finite"},
		{"a target missing", short, shadows, 1e-5, "targets"},
		{"a target in no shadow", audited, neverIn, 1e-5, "needs both"},
		{"delta of 1", audited, shadows, 1, "delta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := privaudit.Run(tc.audited, tc.shadows, tc.delta)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.contains)
		})
	}
}

func sampleReport(t testing.TB) *privaudit.Report {
	t.Helper()
	audited, shadows := gaussianWorld(2, 400, 8, 1.5, 1)
	res, err := privaudit.Run(audited, shadows, 1e-5)
	require.NoError(t, err)
	return &privaudit.Report{Format: privaudit.Format, FedpropVersion: "test", Seed: 2,
		Model:      privaudit.Model{RunID: "sim", Rounds: 10, TrainRows: 1000, TestAUC: 0.75},
		Accountant: &privaudit.Accountant{Mechanism: "record", Epsilon: 8, Delta: 1e-5},
		Result:     *res, Method: privaudit.Method(*res), WallSeconds: 1.5, Config: json.RawMessage(`{"seed":2}`)}
}

func TestReportRoundTrips(t *testing.T) {
	rep := sampleReport(t)
	var buf bytes.Buffer
	require.NoError(t, rep.WriteJSON(&buf))
	got, err := privaudit.DecodeReport(&buf)
	require.NoError(t, err)
	want := *rep
	want.Attacks = nil
	for _, a := range rep.Attacks {
		a.ROC = nil // the curve goes to roc.csv
		want.Attacks = append(want.Attacks, a)
	}
	var compact bytes.Buffer
	require.NoError(t, json.Compact(&compact, got.Config))
	got.Config = compact.Bytes()
	assert.Equal(t, &want, got)
}

func TestDecodeReportRefusesWhatItCannotTrust(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, sampleReport(t).WriteJSON(&buf))
	good := buf.String()
	for _, tc := range []struct {
		name, from, to, contains string
	}{
		{"another format", `"format": "fedprop.privaudit/v1"`, `"format": "fedprop.privaudit/v0"`, "format"},
		{"an unknown field", `"seed": 2,`, `"seed": 2, "extra": 1,`, "unknown field"},
		{"an AUC above 1", `"test_auc": 0.75`, `"test_auc": 1.5`, "model.test_auc"},
		{"a negative bound", `"wall_seconds": 1.5`, `"wall_seconds": -1`, "wall_seconds"},
		{"members that do not add up", `"members": 200`, `"members": 201`, "targets"},
		{"a negative accountant epsilon", `"epsilon": 8,`, `"epsilon": -8,`, "accountant.epsilon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, good, tc.from)
			_, err := privaudit.DecodeReport(strings.NewReader(strings.Replace(good, tc.from, tc.to, 1)))
			require.ErrorIs(t, err, privaudit.ErrInvalid)
			assert.Contains(t, err.Error(), tc.contains)
		})
	}
	huge := `{"format":"fedprop.privaudit/v1","method":["` + strings.Repeat("x", privaudit.MaxReportBytes) + `"]}`
	_, err := privaudit.DecodeReport(strings.NewReader(huge))
	require.ErrorIs(t, err, privaudit.ErrInvalid)
}

// FuzzDecodeReport reads arbitrary report documents (audit.json comes from a file): an error or
// a report whose figures are in range, never a panic.
func FuzzDecodeReport(f *testing.F) {
	var buf bytes.Buffer
	require.NoError(f, sampleReport(f).WriteJSON(&buf))
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format":"fedprop.privaudit/v1","attacks":[{"bounds":[{"threshold":1e999}]}]}`))
	f.Add([]byte(`{"format":"fedprop.privaudit/v1","targets":-1,"members":-1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := privaudit.DecodeReport(bytes.NewReader(raw))
		if err != nil {
			return
		}
		assert.GreaterOrEqual(t, rep.EpsilonLowerBound, 0.0)
		var out bytes.Buffer
		require.NoError(t, rep.WriteText(&out))
		require.NoError(t, rep.WriteJSON(&out))
	})
}

func TestWriteTextShowsTheBoundBesideTheAccountant(t *testing.T) {
	rep := sampleReport(t)
	var out bytes.Buffer
	require.NoError(t, rep.WriteText(&out))
	text := out.String()
	t.Log("\n" + text)
	for _, want := range []string{"400 targets (200 members, 200 non-members), 8 shadow models", "tpr@0.1%", "eps@10%",
		"lira", "loss", "empirical epsilon lower bound:", "accountant epsilon:            8.000 at delta 1e-05 (record-level"} {
		assert.Contains(t, text, want)
	}
	rep.Accountant = nil
	out.Reset()
	require.NoError(t, rep.WriteText(&out))
	assert.Contains(t, out.String(), "none: the run has no differential privacy")
}

func TestWriteROCCSV(t *testing.T) {
	rep := sampleReport(t)
	var out bytes.Buffer
	require.NoError(t, rep.WriteROCCSV(&out))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	assert.Equal(t, "attack,threshold,fpr,tpr", lines[0])
	assert.Equal(t, "lira,+Inf,0,0", lines[1])
	assert.Len(t, lines, 1+len(rep.Attacks[0].ROC)+len(rep.Attacks[1].ROC))
	assert.Equal(t, "1,1", lines[len(lines)-1][strings.LastIndex(lines[len(lines)-1], ",")-1:], "every curve ends at (1, 1)")
}
