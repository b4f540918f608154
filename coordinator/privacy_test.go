package coordinator_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/task"
)

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

// TestCoordinatorNoiseHasStandardDeviationZTimesC: with zero updates from three clients the
// new weights are pure noise divided by m=3, so their spread measures the noise the
// coordinator added: z*C/m. A wrong factor (C missing, sqrt(m), m^2) fails.
func TestCoordinatorNoiseHasStandardDeviationZTimesC(t *testing.T) {
	const rounds = 150
	// One round more than measured: the last round is evaluated before it commits.
	h := toTraining(t, dpConfig(rounds+1, false))
	h.core.SetNoiseSource(rand.NewPCG(1, 2))
	var prev []float64
	var draws []float64
	for r := 1; r <= rounds; r++ {
		for _, id := range []string{"a", "b", "c"} {
			h.submit(id, dpVec(0.5, 0, 0, 0, 0))
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
			h := toTraining(t, cfg)
			h.core.SetNoiseSource(rand.NewPCG(3, 4))
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
