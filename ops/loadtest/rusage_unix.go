//go:build unix

package loadtest

import (
	"fmt"
	"runtime"
	"syscall"
	"time"
)

// usage is a getrusage reading.
type usage struct {
	user, system time.Duration
	maxRSS       int64 // bytes
}

func getrusage() (usage, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}, fmt.Errorf("getrusage: %w", err)
	}
	return fromRusage(&ru), nil
}

func fromRusage(ru *syscall.Rusage) usage {
	rss := ru.Maxrss * 1024 // kilobytes on Linux
	if runtime.GOOS == "darwin" {
		rss = ru.Maxrss // bytes on macOS
	}
	return usage{
		user:   time.Duration(ru.Utime.Nano()),
		system: time.Duration(ru.Stime.Nano()),
		maxRSS: int64(rss),
	}
}

// ChildUsage reads a finished child process's CPU time and peak RSS from its
// os.ProcessState.SysUsage(); ok is false when the platform does not report them.
func ChildUsage(sysUsage any) (user, system time.Duration, maxRSS int64, ok bool) {
	ru, ok := sysUsage.(*syscall.Rusage)
	if !ok || ru == nil {
		return 0, 0, 0, false
	}
	u := fromRusage(ru)
	return u.user, u.system, u.maxRSS, true
}
