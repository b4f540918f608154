package grpctransport_test

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// TestDefaultRateLimitNeverTripsANormalFederation replays what 1,000 clients polling normally
// send through one rate limiter, every client's calls at the same instant (the worst case): the
// default refuses none of them, in rounds 7 times faster than the fastest measured at 1,000
// clients, after a coordinator restart, and for a committee sharing one address. The old
// default (20 a second, bursts of 40) slowed every client in the fast rounds.
func TestDefaultRateLimitNeverTripsANormalFederation(t *testing.T) {
	const clients = 1000
	type call struct {
		at  time.Duration
		key string
	}
	// rounds: per round two phases (train, evaluate), each a result and the next poll per client.
	rounds := func(n int, round time.Duration) []call {
		var out []call
		for r := range n {
			for phase := range 2 {
				at := time.Duration(r)*round + time.Duration(phase)*round/2
				for c := range clients {
					key := fmt.Sprintf("client/bank-%d", c)
					out = append(out, call{at, key}, call{at, key})
				}
			}
		}
		return out
	}
	// restart: after the coordinator comes back every client at once re-polls, is told it is
	// unknown, registers, polls, resubmits its kept answer and polls again, then rounds go on.
	restart := func() []call {
		var out []call
		for c := range clients {
			for range 6 {
				out = append(out, call{0, fmt.Sprintf("client/bank-%d", c)})
			}
		}
		for _, c := range rounds(20, 81*time.Millisecond) {
			out = append(out, call{c.at + 100*time.Millisecond, c.key})
		}
		return out
	}
	// committee: 32 members of an he run behind one address with insecure fetch the
	// contributions at every decryption (their streams are keyed by address), with a health
	// probe every 5 s from the same address. he rounds took 3.7 s at 100 clients and grow with
	// the clients (BENCHMARKS.md): 37 s at 1,000, 5.3 s seven times faster, with two
	// decryptions each: one every 2.6 s.
	committee := func() []call {
		var out []call
		for d := range 100 {
			for range 32 {
				out = append(out, call{time.Duration(d) * 2600 * time.Millisecond, "addr/10.0.0.1"})
			}
		}
		for p := range 10 {
			out = append(out, call{time.Duration(p) * 5 * time.Second, "addr/10.0.0.1"})
		}
		return out
	}
	cases := []struct {
		name       string
		limit      grpctransport.RateLimit
		calls      []call
		wantRefuse bool
	}{
		{"measured 1,000-client rounds (568 ms)", grpctransport.DefaultRateLimit(), rounds(50, 568*time.Millisecond), false},
		{"rounds 7 times faster (81 ms)", grpctransport.DefaultRateLimit(), rounds(100, 81*time.Millisecond), false},
		{"after a coordinator restart", grpctransport.DefaultRateLimit(), restart(), false},
		{"a committee behind one address", grpctransport.DefaultRateLimit(), committee(), false},
		{"the old default in rounds of 81 ms", grpctransport.RateLimit{PerSecond: 20, Burst: 40}, rounds(100, 81*time.Millisecond), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			start := clock.now()
			l := grpctransport.NewRateLimiter(tc.limit, clock.now)
			refused := 0
			slices.SortStableFunc(tc.calls, func(a, b call) int { return cmp.Compare(a.at, b.at) })
			for _, c := range tc.calls {
				clock.set(start.Add(c.at))
				if !l.Allow(c.key) {
					refused++
				}
			}
			if tc.wantRefuse {
				assert.Positive(t, refused)
				return
			}
			assert.Zero(t, refused, "of %d calls", len(tc.calls))
		})
	}
}
