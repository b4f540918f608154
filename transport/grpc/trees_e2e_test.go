package grpctransport_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/export"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// TestThreeBranchesGrowTreesOverGRPC: a coordinator behind mutual TLS and three branch agents
// grow a gradient-boosted-trees model over real sockets. Nothing is released before an
// approver's signed decision; the owner then pulls the trees, which score the branches' rows
// as the coordinator's own copy does, exports to ONNX and PMML, and the model card is served.
func TestThreeBranchesGrowTreesOverGRPC(t *testing.T) {
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 300, Seed: 11}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	doc, err := yaml.Marshal(schema)
	require.NoError(t, err)
	p := gbdt.DefaultParams()
	p.MaxDepth, p.Bins = 3, 32
	rc := coordinator.RunConfig{ID: "trees", Rounds: 4, MinClients: 3, MinCohort: 3, Quorum: 3, RoundDeadline: time.Minute, Seed: 5,
		EvalEvery: 2, Strategy: strategy.Config{Name: "fedavg"}, Model: coordinator.ModelConfig{Kind: coordinator.ModelGBDT, GBDT: &p}}.WithDefaults()
	require.NoError(t, rc.Validate())
	c := startGatedCoordinator(t, coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var agents sync.WaitGroup
	defer agents.Wait()
	defer cancel()
	for _, b := range branches {
		files, _ := c.pki.issue(pki.RoleClient, b.Name)
		conn := c.dialFiles(files)
		s, err := client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{})
		require.NoError(t, err)
		a := client.NewAgent(grpctransport.NewClient(conn), s, client.AgentConfig{PollWait: 200 * time.Millisecond,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: quietLogger()})
		agents.Go(func() { _ = a.Run(ctx) })
	}
	require.Eventually(t, func() bool {
		info, err := c.srv.GetRun(ctx, "trees")
		return err == nil && info.State.Status == coordinator.RunCompleted
	}, time.Minute, 20*time.Millisecond, "the run completes")

	owner := grpctransport.NewModelClient(c.dial(pki.RoleOwner, "model-owner"))
	_, _, err = owner.Pull(ctx, 0, false)
	require.ErrorIs(t, err, coordinator.ErrNotFound, "nothing approved, nothing released")
	approver, key := c.party(pki.RoleApprover, "risk-officer")
	_, err = approver.Decide(ctx, key, audit.ActionApprove, 4, "four trees, reviewed on the card")
	require.NoError(t, err)

	pulled, raw, err := owner.Pull(ctx, 0, false)
	require.NoError(t, err)
	assert.NotEmpty(t, raw)
	require.NotNil(t, pulled.Trees, "the released model is the trees")
	assert.Len(t, pulled.Trees.Trees, 4)
	stored, err := c.srv.Store().Version(ctx, 4)
	require.NoError(t, err)
	want, err := json.Marshal(stored.Trees)
	require.NoError(t, err)
	got, err := json.Marshal(pulled.Trees)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(got), "the pulled trees are the committed ones")
	for _, b := range branches {
		scores, err := pulled.Score(b.Test)
		require.NoError(t, err)
		direct, err := stored.Trees.Predict(b.Test)
		require.NoError(t, err)
		assert.Equal(t, direct, scores)
	}

	// The other two formats a bank's scoring stack reads (their scores are checked against
	// fedprop's in release/export).
	onnx, err := export.ONNX(pulled)
	require.NoError(t, err)
	assert.NotEmpty(t, onnx)
	pmml, err := export.PMML(pulled)
	require.NoError(t, err)
	assert.Contains(t, string(pmml), "<MiningModel")

	cardJSON, err := owner.Card(ctx, 4)
	require.NoError(t, err)
	var card modelcard.Card
	require.NoError(t, json.Unmarshal(cardJSON, &card))
	assert.Equal(t, "trees", card.Lineage.RunID)
	assert.Equal(t, modelcard.StatusApproved, card.Approval.Status)
}
