package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/postgres"
)

// auditSource is where an audit command reads the log: the coordinator's store (the log's
// home), or a file `fedprop audit export` wrote.
type auditSource struct {
	store, log string
}

func (a *auditSource) flags(fs *pflag.FlagSet) {
	fs.StringVar(&a.store, "store", envOr("FEDPROP_STORE", "fedprop.db"), "the coordinator's store: a bbolt file or a postgres:// DSN (env FEDPROP_STORE)")
	fs.StringVar(&a.log, "log", "", "read an exported log file (fedprop audit export) instead of the store")
}

// name says which log a message is about.
func (a *auditSource) name() string {
	if a.log != "" {
		return "audit log " + a.log
	}
	return "audit log in store " + postgres.Redact(a.store)
}

// read returns the log's entries; from the store also its recorded head and the store, open,
// for checks against it (nil for a file). close releases the store.
func (a *auditSource) read(ctx context.Context) (entries []audit.Entry, head *audit.Head, s store.AuditedStore, err error) {
	if a.log != "" {
		entries, err = audit.ReadFile(ctx, a.log)
		return entries, nil, nil, err
	}
	s, err = openStoreReadOnly(ctx, a.store)
	if err != nil {
		return nil, nil, nil, err
	}
	entries, h, err := coordinator.Records{Store: s}.AuditLog(ctx)
	if err != nil {
		_ = s.Close()
		return nil, nil, nil, err
	}
	return entries, &h, s, nil
}

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, show and export the hash-chained audit log of approvals, overrides and runs",
	}

	var (
		verifySrc  auditSource
		head, caCA string
	)
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the log's chain, its head and every decision's signature; fail naming the first bad entry",
		Long: `Verify checks the audit log the coordinator keeps in its store: every entry against its
checksum; the hash chain (sequence numbers without gaps, each entry linked to the hash of the one
before it, each hash matching the entry's content) against the head the store records; the head
each committed version recorded; and every approval, rejection and override against the CA:
signed with the key of an approver's certificate, by the approver the entry names, over the
version's content hash and the reason, and that hash still the version's. It fails naming the
first bad entry.

With --log it checks an exported file instead: its chain, and its signatures; pass the head
recorded with the export (--head SEQ:HASH) to detect a deleted tail. An embedded store is locked
while the coordinator runs: stop it first, or verify an export.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var want *audit.Head
			if head != "" {
				h, err := audit.ParseHead(head)
				if err != nil {
					return usagef("--head: %v", err)
				}
				want = &h
			}
			entries, stored, s, err := verifySrc.read(cmd.Context())
			if err != nil {
				return fmt.Errorf("%s cannot be read: %w", verifySrc.name(), err)
			}
			if s != nil {
				defer s.Close()
			}
			var verifier *pki.Verifier
			if caCA != "" {
				if verifier, err = pki.LoadVerifier(caCA); err != nil {
					return usagef("--tls-ca: %v", err)
				}
			} else if n := countDecisions(entries); n > 0 {
				// Without the CA no decision can be told from a forgery: refuse, rather than
				// call the log verified. A log without decisions (a simulation's) needs none.
				return usagef("--tls-ca is required: the log holds %d approval or rejection decisions, whose signatures are checked against the CA", n)
			}
			var (
				decisions int
				checked   = "the chain"
			)
			if s != nil {
				sum, err := coordinator.VerifyAudit(cmd.Context(), s, verifier)
				if err != nil {
					return fmt.Errorf("%s does not verify: %w", verifySrc.name(), err)
				}
				decisions = sum.Decisions
				checked = fmt.Sprintf("the chain, the store's head, the heads %d versions recorded", sum.Versions)
				if want != nil && *want != *stored {
					return fmt.Errorf("%s does not verify: %w", verifySrc.name(),
						&audit.ChainError{Seq: want.Seq, Reason: fmt.Sprintf("is not the store's head (%s, expected %s): the log was rewritten or cut", stored, want)})
				}
			} else {
				if err := audit.Verify(entries, want); err != nil {
					return fmt.Errorf("%s does not verify: %w", verifySrc.name(), err)
				}
				if decisions, err = audit.VerifyDecisions(verifier, entries); err != nil {
					return fmt.Errorf("%s does not verify: %w", verifySrc.name(), err)
				}
			}
			if want != nil {
				checked += " and the expected head"
			}
			fmt.Fprintf(g.stdout, "%s verifies: %d entries; %s intact; %d decisions signed by their approvers; head %s\n",
				verifySrc.name(), len(entries), checked, decisions, audit.HeadOf(entries))
			return nil
		},
	}
	verifySrc.flags(verify.Flags())
	verify.Flags().StringVar(&head, "head", "", "expected newest entry, SEQ:HASH, as recorded outside the log")
	verify.Flags().StringVar(&caCA, "tls-ca", os.Getenv("FEDPROP_TLS_CA"), "CA certificate approvers' certificates chain to (env FEDPROP_TLS_CA)")

	var (
		showSrc auditSource
		format  string
	)
	show := &cobra.Command{
		Use:   "show",
		Short: "List the log's entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usagef("--format: %q is not text or json", format)
			}
			entries, stored, s, err := showSrc.read(cmd.Context())
			if err != nil {
				return fmt.Errorf("%s cannot be read: %w", showSrc.name(), err)
			}
			if s != nil {
				defer s.Close()
			}
			if format == "json" {
				enc := json.NewEncoder(g.stdout)
				for _, e := range entries {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
			} else {
				w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "SEQ\tTIME\tACTOR\tROLE\tACTION\tSUBJECT\tREASON\tSIGNED\tHASH")
				for _, e := range entries {
					signed := "-"
					if e.Signature != nil {
						signed = "yes"
					}
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), cell(e.Actor), cell(e.Role),
						e.Action, cell(e.Subject), cell(e.Reason), signed, e.Hash[:min(12, len(e.Hash))])
				}
				if err := w.Flush(); err != nil {
					return err
				}
			}
			if err := audit.Verify(entries, stored); err != nil {
				fmt.Fprintf(g.stderr, "warning: the log does not verify: %v\n", err)
			}
			return nil
		},
	}
	showSrc.flags(show.Flags())
	show.Flags().StringVar(&format, "format", "text", "output format: text (a table) or json (one entry per line)")

	var exportStore, out string
	export := &cobra.Command{
		Use:   "export --out FILE",
		Short: "Write the store's audit log as JSON lines, for archiving",
		Long: `Export writes every entry of the audit log in the coordinator's store to FILE, one JSON
line each (the format audit verify --log and audit show --log read), after checking each entry's
checksum and the chain against the store's head, and prints that head: record it with the
archive, and audit verify --log FILE --head SEQ:HASH later proves the archive whole. FILE must
not exist yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out is required")
			}
			src := auditSource{store: exportStore}
			entries, stored, s, err := src.read(cmd.Context())
			if err != nil {
				return fmt.Errorf("%s cannot be read: %w", src.name(), err)
			}
			_ = s.Close() // read-only: nothing to lose
			if err := audit.Verify(entries, stored); err != nil {
				return fmt.Errorf("%s does not verify, nothing exported (fedprop audit verify names what is wrong): %w", src.name(), err)
			}
			if err := writeNewFile(out, func(w io.Writer) error { return audit.WriteEntries(w, entries) }); err != nil {
				return fmt.Errorf("export audit log: %w", err)
			}
			fmt.Fprintf(g.stdout, "exported %d entries of the %s to %s; head %s\n", len(entries), src.name(), out, stored)
			return nil
		},
	}
	export.Flags().StringVar(&exportStore, "store", envOr("FEDPROP_STORE", "fedprop.db"), "the coordinator's store: a bbolt file or a postgres:// DSN (env FEDPROP_STORE)")
	export.Flags().StringVar(&out, "out", "", "file to write (must not exist)")

	cmd.AddCommand(verify, show, export, newAuditMembersCmd(g))
	return cmd
}

// writeNewFile creates path (refusing one that exists), writes it with write, and syncs it; a
// failed write leaves no file behind.
func writeNewFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- the operator names the output
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// cell makes a value fit one table cell: "-" when empty, control characters as spaces.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// countDecisions counts the approval, rejection and override entries of a log.
func countDecisions(entries []audit.Entry) int {
	n := 0
	for _, e := range entries {
		if audit.IsDecision(e.Action) {
			n++
		}
	}
	return n
}
