//go:build !unix

package loadtest

import "time"

// usage is a getrusage reading; this platform has none, so it reads zero.
type usage struct {
	user, system time.Duration
	maxRSS       int64
}

func getrusage() (usage, error) { return usage{}, nil }

// ChildUsage reports that this platform does not measure child processes.
func ChildUsage(any) (user, system time.Duration, maxRSS int64, ok bool) { return 0, 0, 0, false }
