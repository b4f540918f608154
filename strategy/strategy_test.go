package strategy_test

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/strategy"
)

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		in   strategy.Config
		want strategy.Config
	}{
		{strategy.Config{}, strategy.Config{Name: "fedavg", ServerLearningRate: 1}},
		{strategy.Config{Name: " FedProx "}, strategy.Config{Name: "fedprox", ServerLearningRate: 1, ProxMu: 0.01}},
		{strategy.Config{Name: "fedprox", ProxMu: 0.5}, strategy.Config{Name: "fedprox", ServerLearningRate: 1, ProxMu: 0.5}},
		{strategy.Config{Name: "fedadam"}, strategy.Config{Name: "fedadam", ServerLearningRate: 0.01, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}},
		{strategy.Config{Name: "fedyogi", Tau: 1e-2}, strategy.Config{Name: "fedyogi", ServerLearningRate: 0.01, Beta1: 0.9, Beta2: 0.99, Tau: 1e-2}},
		{strategy.Config{Name: "fedadagrad"}, strategy.Config{Name: "fedadagrad", ServerLearningRate: 0.01, Beta1: 0.9, Tau: 1e-3}},
	}
	for _, tt := range tests {
		t.Run(tt.want.Name, func(t *testing.T) {
			got := tt.in.WithDefaults()
			assert.Equal(t, tt.want, got)
			assert.NoError(t, got.Validate())
		})
	}
}

func TestConfigValidateRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  strategy.Config
		want error
	}{
		{"unknown name", strategy.Config{Name: "fedsgd"}, strategy.ErrUnknownStrategy},
		{"negative eta", strategy.Config{Name: "fedavg", ServerLearningRate: -1}, strategy.ErrInvalidConfig},
		{"nan eta", strategy.Config{Name: "fedadam", ServerLearningRate: math.NaN()}, strategy.ErrInvalidConfig},
		{"beta1 of 1", strategy.Config{Name: "fedadam", Beta1: 1}, strategy.ErrInvalidConfig},
		{"beta2 above 1", strategy.Config{Name: "fedyogi", Beta2: 1.5}, strategy.ErrInvalidConfig},
		{"negative tau", strategy.Config{Name: "fedadagrad", Tau: -1e-3}, strategy.ErrInvalidConfig},
		{"negative prox mu", strategy.Config{Name: "fedprox", ProxMu: -0.1}, strategy.ErrInvalidConfig},
		{"prox mu outside fedprox", strategy.Config{Name: "fedadam", ProxMu: 0.1}, strategy.ErrInvalidConfig},
		{"beta1 for fedavg", strategy.Config{Name: "fedavg", Beta1: 0.9}, strategy.ErrInvalidConfig},
		{"beta2 for fedadagrad", strategy.Config{Name: "fedadagrad", Beta2: 0.99}, strategy.ErrInvalidConfig},
		{"tau for fedprox", strategy.Config{Name: "fedprox", Tau: 1e-3}, strategy.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			assert.ErrorIs(t, err, tt.want)
			_, err = strategy.New(tt.cfg)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	err := strategy.Config{Name: "fedsgd"}.Validate()
	assert.ErrorContains(t, err, "fedavg, fedprox, fedadam, fedyogi, fedadagrad")
}

func TestClientParams(t *testing.T) {
	base := logreg.Params{Epochs: 2, BatchSize: 16, LearningRate: 0.05, L2: 1e-4}
	tests := []struct {
		cfg  strategy.Config
		want float64
	}{
		{strategy.Config{Name: "fedavg"}, 0},
		{strategy.Config{Name: "fedprox"}, 0.01},
		{strategy.Config{Name: "fedprox", ProxMu: 0.3}, 0.3},
		{strategy.Config{Name: "fedadam"}, 0},
	}
	for _, tt := range tests {
		s, err := strategy.New(tt.cfg)
		require.NoError(t, err)
		want := base
		want.ProxMu = tt.want
		assert.Equal(t, want, s.ClientParams(base), tt.cfg.Name)
		assert.Equal(t, tt.cfg.WithDefaults().Name, s.Name())
	}
}

// Each case is one server step computed by hand from Algorithm 2 of Reddi et al. (2021):
// m = b1*m + (1-b1)*D; v per optimiser; x = x + eta*m/(sqrt(v)+tau).
func TestApplyOneStepByHand(t *testing.T) {
	global := []float64{1, -2}
	delta := []float64{0.1, 0.3}
	// A state from earlier rounds in which v is above Delta^2 in the first coordinate and below
	// it in the second, so that Yogi's sign term takes both signs.
	state := strategy.State{M: []float64{0.2, 0}, V: []float64{0.5, 0.0001}, Steps: 4}
	wantM := []float64{0.9*0.2 + 0.1*0.1, 0.1 * 0.3} // 0.19, 0.03
	adaptive := func(v []float64, eta float64) []float64 {
		return []float64{
			1 + eta*wantM[0]/(math.Sqrt(v[0])+1e-3),
			-2 + eta*wantM[1]/(math.Sqrt(v[1])+1e-3),
		}
	}
	tests := []struct {
		name   string
		cfg    strategy.Config
		want   []float64
		wantSt strategy.State
	}{
		{"fedavg eta 1 is global plus mean update", strategy.Config{Name: "fedavg"},
			[]float64{1.1, -1.7}, strategy.State{Steps: 5}},
		{"fedavg eta 0.5", strategy.Config{Name: "fedavg", ServerLearningRate: 0.5},
			[]float64{1.05, -1.85}, strategy.State{Steps: 5}},
		{"fedprox steps like fedavg", strategy.Config{Name: "fedprox"},
			[]float64{1.1, -1.7}, strategy.State{Steps: 5}},
		{"fedadagrad v = v + D^2", strategy.Config{Name: "fedadagrad", ServerLearningRate: 0.1},
			adaptive([]float64{0.51, 0.0901}, 0.1),
			strategy.State{M: wantM, V: []float64{0.51, 0.0901}, Steps: 5}},
		{"fedadam v = b2*v + (1-b2)*D^2", strategy.Config{Name: "fedadam", ServerLearningRate: 0.1},
			adaptive([]float64{0.4951, 0.000999}, 0.1),
			strategy.State{M: wantM, V: []float64{0.4951, 0.000999}, Steps: 5}},
		{"fedyogi v = v - (1-b2)*D^2*sign(v-D^2)", strategy.Config{Name: "fedyogi", ServerLearningRate: 0.1},
			adaptive([]float64{0.4999, 0.001}, 0.1),
			strategy.State{M: wantM, V: []float64{0.4999, 0.001}, Steps: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := strategy.New(tt.cfg)
			require.NoError(t, err)
			globalCopy, deltaCopy := slices.Clone(global), slices.Clone(delta)
			stateCopy := strategy.State{M: slices.Clone(state.M), V: slices.Clone(state.V), Steps: state.Steps}

			next, nextState, err := s.Apply(global, delta, state)
			require.NoError(t, err)
			assert.InDeltaSlice(t, tt.want, next, 1e-12)
			assert.InDeltaSlice(t, tt.wantSt.M, nextState.M, 1e-12)
			assert.InDeltaSlice(t, tt.wantSt.V, nextState.V, 1e-12)
			assert.Equal(t, tt.wantSt.Steps, nextState.Steps)
			assert.Len(t, nextState.M, len(tt.wantSt.M))

			assert.Equal(t, globalCopy, global, "arguments must not be modified")
			assert.Equal(t, deltaCopy, delta)
			assert.Equal(t, stateCopy, state)
		})
	}
}

// From an empty state the moments start at m = 0 and v = tau^2.
func TestApplyFirstStepFromEmptyState(t *testing.T) {
	global := []float64{0, 1}
	delta := []float64{0.5, -0.2}
	const eta, tau = 0.1, 1e-3
	tests := []struct {
		name  string
		wantV []float64
	}{
		{"fedadagrad", []float64{1e-6 + 0.25, 1e-6 + 0.04}},
		{"fedadam", []float64{0.99e-6 + 0.0025, 0.99e-6 + 0.0004}},
		{"fedyogi", []float64{1e-6 + 0.0025, 1e-6 + 0.0004}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := strategy.New(strategy.Config{Name: tt.name, ServerLearningRate: eta})
			require.NoError(t, err)
			next, st, err := s.Apply(global, delta, strategy.State{})
			require.NoError(t, err)
			assert.InDeltaSlice(t, []float64{0.05, -0.02}, st.M, 1e-15)
			assert.InDeltaSlice(t, tt.wantV, st.V, 1e-15)
			assert.Equal(t, 1, st.Steps)
			want := []float64{
				0 + eta*0.05/(math.Sqrt(tt.wantV[0])+tau),
				1 + eta*-0.02/(math.Sqrt(tt.wantV[1])+tau),
			}
			assert.InDeltaSlice(t, want, next, 1e-12)
		})
	}
}

func TestApplyContinuesFromPersistedState(t *testing.T) {
	s, err := strategy.New(strategy.Config{Name: "fedyogi"})
	require.NoError(t, err)
	updates := [][]float64{{0.3, -0.1, 0}, {0.2, 0.05, -0.4}, {-0.1, 0.2, 0.1}}
	run := func(restartAfter int) []float64 {
		w, st := []float64{0, 0, 0}, strategy.State{}
		for i, u := range updates {
			if i == restartAfter {
				// A restarted coordinator gets back copies of what it persisted.
				st = strategy.State{M: slices.Clone(st.M), V: slices.Clone(st.V), Steps: st.Steps}
			}
			w, st, err = s.Apply(w, u, st)
			require.NoError(t, err)
		}
		return w
	}
	assert.Equal(t, run(-1), run(2))
}

func TestApplyRejectsBadInput(t *testing.T) {
	for _, name := range strategy.Names() {
		t.Run(name, func(t *testing.T) {
			s, err := strategy.New(strategy.Config{Name: name})
			require.NoError(t, err)
			_, _, err = s.Apply([]float64{0, 0}, []float64{0}, strategy.State{})
			assert.ErrorIs(t, err, strategy.ErrDimension)
			_, _, err = s.Apply([]float64{0, 0}, []float64{0, math.NaN()}, strategy.State{})
			assert.ErrorIs(t, err, strategy.ErrNonFinite)
			_, _, err = s.Apply([]float64{math.Inf(1), 0}, []float64{0, 0}, strategy.State{})
			assert.ErrorIs(t, err, strategy.ErrNonFinite)
		})
	}
	s, err := strategy.New(strategy.Config{Name: "fedadam"})
	require.NoError(t, err)
	_, _, err = s.Apply([]float64{0, 0}, []float64{0, 0}, strategy.State{M: []float64{0}, V: []float64{0}})
	assert.ErrorIs(t, err, strategy.ErrDimension)
}

func TestMeanUpdate(t *testing.T) {
	// Two clients: 10 rows with delta (0.1, -0.2) and 30 rows with delta (0.5, 0.2).
	sum := []float64{10*0.1 + 30*0.5, 10*-0.2 + 30*0.2}
	mean, err := strategy.MeanUpdate(sum, 40)
	require.NoError(t, err)
	assert.InDeltaSlice(t, []float64{0.4, 0.1}, mean, 1e-15)
	assert.Equal(t, []float64{16, 4}, sum, "the sum must not be modified")

	for _, n := range []float64{0, -3, math.NaN(), math.Inf(1)} {
		_, err = strategy.MeanUpdate(sum, n)
		assert.ErrorIs(t, err, strategy.ErrNonFinite, "total weight %v", n)
	}
	_, err = strategy.MeanUpdate([]float64{math.NaN()}, 1)
	assert.ErrorIs(t, err, strategy.ErrNonFinite)
}
