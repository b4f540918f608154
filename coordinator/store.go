package coordinator

import (
	"context"
	"fmt"
)

// Store keeps the coordinator's durable state: run records and committed model versions.
// Implementations: store/bolt (embedded, the default) and store/mem (tests, simulator). Each
// must pass store/storetest.
type Store interface {
	// SaveRun writes a run record.
	SaveRun(ctx context.Context, r RunState) error
	// Run reads a run record; ErrNotFound when there is none.
	Run(ctx context.Context, id string) (RunState, error)
	// Runs lists every run record, oldest first.
	Runs(ctx context.Context) ([]RunState, error)
	// Commit writes a model version and its run's record in one transaction. It fails with
	// ErrConflict, writing nothing, unless v.Version is exactly one past the latest stored
	// version and v.Round one past the run's stored last round: no version is ever lost,
	// skipped or committed twice.
	Commit(ctx context.Context, v ModelVersion, r RunState) error
	// Version reads one version; ErrNotFound when there is none.
	Version(ctx context.Context, version uint64) (ModelVersion, error)
	// Latest reads the newest version; ErrNotFound when there is none.
	Latest(ctx context.Context) (ModelVersion, error)
	// Versions lists every version, oldest first.
	Versions(ctx context.Context) ([]ModelVersion, error)
	Close() error
}

// CheckCommit is the rule every Store applies inside its commit transaction: the version must
// follow the latest stored one and the round must follow the run's last stored round.
func CheckCommit(latestVersion uint64, lastRound int, v ModelVersion, r RunState) error {
	if v.Version != latestVersion+1 {
		return fmt.Errorf("commit version %d: the latest stored version is %d: %w", v.Version, latestVersion, ErrConflict)
	}
	if v.Round != lastRound+1 {
		return fmt.Errorf("commit version %d of run %s: round %d does not follow stored round %d: %w", v.Version, r.ID, v.Round, lastRound, ErrConflict)
	}
	if v.RunID != r.ID || r.LastRound != v.Round || r.LatestVersion != v.Version {
		return fmt.Errorf("commit version %d: run record (run %s, round %d, version %d) does not match it: %w",
			v.Version, r.ID, r.LastRound, r.LatestVersion, ErrConflict)
	}
	return nil
}
