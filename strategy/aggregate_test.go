package strategy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/strategy"
)

// TestAggregatorsCombineAndFinalize: the mean aggregator needs only the sums (and refuses
// single updates, which a secure-aggregation run never has); a robust one needs every update
// and ignores the sums, so a client cannot move it through the sum alone.
func TestAggregatorsCombineAndFinalize(t *testing.T) {
	updates := [][]float64{{1, 0}, {2, 0}, {100, 0}}
	weights := []float64{1, 1, 2}
	sum := []float64{1*1 + 2*1 + 100*2, 0}
	tests := []struct {
		name       string
		robust     strategy.RobustConfig
		individual bool
		want       []float64
	}{
		{"mean", strategy.RobustConfig{}, false, []float64{203.0 / 4, 0}},
		{"median", strategy.RobustConfig{Name: strategy.Median}, true, []float64{2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := strategy.NewAggregator(tt.robust)
			require.Equal(t, tt.individual, a.Individual())
			if a.Individual() {
				for i, u := range updates {
					require.NoError(t, a.Combine(u, weights[i]))
				}
			} else {
				require.ErrorIs(t, a.Combine(updates[0], weights[0]), strategy.ErrInvalidConfig)
			}
			got, err := a.Finalize(sum, 4)
			require.NoError(t, err)
			assert.InDeltaSlice(t, tt.want, got, 1e-12)
		})
	}
	_, err := strategy.NewAggregator(strategy.RobustConfig{}).Finalize(sum, 0)
	assert.ErrorIs(t, err, strategy.ErrNonFinite, "a zero total weight is refused, not divided by")
}
