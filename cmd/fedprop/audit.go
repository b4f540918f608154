package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/audit"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and show the hash-chained audit log of approvals, overrides and runs",
	}
	var logPath string
	cmd.PersistentFlags().StringVar(&logPath, "log", envOr("FEDPROP_AUDIT_LOG", ""), "audit log file, JSON lines (env FEDPROP_AUDIT_LOG)")
	load := func(cmd *cobra.Command) ([]audit.Entry, error) {
		if logPath == "" {
			return nil, usagef("--log is required")
		}
		if _, err := os.Stat(logPath); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		return audit.NewFileStore(logPath).Entries(cmd.Context())
	}

	var head string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the log's hash chain; fail naming the first edited, reordered or deleted entry",
		Long: `Verify checks every entry of the log: sequence numbers without gaps, each entry linked to
the hash of the one before it, each hash matching the entry's content, and every line in the
log's exact encoding. It fails naming the first bad entry. Deleting the newest entries leaves a
valid but shorter chain: pass the head recorded outside the log (--head SEQ:HASH, as the
coordinator's store keeps it) to detect that too.`,
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
			entries, err := load(cmd)
			if err == nil {
				err = audit.Verify(entries, want)
			}
			if err != nil {
				return fmt.Errorf("audit log %s does not verify: %w", logPath, err)
			}
			last := audit.Head{Hash: audit.Genesis}
			if n := len(entries); n > 0 {
				last = audit.Head{Seq: entries[n-1].Seq, Hash: entries[n-1].Hash}
			}
			checked := "the chain"
			if want != nil {
				checked += " and the recorded head"
			}
			fmt.Fprintf(g.stdout, "audit log %s verifies: %d entries, %s intact; head %s\n", logPath, len(entries), checked, last)
			return nil
		},
	}
	verify.Flags().StringVar(&head, "head", "", "expected newest entry, SEQ:HASH, as recorded outside the log")

	var format string
	show := &cobra.Command{
		Use:   "show",
		Short: "List the log's entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usagef("--format: %q is not text or json", format)
			}
			entries, err := load(cmd)
			var chainErr *audit.ChainError
			if errors.As(err, &chainErr) {
				return fmt.Errorf("audit log %s cannot be read: %w", logPath, err)
			}
			if err != nil {
				return err
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
				fmt.Fprintln(w, "SEQ\tTIME\tACTOR\tROLE\tACTION\tSUBJECT\tREASON\tHASH")
				for _, e := range entries {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), cell(e.Actor), cell(e.Role),
						e.Action, cell(e.Subject), cell(e.Reason), e.Hash[:min(12, len(e.Hash))])
				}
				if err := w.Flush(); err != nil {
					return err
				}
			}
			if err := audit.Verify(entries, nil); err != nil {
				fmt.Fprintf(g.stderr, "warning: the log does not verify: %v\n", err)
			}
			return nil
		},
	}
	show.Flags().StringVar(&format, "format", "text", "output format: text (a table) or json (one entry per line)")

	cmd.AddCommand(verify, show)
	return cmd
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
