package main

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/fedprop/fedprop/sim"
)

// progressAfter is how long a run must be expected to take before it gets a progress bar.
const progressAfter = 3 * time.Second

// progress is a progress bar over a run's rounds on the terminal. It appears only when w is
// a terminal and the run, extrapolated from the rounds done, will take longer than
// progressAfter; lines printed through Print go above it. It is safe for concurrent use.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	enabled bool
	total   int
	done    int
	desc    string
	now     func() time.Time
	start   time.Time
	bar     *progressbar.ProgressBar // nil until shown
}

// newProgress is a progress bar over total rounds, shown on w when w is a terminal.
func newProgress(w io.Writer, total int, desc string) *progress {
	return newProgressWith(w, total, desc, isTerminal(w), time.Now)
}

func newProgressWith(w io.Writer, total int, desc string, enabled bool, now func() time.Time) *progress {
	return &progress{w: w, enabled: enabled && total > 0, total: total, desc: desc, now: now, start: now()}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Print runs print (which writes whole lines to the same terminal) with the bar out of the
// way, then draws the bar again.
func (p *progress) Print(print func()) { p.update(print, 0) }

// Step counts n more rounds done.
func (p *progress) Step(n int) { p.update(nil, n) }

// update prints above the bar (print may be nil) and counts n more rounds, drawing the bar
// once: it appears when the rounds done so far extrapolate to a run longer than
// progressAfter, and leaves after the last round.
func (p *progress) update(print func(), n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if print != nil {
		if p.bar != nil {
			_ = p.bar.Clear()
		}
		print()
	}
	p.done += n
	switch {
	case p.bar != nil && p.done >= p.total:
		p.closeLocked()
	case p.bar != nil && n > 0:
		_ = p.bar.Add(n) // with the count shown, every Add draws
	case p.bar != nil:
		_ = p.bar.RenderBlank()
	case p.enabled && n > 0 && p.done < p.total:
		elapsed := p.now().Sub(p.start)
		if time.Duration(float64(elapsed)*float64(p.total)/float64(p.done)) < progressAfter {
			return
		}
		p.bar = progressbar.NewOptions(p.total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.desc),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(),
		)
		_ = p.bar.Set(p.done)
	}
}

// Close removes the bar, whether or not every round ran (a run may stop early).
func (p *progress) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
}

func (p *progress) closeLocked() {
	if p.bar == nil {
		return
	}
	_ = p.bar.Clear()
	_ = p.bar.Exit()
	p.bar = nil
	p.enabled = false
}

// Shown reports whether the bar is on the terminal now.
func (p *progress) Shown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bar != nil
}

// withProgress decorates a round observer (nil: none) with the progress bar: the inner
// observer's output goes above the bar, and every round moves the bar on.
func withProgress(inner sim.Observer, p *progress) sim.Observer {
	return progressObserver{inner: inner, p: p}
}

type progressObserver struct {
	inner sim.Observer
	p     *progress
}

// Round implements sim.Observer.
func (o progressObserver) Round(m sim.RoundMetrics) {
	var print func()
	if o.inner != nil {
		print = func() { o.inner.Round(m) }
	}
	o.p.update(print, 1)
}
