package attack_test

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/sim/attack"
	"github.com/fedprop/fedprop/task"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     attack.Config
		wantKey string // "" means valid
	}{
		{"none", attack.Config{}, ""},
		{"label flip", attack.Config{Kind: "label_flip", Fraction: 0.2}, ""},
		{"sign flip default", attack.Config{Kind: "sign_flip", Fraction: 0.2}, ""},
		{"sign flip scaled", attack.Config{Kind: "sign_flip", Fraction: 0.2, Scale: 10}, ""},
		{"scale", attack.Config{Kind: "scale", Fraction: 1, Scale: 0.5}, ""},
		{"kind with no malicious clients", attack.Config{Kind: "scale"}, ""},

		{"unknown kind", attack.Config{Kind: "backdoor", Fraction: 0.2}, "attack.kind"},
		{"negative fraction", attack.Config{Kind: "scale", Fraction: -0.1}, "attack.fraction"},
		{"fraction above one", attack.Config{Kind: "scale", Fraction: 1.1}, "attack.fraction"},
		{"nan fraction", attack.Config{Kind: "scale", Fraction: math.NaN()}, "attack.fraction"},
		{"fraction without kind", attack.Config{Fraction: 0.2}, "attack.fraction"},
		{"negative scale", attack.Config{Kind: "scale", Fraction: 0.2, Scale: -10}, "attack.scale"},
		{"nan scale", attack.Config{Kind: "sign_flip", Fraction: 0.2, Scale: math.NaN()}, "attack.scale"},
		{"infinite scale", attack.Config{Kind: "sign_flip", Fraction: 0.2, Scale: math.Inf(1)}, "attack.scale"},
		{"scale for label flip", attack.Config{Kind: "label_flip", Fraction: 0.2, Scale: 2}, "attack.scale"},
		{"scale without kind", attack.Config{Scale: 2}, "attack.scale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantKey == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, attack.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.wantKey+":")
		})
	}
}

func TestEnabled(t *testing.T) {
	assert.False(t, attack.Config{}.Enabled())
	assert.False(t, attack.Config{Kind: "scale"}.Enabled())
	assert.True(t, attack.Config{Kind: "scale", Fraction: 0.1}.Enabled())
}

func clientNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("client-%03d", i)
	}
	return out
}

func TestMaliciousCount(t *testing.T) {
	tests := []struct {
		kind     string
		fraction float64
		n        int
		want     int
	}{
		{"sign_flip", 0.2, 10, 2},
		{"sign_flip", 0.25, 10, 3}, // round(2.5) = 3
		{"sign_flip", 0.24, 10, 2},
		{"label_flip", 0.2, 160, 32},
		{"scale", 1, 7, 7},
		{"scale", 0, 7, 0},
		{"scale", 0.5, 0, 0},
		{"scale", 0.04, 10, 0}, // round(0.4) = 0
		{"", 0.5, 10, 0},       // no kind, no attacker
		{"scale", 2, 5, 5},     // clamped
		{"scale", math.NaN(), 5, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v of %d", tt.kind, tt.fraction, tt.n), func(t *testing.T) {
			names := clientNames(tt.n)
			got := attack.Config{Kind: tt.kind, Fraction: tt.fraction}.Malicious(names, 42)
			require.Len(t, got, tt.want)
			for name, bad := range got {
				assert.True(t, bad)
				assert.Contains(t, names, name)
			}
		})
	}
}

func TestMaliciousDeterministic(t *testing.T) {
	cfg := attack.Config{Kind: "sign_flip", Fraction: 0.3}
	names := clientNames(50)
	first := cfg.Malicious(names, 7)
	require.Len(t, first, 15)

	assert.Equal(t, first, cfg.Malicious(names, 7), "same seed, same clients")
	reversed := slices.Clone(names)
	slices.Reverse(reversed)
	assert.Equal(t, first, cfg.Malicious(reversed, 7), "order of the names must not matter")
	doubled := append(slices.Clone(names), names...)
	assert.Equal(t, first, cfg.Malicious(doubled, 7), "duplicates count once")
	assert.Equal(t, first, attack.Config{Kind: "label_flip", Fraction: 0.3}.Malicious(names, 7),
		"the kind must not change who is malicious")
	assert.NotEqual(t, first, cfg.Malicious(names, 8), "another seed, other clients")

	// A higher fraction under the same seed extends the set rather than redrawing it.
	more := attack.Config{Kind: "sign_flip", Fraction: 0.6}.Malicious(names, 7)
	for name := range first {
		assert.True(t, more[name], name)
	}
}

// TestMaliciousUniform checks that over many seeds every client is malicious about Fraction of
// the time: 3 of 10 over 2,000 seeds is 600 times each, standard deviation about 20.
func TestMaliciousUniform(t *testing.T) {
	cfg := attack.Config{Kind: "scale", Fraction: 0.3}
	names := clientNames(10)
	counts := make(map[string]int)
	for seed := range uint64(2000) {
		for name := range cfg.Malicious(names, seed) {
			counts[name]++
		}
	}
	for _, name := range names {
		assert.InDelta(t, 600, counts[name], 100, name)
	}
}

func TestFlipLabels(t *testing.T) {
	labels := []float64{0, 1, 1, 0, math.NaN()}
	got := attack.FlipLabels(labels)
	require.Len(t, got, 5)
	assert.Equal(t, []float64{1, 0, 0, 1}, got[:4])
	assert.True(t, math.IsNaN(got[4]))
	assert.Equal(t, []float64{0, 1, 1, 0}, labels[:4], "input modified")
	assert.Nil(t, attack.FlipLabels(nil))
	assert.Equal(t, []float64{}, attack.FlipLabels([]float64{}))
}

func TestPoison(t *testing.T) {
	// A client with n=4 examples, delta=(0.5, -0.25, 2) and mean loss 0.2 sends
	// (4, 2, -1, 8, 0.8).
	honest := make([]float64, task.TrainVectorLen(3))
	honest[task.TrainCountIndex] = 4
	copy(honest[task.TrainDeltaStart:], []float64{2, -1, 8})
	honest[len(honest)-1] = 0.8

	tests := []struct {
		name string
		cfg  attack.Config
		want []float64
	}{
		{"none", attack.Config{}, []float64{4, 2, -1, 8, 0.8}},
		{"label flip leaves the update alone", attack.Config{Kind: "label_flip", Fraction: 1}, []float64{4, 2, -1, 8, 0.8}},
		{"sign flip default", attack.Config{Kind: "sign_flip", Fraction: 1}, []float64{4, -2, 1, -8, 0.8}},
		{"sign flip by 10", attack.Config{Kind: "sign_flip", Fraction: 1, Scale: 10}, []float64{4, -20, 10, -80, 0.8}},
		{"scale default", attack.Config{Kind: "scale", Fraction: 1}, []float64{4, 20, -10, 80, 0.8}},
		{"scale by 3", attack.Config{Kind: "scale", Fraction: 1, Scale: 3}, []float64{4, 6, -3, 24, 0.8}},
		{"scale by 0.5", attack.Config{Kind: "scale", Fraction: 1, Scale: 0.5}, []float64{4, 1, -0.5, 4, 0.8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(honest)
			got := tt.cfg.Poison(in)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, honest, in, "input modified")
			got[task.TrainDeltaStart] = math.Pi
			assert.Equal(t, honest, in, "result aliases the input")
		})
	}
}

func TestPoisonShortVectors(t *testing.T) {
	cfg := attack.Config{Kind: "scale", Fraction: 1}
	assert.Nil(t, cfg.Poison(nil))
	assert.Equal(t, []float64{3}, cfg.Poison([]float64{3}))
	assert.Equal(t, []float64{3, 0.5}, cfg.Poison([]float64{3, 0.5}), "no weights: count and loss only")
	assert.Equal(t, []float64{3, 20, 0.5}, cfg.Poison([]float64{3, 2, 0.5}))
}

func TestFactor(t *testing.T) {
	tests := []struct {
		cfg  attack.Config
		want float64
	}{
		{attack.Config{}, 1},
		{attack.Config{Kind: "label_flip"}, 1},
		{attack.Config{Kind: "sign_flip"}, -1},
		{attack.Config{Kind: "sign_flip", Scale: 10}, -10},
		{attack.Config{Kind: "scale"}, 10},
		{attack.Config{Kind: "scale", Scale: 2}, 2},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.cfg.Factor(), "%+v", tt.cfg)
	}
}

// BenchmarkMalicious picks 20% of 100,000 app clients, the cross-device population.
func BenchmarkMalicious(b *testing.B) {
	names := clientNames(100_000)
	cfg := attack.Config{Kind: "sign_flip", Fraction: 0.2}
	b.ReportAllocs()
	for b.Loop() {
		if len(cfg.Malicious(names, 1)) != 20_000 {
			b.Fatal("wrong count")
		}
	}
}

// TestPoisonWithinSendsTheLargestUpdateTheBoundAdmits: max_norm turns the honest delta around
// and stretches it to just inside the task's bound on n*delta, keeping the count and the loss.
func TestPoisonWithinSendsTheLargestUpdateTheBoundAdmits(t *testing.T) {
	c := attack.Config{Kind: attack.MaxNorm, Fraction: 0.1}
	require.NoError(t, c.Validate())
	const n, maxNorm = 40.0, 10.0
	honest := []float64{n, n * 0.3, n * -0.4, n * 0.05} // count, n*delta (norm n*0.5), n*loss
	got := c.PoisonWithin(honest, maxNorm)
	assert.Equal(t, honest[0], got[0], "the count is kept")
	assert.Equal(t, honest[3], got[3], "the loss is kept")
	delta := got[1:3]
	norm := math.Hypot(delta[0], delta[1])
	assert.InEpsilon(t, n*maxNorm, norm, 1e-8)
	assert.Less(t, norm, n*maxNorm, "inside the bound, so the coordinator accepts it")
	assert.Less(t, delta[0], 0.0, "turned around")
	assert.Greater(t, delta[1], 0.0, "turned around")
	assert.Equal(t, []float64{n, n * 0.3, n * -0.4, n * 0.05}, honest, "the input is not changed")

	zero := c.PoisonWithin([]float64{n, 0, 0, 1}, maxNorm)
	assert.InEpsilon(t, n*maxNorm, math.Hypot(zero[1], zero[2]), 1e-8, "a zero delta still gets a maximal one")

	other := attack.Config{Kind: attack.SignFlip, Fraction: 0.1}
	assert.Equal(t, other.Poison(honest), other.PoisonWithin(honest, maxNorm), "other kinds ignore the bound")
}
