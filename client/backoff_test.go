package client

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestAgentBackoffNeverSpins checks the delays an agent waits between failed calls: whatever
// its configuration, each is at least the minimum, so a negative or tiny max_backoff cannot
// turn the retry loop into a hot loop (247 MB of logs in 8 s, issue 12).
func TestAgentBackoffNeverSpins(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		wantMin  time.Duration
		wantMax  time.Duration
	}{
		{"defaults", 0, 0, 200 * time.Millisecond, 15 * time.Second},
		{"negative cap", 0, -5 * time.Second, 200 * time.Millisecond, 200 * time.Millisecond},
		{"cap below the first delay", 0, time.Nanosecond, 200 * time.Millisecond, 200 * time.Millisecond},
		{"negative first delay", -time.Second, time.Minute, 200 * time.Millisecond, time.Minute},
		{"as configured", time.Second, time.Minute, time.Second, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := AgentConfig{MinBackoff: tt.min, MaxBackoff: tt.max}.WithDefaults()
			assert.Equal(t, tt.wantMin, cfg.MinBackoff)
			assert.Equal(t, tt.wantMax, cfg.MaxBackoff)
			b := backoff{min: cfg.MinBackoff, max: cfg.MaxBackoff}
			done, cancel := context.WithCancel(context.Background())
			cancel() // wait then advances the backoff without sleeping
			for range 10 {
				assert.GreaterOrEqual(t, b.peek(), cfg.MinBackoff, "every retry waits at least the minimum")
				b.wait(done)
			}
		})
	}
}
