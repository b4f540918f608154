package coordinator_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/strategy"
)

// TestAdaptiveClippingThatCannotBeNoisedIsRefusedBeforeAnyTask: with adaptive clipping the
// noise multiplier z is split between the update sum and the clipping count, whose noise is
// m/20 for m expected contributors; when z >= m/10 nothing is left for the sum. Such a run
// used to issue he-mode train tasks with no noise at all and fail only after the committee had
// decrypted an un-noised sum. It is now refused when the configuration is validated.
func TestAdaptiveClippingThatCannotBeNoisedIsRefusedBeforeAnyTask(t *testing.T) {
	run := func(minClients int, z float64, mode string) coordinator.RunConfig {
		rc := coordinator.RunConfig{ID: "r", Rounds: 3, MinClients: minClients, Strategy: strategy.Config{Name: "fedavg"},
			Privacy: coordinator.PrivacyConfig{Mechanism: "client", NoiseMultiplier: z, SamplingRate: 1, AdaptiveClipping: true}}
		if mode == "he" {
			committee := []string{"a", "b", "c"}
			rc.SecureAggregation = coordinator.SecureAggregationConfig{Mode: "he", Committee: committee, Threshold: 2, MinContributors: 2}
		}
		return rc.WithDefaults()
	}
	for _, mode := range []string{"none", "he"} {
		t.Run(mode, func(t *testing.T) {
			// 10 clients: sigma_b = 0.5, so z must stay below 1.
			err := run(10, 1.2, mode).Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), "run.privacy.adaptive_clipping")
			assert.Contains(t, err.Error(), "raise min_clients")
			require.NoError(t, run(40, 1.2, mode).Validate(), "40 clients: sigma_b = 2 leaves room for z = 1.2")
		})
	}
	// A budget-derived z is checked the same way.
	rc := run(10, 0, "he")
	rc.Privacy.Epsilon, rc.Privacy.NoiseMultiplier = 0.1, 0
	require.Error(t, rc.Validate())
}
