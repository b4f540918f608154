package grpctransport

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// RateLimit is a per-caller request budget: PerSecond requests a second on average, bursts of
// up to Burst. The zero value does not limit.
type RateLimit struct {
	// PerSecond is the sustained rate each caller may use; 0 turns limiting off.
	PerSecond float64
	// Burst is how many requests a caller may make at once after being idle; 0 means
	// max(1, ceil(PerSecond)).
	Burst int
}

// DefaultRateLimit is the budget a coordinator gives each caller unless configured
// (rate_limit.per_second, rate_limit.burst). The budget is per caller (per certificate; with
// insecure, per client id, or per address for calls that carry none), so the federation's size
// does not enter it: 1,000 clients are 1,000 buckets. What it must hold is the most one client
// sends while polling normally, with room for faster machines than the one measured.
//
// Sustained rate, 50 a second: a client makes 2 calls per task (its result and the poll that
// brings the next task), and a run with an evaluation every round gives it 2 tasks a round: 4
// calls. The fastest 1,000-client rounds measured took 568 ms (BENCHMARKS.md: 2 cores, mutual
// TLS, plaintext aggregation, round p50), 7 calls a second; 50 allows rounds 7 times faster
// (81 ms) before a normal client is slowed. Between rounds a client sends one poll per
// poll_wait (20 s: 0.05 a second), and while the coordinator is down it retries at most every
// client.AgentConfig.MinBackoff (200 ms: 5 a second). The old default, 20 a second with bursts
// of 40, slowed every client once rounds were shorter than 200 ms, which a small federation or a
// faster coordinator reaches.
//
// Burst, 100: the most one client sends at once is about 6 (after a coordinator restart: the
// failed poll's retry, a poll answered "unknown client", register, poll, the kept answer's
// submission, the next poll). The most that share one bucket in normal operation are the
// committee of an he run behind one address with insecure, whose FetchContributions streams
// carry no client id until their first message: at most secagg's MaxCommittee, 32, at once,
// plus health probes. 100 is three times that.
//
// The limit stays a brake on a single caller: 50 calls a second at the 0.25-0.4 ms of
// coordinator CPU a call costs (BENCHMARKS.md) is 1.3 to 2 % of one core.
func DefaultRateLimit() RateLimit { return RateLimit{PerSecond: 50, Burst: 100} }

// Enabled reports whether the limit limits anything.
func (r RateLimit) Enabled() bool { return r.PerSecond > 0 }

// Validate names a setting that cannot work.
func (r RateLimit) Validate() error {
	if r.PerSecond < 0 || math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0) {
		return fmt.Errorf("rate_limit.per_second: must be a finite number >= 0, got %v", r.PerSecond)
	}
	if r.Burst < 0 {
		return fmt.Errorf("rate_limit.burst: must be >= 0, got %d", r.Burst)
	}
	return nil
}

func (r RateLimit) burst() float64 {
	if r.Burst > 0 {
		return float64(r.Burst)
	}
	return max(1, math.Ceil(r.PerSecond))
}

// Sweeping bounds the limiter's memory: buckets that have refilled completely are
// indistinguishable from new ones and are dropped.
const (
	sweepEvery     = time.Minute
	sweepAboveKeys = 1 << 16
)

// RateLimiter is one token bucket per caller. It is safe for concurrent use.
type RateLimiter struct {
	limit RateLimit
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewRateLimiter makes a limiter; now is its clock (nil means time.Now).
func NewRateLimiter(limit RateLimit, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	return &RateLimiter{limit: limit, burst: limit.burst(), now: now, buckets: map[string]*bucket{}, lastSweep: now()}
}

// Allow takes one token from key's bucket, reporting false when there is none. A disabled
// limit always allows.
func (l *RateLimiter) Allow(key string) bool {
	if !l.limit.Enabled() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.maybeSweep(now)
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Len is the number of callers the limiter currently tracks.
func (l *RateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (l *RateLimiter) refill(b *bucket, now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.limit.PerSecond)
		b.last = now
	}
}

func (l *RateLimiter) maybeSweep(now time.Time) {
	since := now.Sub(l.lastSweep)
	if since < sweepEvery && (len(l.buckets) <= sweepAboveKeys || since < time.Second) {
		return
	}
	l.lastSweep = now
	for key, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, key)
		}
	}
}
