package loadtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fedprop/fedprop/ops/loadtest"
)

// A small load test runs to completion over mutual TLS (kits from a throwaway CA) and over
// plaintext, counts every client in every round, lets no more results in at once than its
// admission limit, and leaves no goroutine behind: not the clients', the connections', the
// server's nor the driver's.
func TestRunCompletesAndLeaksNoGoroutine(t *testing.T) {
	tests := []struct {
		name     string
		insecure bool
	}{
		{"mutual TLS", false},
		{"plaintext", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			cfg := loadtest.Config{Clients: 20, Rounds: 2, RowsPerClient: 20, HistogramBins: 50, Tick: 10 * time.Millisecond,
				PollWait: time.Second, Timeout: 2 * time.Minute, Seed: 1, Insecure: tt.insecure, KitDir: t.TempDir(), MaxConcurrentSubmits: 2}
			rep, err := loadtest.Run(context.Background(), cfg, loadtest.InProcess(cfg))
			require.NoError(t, err)

			assert.Equal(t, 20, rep.Clients)
			assert.Equal(t, !tt.insecure, rep.TLS)
			assert.Equal(t, "none", rep.SecureAggregation)
			require.Len(t, rep.Round, 2)
			assert.Equal(t, 20, rep.Contributors, "every client counted in every round")
			for _, d := range rep.Round {
				assert.Positive(t, d)
			}
			assert.Positive(t, rep.RoundP50)
			assert.GreaterOrEqual(t, rep.RoundP99, rep.RoundP50)
			assert.Positive(t, rep.Stats)
			assert.GreaterOrEqual(t, rep.Wall, rep.Round[0]+rep.Round[1])
			assert.Positive(t, rep.CPUUser+rep.CPUSystem)
			assert.Positive(t, rep.PeakRSS)
			assert.Positive(t, rep.PeakHeap)
			assert.Positive(t, rep.PeakStacks)
			require.NotNil(t, rep.Client)
			assert.True(t, rep.ClientsInProcess)
			// Statistics, then a train and an evaluate result per client and round.
			assert.Equal(t, 20+2*2*20, rep.Results)
			// The clients saw each of those accepted, except that the replies to the last phase's
			// results may be cut off when the load test stops at the final commit.
			assert.LessOrEqual(t, rep.Client.Submits, rep.Results)
			assert.GreaterOrEqual(t, rep.Client.Submits, rep.Results-20)
			assert.Positive(t, rep.Client.SubmitP50)
			// Every submission went through admission, two at a time.
			assert.Equal(t, 2, rep.Admission.Limit)
			assert.GreaterOrEqual(t, rep.Admission.Admitted, int64(rep.Client.Submits))
			assert.LessOrEqual(t, rep.Admission.Queued, rep.Admission.Admitted)
		})
	}
}

// Under secure aggregation every client encrypts and a committee decrypts the sums: the load
// test runs the key setup, then its round, over mutual TLS with endorsed keys.
func TestRunUnderSecureAggregation(t *testing.T) {
	if testing.Short() {
		t.Skip("a key setup and a round of threshold CKKS")
	}
	defer goleak.VerifyNone(t)
	cfg := loadtest.Config{Clients: 4, Rounds: 1, RowsPerClient: 20, HistogramBins: 50, Tick: 10 * time.Millisecond,
		PollWait: time.Second, Timeout: 5 * time.Minute, Seed: 1, KitDir: t.TempDir(), SecureAggregation: "he", Committee: 3}
	rep, err := loadtest.Run(context.Background(), cfg, loadtest.InProcess(cfg))
	require.NoError(t, err)
	assert.Equal(t, "he", rep.SecureAggregation)
	require.Len(t, rep.Round, 1)
	assert.Equal(t, 4, rep.Contributors)
}

func TestRunStopsWithItsContext(t *testing.T) {
	defer goleak.VerifyNone(t)
	cfg := loadtest.Config{Clients: 3, Rounds: 1, RowsPerClient: 20, Tick: 10 * time.Millisecond, PollWait: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := loadtest.Run(ctx, cfg, loadtest.InProcess(cfg))
	require.ErrorIs(t, err, context.Canceled)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  loadtest.Config
		ok   bool
	}{
		{"defaults", loadtest.Config{}, true},
		{"no clients", loadtest.Config{Clients: -1}, false},
		{"no rounds", loadtest.Config{Rounds: -1}, false},
		{"too few rows", loadtest.Config{RowsPerClient: 5}, false},
		{"one histogram bin", loadtest.Config{HistogramBins: 1}, false},
		{"negative tick", loadtest.Config{Tick: -time.Second}, false},
		{"he with its defaults", loadtest.Config{SecureAggregation: "he"}, true},
		{"an unknown aggregation", loadtest.Config{SecureAggregation: "mask"}, false},
		{"a committee of one", loadtest.Config{SecureAggregation: "he", Committee: 1}, false},
		{"a committee beyond the clients", loadtest.Config{Clients: 3, SecureAggregation: "he", Committee: 4}, false},
		{"a threshold beyond the committee", loadtest.Config{SecureAggregation: "he", Committee: 3, Threshold: 4}, false},
		{"no admission", loadtest.Config{MaxConcurrentSubmits: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 50, 3 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 99, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 50, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, loadtest.Percentile(tt.in, tt.p), "p%v of %v", tt.p, tt.in)
	}
}
