package client_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
)

// TestADPRunUnderSecureAggregationNoisesAndAccountsItsEvaluation drives a coordinator core and
// three committee members through a client-level DP run in he mode: no statistics are asked
// for, the evaluation's decrypt tasks state the noise its contributors were asked for (so that
// members check it against their floor), every client's evaluation leaves encrypted with its
// noise share, and the committed version lists the evaluation among its releases.
func TestADPRunUnderSecureAggregationNoisesAndAccountsItsEvaluation(t *testing.T) {
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 300, Seed: 8}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	schema.Bounds = map[string][]float64{"age": {18, 90}, "income": {0, 200000}, "balance": {-5000, 100000}, "tenure_years": {0, 72},
		"products_held": {1, 10}, "digital_logins_30d": {0, 60}, "branch_visits_90d": {0, 30}}
	var names []string
	for _, b := range branches {
		names = append(names, b.Name)
	}
	rc := coordinator.RunConfig{ID: "r", Rounds: 1, MinClients: 3, MinCohort: 3, Quorum: 3, Strategy: strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: names, Threshold: 2, MinContributors: 2},
		Privacy:           coordinator.PrivacyConfig{Mechanism: "client", NoiseMultiplier: 1, ClipNorm: 0.5, SamplingRate: 1, EvaluationNoiseMultiplier: 4}}.WithDefaults()
	require.NoError(t, rc.Validate())
	core, err := coordinator.NewCore(rc, schema, nil, nil, nil)
	require.NoError(t, err)
	core.SetDeadlineTicks(1000)
	sessions := map[string]*client.Session{}
	for _, b := range branches {
		s := memberSession(t, schema, b, client.MemberConfig{})
		sessions[b.Name] = s
		require.NoError(t, core.Register(task.Registration{ClientID: b.Name, IdentityKey: s.IdentityKey(), TrainRecords: b.Train.Len()}))
	}
	var evalDecrypts []task.DecryptSpec
	var kinds []task.Kind
	var committed *coordinator.ModelVersion
	for range 40 {
		if committed = core.Ready().Commit; committed != nil {
			break
		}
		var results []task.Result
		for _, name := range names {
			tk, ok, err := core.Poll(name)
			require.NoError(t, err)
			if !ok {
				continue
			}
			kinds = append(kinds, tk.Kind)
			if tk.Kind == task.KindEvaluate {
				require.NotNil(t, tk.Noise, "every evaluate task of a DP run carries its noise")
				assert.Equal(t, task.ReleaseNoise{NoiseMultiplier: 4, ExpectedContributors: 3, Delta: 1e-5, Level: task.DPClient}, *tk.Noise)
			}
			if tk.Kind == task.KindDecrypt && tk.Decrypt.Purpose == task.KindEvaluate {
				evalDecrypts = append(evalDecrypts, *tk.Decrypt)
			}
			res, _, err := sessions[name].Handle(context.Background(), tk)
			require.NoError(t, err, "%s task", tk.Kind)
			if tk.Kind == task.KindEvaluate {
				require.NotNil(t, res.Sum.Ciphertext, "the evaluation leaves encrypted")
			}
			results = append(results, res)
		}
		for _, r := range results {
			_, err := core.Submit(r)
			require.NoError(t, err)
		}
		if committed = core.Ready().Commit; committed != nil {
			break
		}
		core.Advance()
	}
	require.NotNil(t, committed, "the round commits")
	assert.NotContains(t, kinds, task.KindStats, "a DP run asks for no statistics")
	require.NotEmpty(t, evalDecrypts)
	for _, d := range evalDecrypts {
		require.NotNil(t, d.Noise, "members are told the evaluation's noise")
		assert.Equal(t, 4.0, d.Noise.NoiseMultiplier)
		assert.Equal(t, 3, d.Noise.ExpectedContributors)
	}
	p := committed.Privacy
	require.NotNil(t, p)
	require.Len(t, p.Releases, 3)
	assert.Equal(t, []string{modelfile.ReleaseStatistics, modelfile.ReleaseTrain, modelfile.ReleaseEvaluate},
		[]string{p.Releases[0].Kind, p.Releases[1].Kind, p.Releases[2].Kind})
	assert.Equal(t, 4.0, p.Releases[2].NoiseMultiplier, "all three contributed their share: the planned noise was present")
	for _, s := range sessions {
		eps, _ := s.Epsilon()
		assert.Positive(t, eps, "each client's ledger admitted its releases")
	}
}
