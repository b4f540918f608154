package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedprop/fedprop/store"
)

// RestoreResult says what Restore did.
type RestoreResult struct {
	// Head is the restored store's audit head.
	Head store.Head
	// Versions and Runs count what the restored store holds.
	Versions, Runs int
	// Before is the head the head file recorded before the restore, if there was one: a
	// backup older than it loses the entries after its own head.
	Before *store.Head
	// MovedAside is where the store file that was at the path is now ("" when there was none):
	// it is kept, not deleted, for whoever examines what happened to it.
	MovedAside string
}

// CheckFunc checks a whole store and names every damaged record, as Check does;
// coordinator.CheckStore is one that also verifies the audit chain and what the versions
// recorded of it.
type CheckFunc func(ctx context.Context, s *Store) (store.CheckReport, error)

// Restore makes the backup at from (a file Backup wrote) the store at path, deliberately: it
// checks every record of the backup with check (Store.Check when check is nil; `fedprop store
// restore` passes the coordinator's whole check, audit chain included), copies it into place
// through a synced temporary file, moves a store file already at path aside
// (PATH.before-restore-TIME), and records the backup's audit head beside it, so that the
// coordinator starts on the restored store instead of refusing it as rolled back. The
// coordinator must be stopped: a store file another process holds is refused.
func Restore(ctx context.Context, from, path string, now time.Time, check CheckFunc) (RestoreResult, error) {
	var res RestoreResult
	b, err := OpenReadOnly(from)
	if err != nil {
		return res, fmt.Errorf("restore from %s: %w", from, err)
	}
	if check == nil {
		check = func(ctx context.Context, s *Store) (store.CheckReport, error) { return s.Check(ctx) }
	}
	rep, err := check(ctx, b)
	_ = b.Close() // read-only: nothing to lose
	if err != nil {
		return res, fmt.Errorf("restore from %s: %w", from, err)
	}
	if n := len(rep.Damaged); n > 0 {
		msgs := make([]string, n)
		for i, d := range rep.Damaged {
			msgs[i] = d.String()
		}
		return res, fmt.Errorf("restore from %s: the backup is damaged, nothing restored: %w", from,
			&store.CorruptError{Record: from, Reason: strings.Join(msgs, "; ")})
	}
	res.Head, res.Versions, res.Runs = rep.Head, rep.Versions, rep.Runs
	if h, ok, err := readHeadFile(path + HeadFileSuffix); err == nil && ok {
		res.Before = &h
	}
	if _, err := os.Stat(path); err == nil {
		if err := lockedByOther(path); err != nil {
			return res, fmt.Errorf("restore to %s: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("restore to %s: %w", path, err)
	}
	tmp := path + ".restore.tmp"
	if err := copyFile(from, tmp); err != nil {
		_ = os.Remove(tmp)
		return res, fmt.Errorf("restore to %s: %w", path, err)
	}
	if _, err := os.Stat(path); err == nil {
		res.MovedAside = path + ".before-restore-" + now.UTC().Format("20060102T150405Z")
		if err := os.Rename(path, res.MovedAside); err != nil {
			_ = os.Remove(tmp)
			return res, fmt.Errorf("restore to %s: move the current file aside: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return res, fmt.Errorf("restore to %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return res, fmt.Errorf("restore to %s: %w", path, err)
	}
	if err := writeFileAtomic(path+HeadFileSuffix, []byte(res.Head.String()+"\n")); err != nil {
		return res, fmt.Errorf("restore to %s: record the audit head beside it: %w", path, err)
	}
	return res, nil
}

// copyFile copies from to a new file to, synced.
func copyFile(from, to string) error {
	in, err := os.Open(from) // #nosec G304 -- the operator's backup
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- beside the store
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
