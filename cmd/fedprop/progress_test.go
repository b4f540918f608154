package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/sim"
)

// fakeClock advances by step on every reading.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time {
	c.t = c.t.Add(c.step)
	return c.t
}

type countingObserver struct {
	buf    *bytes.Buffer
	rounds []int
}

func (o *countingObserver) Round(m sim.RoundMetrics) {
	o.rounds = append(o.rounds, m.Round)
	o.buf.WriteString("round line\n")
}

func TestProgressBar(t *testing.T) {
	cases := []struct {
		name      string
		enabled   bool
		perRound  time.Duration
		wantShown bool
	}{
		{"not a terminal", false, 10 * time.Second, false},
		{"a fast run on a terminal", true, 10 * time.Millisecond, false},
		{"a slow run on a terminal", true, 2 * time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			clock := &fakeClock{t: time.Unix(0, 0), step: tc.perRound}
			p := newProgressWith(&out, 10, "rounds", tc.enabled, clock.now)
			inner := &countingObserver{buf: &out}
			obs := withProgress(inner, p)
			shown := false
			for r := 1; r <= 5; r++ {
				obs.Round(sim.RoundMetrics{Round: r})
				shown = shown || p.Shown()
			}
			assert.Equal(t, []int{1, 2, 3, 4, 5}, inner.rounds, "the table hears every round")
			assert.Equal(t, tc.wantShown, shown)
			assert.Equal(t, 5, strings.Count(out.String(), "round line\n"))
			if tc.wantShown {
				assert.Contains(t, out.String(), "rounds")
				assert.Contains(t, out.String(), "/10", "the bar counts rounds")
			} else {
				assert.Equal(t, strings.Repeat("round line\n", 5), out.String(), "nothing but the table")
			}
			p.Close() // a run that stops early
			assert.False(t, p.Shown())
		})
	}
}

func TestProgressBarLeavesWhenTheRunEnds(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(0, 0), step: 5 * time.Second}
	p := newProgressWith(&out, 3, "rounds", true, clock.now)
	obs := withProgress(nil, p)
	obs.Round(sim.RoundMetrics{Round: 1})
	require.True(t, p.Shown())
	obs.Round(sim.RoundMetrics{Round: 2})
	obs.Round(sim.RoundMetrics{Round: 3})
	assert.False(t, p.Shown(), "the bar is gone after the last round")
	p.Print(func() { out.WriteString("after\n") })
	assert.True(t, strings.HasSuffix(out.String(), "after\n"))
}

func TestIsTerminal(t *testing.T) {
	assert.False(t, isTerminal(&bytes.Buffer{}))
}
