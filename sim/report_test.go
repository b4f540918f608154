package sim_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/sim"
)

// TestTableTrainLossNotReleased: a round whose training loss was not released (0, as the
// coordinator records it under differential privacy) prints "-" in the train_loss column,
// not 0.0000; a released loss prints as a number.
func TestTableTrainLossNotReleased(t *testing.T) {
	tests := []struct {
		name string
		loss float64
		want string
	}{
		{"not released (DP)", 0, "-"},
		{"released", 0.4321, "0.4321"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			sim.NewTable(&buf).Round(sim.RoundMetrics{Round: 1, Test: metrics.Summary{AUC: 0.8, LogLoss: 0.4, Accuracy: 0.9, Brier: 0.1},
				TrainLoss: tt.loss, Contributors: 3, Seconds: 0.5})
			lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
			require.Len(t, lines, 2, "a header and the round")
			header, row := strings.Fields(lines[0]), strings.Fields(lines[1])
			require.Len(t, row, len(header))
			col := map[string]string{}
			for i, h := range header {
				col[h] = row[i]
			}
			assert.Equal(t, tt.want, col["train_loss"])
			assert.Equal(t, "0.8000", col["test_auc"], "the other columns as before")
			assert.Equal(t, "3", col["clients"])
		})
	}
}
