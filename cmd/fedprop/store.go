package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/store/postgres"
)

// openStore opens the coordinator's store named by setting: a bbolt file (the embedded
// default), or a postgres:// DSN. With PostgreSQL the replica first waits until it leads
// (postgres.Leader): it returns a store whose writes are fenced by its term and a context
// that ends, with cause postgres.ErrLeadershipLost, if the lead is lost. Closing the store
// gives up the lead.
func openStore(ctx context.Context, log *slog.Logger, setting, replica string) (store.Store, context.Context, error) {
	if !postgres.IsDSN(setting) {
		s, err := bolt.Open(setting)
		return s, ctx, err
	}
	leader, err := postgres.NewLeader(setting, postgres.LeaderConfig{Name: replica, Logger: log})
	if err != nil {
		return nil, ctx, err
	}
	log.Info("campaigning for leadership", "store", postgres.Redact(setting))
	lease, err := leader.Campaign(ctx)
	if err != nil {
		return nil, ctx, err
	}
	s, err := postgres.Open(lease.Context(), setting, postgres.Options{})
	if err != nil {
		lease.Release()
		return nil, ctx, err
	}
	return &leasedStore{Store: s.Fenced(lease.Term()), lease: lease}, lease.Context(), nil
}

// leasedStore is a fenced PostgreSQL store that gives up the lead when closed.
type leasedStore struct {
	*postgres.Store
	lease *postgres.Lease
}

func (s *leasedStore) Close() error {
	err := s.Store.Close()
	s.lease.Release()
	return err
}

// leadershipLost returns the error to exit with when ctx ended because this replica lost
// the lead, nil otherwise. A replica that lost the lead exits non-zero so that its
// supervisor restarts it as a follower.
func leadershipLost(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, postgres.ErrLeadershipLost) {
		return fmt.Errorf("coordinator stopped: %w", cause)
	}
	return nil
}

// openStoreReadOnly opens an existing store for reading: a bbolt file (which must exist, and
// which a running coordinator holds locked), or a PostgreSQL schema, where nothing is created.
func openStoreReadOnly(ctx context.Context, setting string) (store.AuditedStore, error) {
	if postgres.IsDSN(setting) {
		return postgres.Open(ctx, setting, postgres.Options{ReadOnly: true, MaxConns: 1})
	}
	return bolt.OpenReadOnly(setting)
}

// errDamaged is the failure of `fedprop store check` on a store with damaged records.
var errDamaged = errors.New("store damaged")

func newStoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Check, back up and restore the coordinator's store",
	}
	storeFlag := func(c *cobra.Command, target *string) {
		c.Flags().StringVar(target, "store", envOr("FEDPROP_STORE", "fedprop.db"), "the coordinator's store: a bbolt file or a postgres:// DSN (env FEDPROP_STORE)")
	}

	var checkStore, checkCA string
	check := &cobra.Command{
		Use:   "check",
		Short: "Verify every record of a store and name each damaged one",
		Long: `Check reads every record of the store (runs, versions, audit entries and the audit head) and
verifies each against its checksum and its key; with the embedded store also bbolt's own page
structure and the head file beside the store; then the audit chain against the store's head and
the head each version recorded. With --tls-ca it also checks every decision's signature, as
audit verify does. It lists every damaged record and exits 1 if there is one. An embedded
store is locked while the coordinator runs: stop it first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var verifier *pki.Verifier
			if checkCA != "" {
				var err error
				if verifier, err = pki.LoadVerifier(checkCA); err != nil {
					return usagef("--tls-ca: %v", err)
				}
			}
			name := postgres.Redact(checkStore)
			s, err := openStoreReadOnly(cmd.Context(), checkStore)
			if err != nil {
				return fmt.Errorf("store %s cannot be opened: %w", name, err)
			}
			defer s.Close()
			rep, err := coordinator.CheckStore(cmd.Context(), s, verifier)
			if err != nil {
				return fmt.Errorf("check store %s: %w", name, err)
			}
			for _, d := range rep.Damaged {
				fmt.Fprintf(g.stdout, "DAMAGED %s\n", d)
			}
			signatures := "decisions' signatures not checked (no --tls-ca)"
			if rep.SignaturesChecked {
				signatures = fmt.Sprintf("%d decisions' signatures verified", rep.Decisions)
			}
			fmt.Fprintf(g.stdout, "store %s: %d runs, %d versions, %d audit entries read intact; audit head %s; %s\n",
				name, rep.Runs, rep.Versions, rep.Entries, rep.Head, signatures)
			if n := len(rep.Damaged); n > 0 {
				return fmt.Errorf("store %s: %w: %d damaged (listed above); restore it from a backup (fedprop store restore)", name, errDamaged, n)
			}
			return nil
		},
	}
	storeFlag(check, &checkStore)
	check.Flags().StringVar(&checkCA, "tls-ca", os.Getenv("FEDPROP_TLS_CA"), "CA certificate to check decisions' signatures against (env FEDPROP_TLS_CA)")

	var backupStore, out string
	backup := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Write a consistent snapshot of the embedded store, and check it",
		Long: `Backup writes the embedded store as of one instant (one bbolt read transaction) to FILE,
which must not exist yet, then opens the copy and checks every record of it. A PostgreSQL
store keeps its whole state in its schema's tables: back it up with pg_dump --schema.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out is required")
			}
			if postgres.IsDSN(backupStore) {
				return usagef("a PostgreSQL store is backed up with pg_dump: pg_dump --schema=SCHEMA --file=%s DSN (its schema is the whole store; restored, it checks clean with fedprop store check)", out)
			}
			s, err := bolt.OpenReadOnly(backupStore)
			if err != nil {
				return fmt.Errorf("store %s cannot be opened: %w", backupStore, err)
			}
			err = writeNewFile(out, func(w io.Writer) error { _, err := s.Backup(w); return err })
			_ = s.Close() // read-only: nothing to lose
			if err != nil {
				return fmt.Errorf("back up store %s: %w", backupStore, err)
			}
			copied, err := bolt.OpenReadOnly(out)
			if err != nil {
				return fmt.Errorf("backup %s cannot be opened: %w", out, err)
			}
			defer copied.Close()
			rep, err := coordinator.CheckStore(cmd.Context(), copied, nil)
			if err != nil {
				return fmt.Errorf("check backup %s: %w", out, err)
			}
			for _, d := range rep.Damaged {
				fmt.Fprintf(g.stdout, "DAMAGED %s\n", d)
			}
			if n := len(rep.Damaged); n > 0 {
				return fmt.Errorf("backup %s written, but the store holds damaged records: %w: %d damaged (listed above)", out, errDamaged, n)
			}
			fmt.Fprintf(g.stdout, "backed up store %s to %s: %d runs, %d versions, %d audit entries, audit head %s; checked\n",
				backupStore, out, rep.Runs, rep.Versions, rep.Entries, rep.Head)
			return nil
		},
	}
	storeFlag(backup, &backupStore)
	backup.Flags().StringVar(&out, "out", "", "backup file to write (must not exist)")

	var restoreStore, from string
	restore := &cobra.Command{
		Use:   "restore --from FILE",
		Short: "Make a backup the embedded store, deliberately",
		Long: `Restore checks every record of the backup FILE, copies it into place as the store (a store
file already there is moved aside to STORE.before-restore-TIME, not deleted) and records the
backup's audit head beside it, so that the coordinator starts on it instead of refusing a store
behind the head it last recorded. Entries after the backup's head are lost, and Restore says
how many. Stop the coordinator first. A PostgreSQL store is restored from its pg_dump.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return usagef("--from is required")
			}
			if postgres.IsDSN(restoreStore) {
				return usagef("a PostgreSQL store is restored from its pg_dump (psql or pg_restore), then checked with fedprop store check")
			}
			res, err := bolt.Restore(cmd.Context(), from, restoreStore, time.Now(), checkBackup)
			if err != nil {
				return err
			}
			if res.MovedAside != "" {
				fmt.Fprintf(g.stdout, "moved the store file that was there to %s\n", res.MovedAside)
			}
			fmt.Fprintf(g.stdout, "restored %s to %s: %d runs, %d versions, audit head %s\n", from, restoreStore, res.Runs, res.Versions, res.Head)
			if res.Before != nil && res.Before.Seq > res.Head.Seq {
				fmt.Fprintf(g.stderr, "warning: the store had recorded audit entries up to %d; entries %d to %d are not in the backup\n",
					res.Before.Seq, res.Head.Seq+1, res.Before.Seq)
			}
			return nil
		},
	}
	storeFlag(restore, &restoreStore)
	restore.Flags().StringVar(&from, "from", "", "backup file (fedprop store backup)")

	cmd.AddCommand(check, backup, restore)
	return cmd
}

// checkBackup is how restore checks a backup before it copies it into place: every record, its
// decoding, and the audit log as the coordinator verifies it at start (signatures aside: the
// backup's decisions are checked when the coordinator starts on it).
func checkBackup(ctx context.Context, s *bolt.Store) (store.CheckReport, error) {
	rep, err := coordinator.CheckStore(ctx, s, nil)
	return rep.CheckReport, err
}
