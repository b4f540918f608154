package client_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
)

// TestTheParameterSetIsTheClientsChoice: a run on the lighter key-recovery parameters works
// with members and clients that list it, while a member or client configured with the default
// (simulation only) refuses to make key material under it or to encrypt under its key: the
// coordinator cannot switch a client to the weaker guarantee.
func TestTheParameterSetIsTheClientsChoice(t *testing.T) {
	cfg := synth.Config{Branches: 4, CustomersPerBranch: 150, Seed: 9}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	committee := []string{branches[0].Name, branches[1].Name, branches[2].Name}
	rc := coordinator.RunConfig{ID: "r", Rounds: 1, MinClients: 4, MinCohort: 3, Quorum: 2, Strategy: strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: committee, Threshold: 2, MinContributors: 2,
			Parameters: secagg.PresetKeyRecovery}}.WithDefaults()
	require.NoError(t, rc.Validate())
	core, err := coordinator.NewCore(rc, schema, nil, nil, nil)
	require.NoError(t, err)
	core.SetDeadlineTicks(1000)

	light := []string{secagg.PresetSimulation, secagg.PresetKeyRecovery}
	sessions := map[string]*client.Session{}
	for _, b := range branches[:3] {
		s := memberSession(t, schema, b, client.MemberConfig{Parameters: light})
		sessions[b.Name] = s
		require.NoError(t, core.Register(task.Registration{ClientID: b.Name, IdentityKey: s.IdentityKey()}))
	}
	strict, err := client.NewSession(branches[3].Name, schema, branches[3].Train, branches[3].Test, client.SessionOptions{RequireEncryption: true})
	require.NoError(t, err)
	require.NoError(t, core.Register(task.Registration{ClientID: branches[3].Name}))

	// A member that accepts only the default refuses the setup outright.
	defaultMember := memberSession(t, schema, branches[0], client.MemberConfig{})
	var declined error
	for range 10 {
		var results []task.Result
		for _, b := range branches {
			tk, ok, err := core.Poll(b.Name)
			require.NoError(t, err)
			if !ok || tk.Kind == task.KindDecrypt {
				continue
			}
			if b.Name == branches[3].Name {
				_, _, declined = strict.Handle(context.Background(), tk)
				continue
			}
			if tk.Kind == task.KindKeygen && tk.Keygen.Step == task.KeygenPublicKey && b.Name == branches[0].Name {
				assert.Equal(t, secagg.PresetKeyRecovery, tk.Keygen.Parameters, "the keygen task names the run's parameter set")
				_, _, err := defaultMember.Handle(context.Background(), tk)
				require.ErrorIs(t, err, client.ErrRefused)
				assert.Contains(t, err.Error(), "secure_aggregation.parameters")
			}
			res, _, err := sessions[b.Name].Handle(context.Background(), tk)
			require.NoError(t, err, "a member that lists key-recovery takes part")
			results = append(results, res)
		}
		for _, r := range results {
			_, err := core.Submit(r)
			require.NoError(t, err)
		}
		core.Advance()
		if declined != nil {
			break
		}
	}
	require.Error(t, declined, "the strict client was handed a task under the key-recovery key")
	assert.ErrorIs(t, declined, client.ErrDeclined)
	assert.Contains(t, declined.Error(), `"key-recovery"`)
}
