//go:build !windows

package bolt

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockedByOther fails when another process holds the bbolt lock on the file at path (a
// running coordinator, which bbolt locks with flock).
func lockedByOther(path string) error {
	f, err := os.Open(path) // #nosec G304 -- the operator's store
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil { // #nosec G115 -- a file descriptor fits an int
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("another process holds it (a running coordinator?): stop it first")
		}
		return err
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) // #nosec G115 -- as above
}
