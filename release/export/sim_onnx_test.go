package export_test

import (
	"context"
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/internal/sharedtest"
	"github.com/fedprop/fedprop/release/export"
	"github.com/fedprop/fedprop/sim"
)

// TestTheSimulatorsModelScoresInONNXRuntimeAsInFedprop: the model `fedprop sim --config
// configs/sim-bank.yaml` writes (the coordinator's released document, exported as model.onnx)
// gives in ONNX Runtime the probabilities `fedprop model score` gives, to 1e-9, on every
// held-out row of the simulation (three rounds instead of the config's twenty, for time).
func TestTheSimulatorsModelScoresInONNXRuntimeAsInFedprop(t *testing.T) {
	sharedtest.Path(t, "bank-full.csv")
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	t.Chdir(root)
	raw, err := os.ReadFile("configs/sim-bank.yaml")
	require.NoError(t, err)
	cfg, err := sim.ParseConfig("configs/sim-bank.yaml", raw)
	require.NoError(t, err)
	cfg.Run.Rounds = 3
	world, err := sim.Load(context.Background(), cfg)
	require.NoError(t, err)
	res, err := sim.Run(context.Background(), cfg, sim.Options{World: world, Release: true})
	require.NoError(t, err)
	require.NotNil(t, res.Model)

	want, err := res.Model.Score(world.Test)
	require.NoError(t, err)
	model, err := export.ONNX(res.Model)
	require.NoError(t, err)
	got, err := scoreONNX(t, model, world.Test, "")
	require.NoError(t, err)
	require.Len(t, got.Probability, len(want))
	worst := 0.0
	for i := range want {
		worst = math.Max(worst, math.Abs(want[i]-got.Probability[i]))
	}
	assert.Less(t, worst, 1e-9)
	t.Logf("%d held-out rows: largest |fedprop model score - onnxruntime| = %.3g", len(want), worst)
}
