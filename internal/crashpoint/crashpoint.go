// Package crashpoint kills the process at a chosen point of the coordinator's driver, for
// crash-consistency tests. The coordinator command reads the point from the environment:
//
//	FEDPROP_CRASH_POINT=commit:3     # SIGKILL at the third commit, before the store write
//	FEDPROP_CRASH_POINT=committed:2  # at the second, right after the store write
//	FEDPROP_CRASH_POINT=result:5     # at the fifth accepted result (any kind)
//	FEDPROP_CRASH_POINT=result.train:4
//	FEDPROP_CRASH_POINT=aggregate:2  # when a result completes a phase, the second time
//
// The driver names its points (coordinator.ServerConfig.CrashPoint); a spec's point matches
// a point equal to it or a dotted sub-point ("result" matches "result.train"). Unset, nothing
// is ever killed.
package crashpoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// EnvVar is the environment variable the coordinator command reads.
const EnvVar = "FEDPROP_CRASH_POINT"

// ErrBadSpec: a crash point spec is not POINT:N with N >= 1.
var ErrBadSpec = errors.New("bad crash point")

// Spec is a parsed POINT:N.
type Spec struct {
	Point string
	N     int64
}

// Parse reads "POINT:N".
func Parse(s string) (Spec, error) {
	point, n, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || point == "" {
		return Spec{}, fmt.Errorf("%w: %q is not POINT:N", ErrBadSpec, s)
	}
	count, err := strconv.ParseInt(n, 10, 64)
	if err != nil || count < 1 {
		return Spec{}, fmt.Errorf("%w: %q: N must be a whole number of at least 1", ErrBadSpec, s)
	}
	return Spec{Point: point, N: count}, nil
}

// String formats the spec as Parse reads it.
func (s Spec) String() string { return fmt.Sprintf("%s:%d", s.Point, s.N) }

// Matches reports whether the driver's point is the spec's point or a sub-point of it.
func (s Spec) Matches(point string) bool {
	return point == s.Point || strings.HasPrefix(point, s.Point+".")
}

// Hook returns the function for coordinator.ServerConfig.CrashPoint: at the N-th matching
// point it writes one line to log (so a test can tell the planned kill from a real crash)
// and calls kill.
func (s Spec) Hook(log io.Writer, kill func()) func(point string) {
	var seen atomic.Int64
	return func(point string) {
		if !s.Matches(point) || seen.Add(1) != s.N {
			return
		}
		fmt.Fprintf(log, "crashpoint: killing the process at %s #%d (%s)\n", s.Point, s.N, point)
		kill()
	}
}

// FromEnv returns the hook configured by FEDPROP_CRASH_POINT, or nil when it is unset. The
// hook kills the process with SIGKILL: no deferred function, flush or graceful stop runs.
func FromEnv() (func(point string), error) {
	v := os.Getenv(EnvVar)
	if v == "" {
		return nil, nil
	}
	spec, err := Parse(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvVar, err)
	}
	return spec.Hook(os.Stderr, Kill), nil
}

// Kill ends the process at once with SIGKILL (TerminateProcess on Windows).
func Kill() {
	p, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = p.Kill()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "crashpoint: kill: %v; exiting instead\n", err)
	}
	os.Exit(137) // not reached after a successful SIGKILL
}
