package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/store/postgres"
	"github.com/fedprop/fedprop/task"
)

// errMembersMismatch is the failure of `fedprop audit members`: the members' logs and the
// coordinator's record disagree (exit status 1, after the report).
var errMembersMismatch = errors.New("the committee members' share logs do not match the coordinator's record")

// newAuditMembersCmd is `fedprop audit members`: every decryption share the members' logs
// say they gave, matched against the coordinator's record of the aggregates it asked them to
// decrypt.
func newAuditMembersCmd(g *globals) *cobra.Command {
	var storeSetting string
	cmd := &cobra.Command{
		Use:   "members SHARE_LOG...",
		Short: "Match committee members' share logs against the coordinator's record of decryptions",
		Long: `Members reads the share logs of committee members (shares.jsonl in each member's
secure_aggregation.state_dir) and the coordinator's record of every aggregate it asked the
committee to decrypt (the run records in its store), and reports every share a member gave for
an aggregate the coordinator does not record, or records with other contributors, another
round or purpose, or without the active set the member answered in; and every pair of
aggregates of one run and purpose the coordinator asked for whose contributors differ by fewer
than its min_contributors. It exits 1 when it reports anything. Read a copy of the store, or
stop the coordinator first: an embedded store is locked while the coordinator runs.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, logs []string) error {
			if storeSetting == "" {
				return usagef("--store is required")
			}
			var shares []client.ShareRecord
			for _, path := range logs {
				recs, err := client.ReadShareLogFile(path)
				if err != nil {
					return err
				}
				shares = append(shares, recs...)
			}
			runs, err := readRuns(cmd.Context(), storeSetting, shares)
			if err != nil {
				return err
			}
			problems := compareShareLogs(shares, runs)
			members := map[string]bool{}
			for _, s := range shares {
				members[s.Member] = true
			}
			decryptions := 0
			for _, r := range runs {
				decryptions += len(r.Decryptions)
			}
			if len(problems) > 0 {
				w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "MEMBER\tRUN\tROUND\tPURPOSE\tAGGREGATE\tPROBLEM")
				for _, p := range problems {
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%.12s\t%s\n", cell(p.member), cell(p.run), p.round, cell(p.purpose), cell(p.digest), cell(p.problem))
				}
				if err := w.Flush(); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "%d shares from %d members checked against %d recorded decryptions in %d runs: %d mismatches\n",
				len(shares), len(members), decryptions, len(runs), len(problems))
			if len(problems) > 0 {
				return errMembersMismatch
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&storeSetting, "store", envOr("FEDPROP_STORE", ""), "the coordinator's store: a bbolt file or a postgres:// DSN (env FEDPROP_STORE)")
	return cmd
}

// readRuns reads, from the coordinator's store, the record of every run the shares name.
func readRuns(ctx context.Context, setting string, shares []client.ShareRecord) (map[string]coordinator.RunState, error) {
	var st store.Store
	if postgres.IsDSN(setting) {
		s, err := postgres.Open(ctx, setting, postgres.Options{})
		if err != nil {
			return nil, err
		}
		st = s
	} else {
		// bolt.Open would create a missing file: an audit reads only what exists.
		if _, err := os.Stat(setting); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		s, err := bolt.Open(setting)
		if err != nil {
			return nil, err
		}
		st = s
	}
	defer st.Close()
	runs := map[string]coordinator.RunState{}
	for _, s := range shares {
		if _, done := runs[s.Run]; done {
			continue
		}
		r, err := coordinator.Records{Store: st}.Run(ctx, s.Run)
		if errors.Is(err, coordinator.ErrNotFound) {
			continue // reported by compareShareLogs
		}
		if err != nil {
			return nil, err
		}
		runs[s.Run] = r
	}
	return runs, nil
}

// mismatch is one disagreement between a member's log and the coordinator's record.
type mismatch struct {
	member, run, purpose, digest string
	round                        int
	problem                      string
}

// compareShareLogs matches every share against the coordinator's record of its run, and the
// coordinator's records of each run against its own min_contributors.
func compareShareLogs(shares []client.ShareRecord, runs map[string]coordinator.RunState) []mismatch {
	var out []mismatch
	for _, s := range shares {
		bad := func(format string, args ...any) {
			out = append(out, mismatch{member: s.Member, run: s.Run, round: s.Round, purpose: s.Purpose.String(), digest: s.Digest, problem: fmt.Sprintf(format, args...)})
		}
		run, ok := runs[s.Run]
		if !ok {
			bad("the coordinator's store has no run %s", s.Run)
			continue
		}
		i := slices.IndexFunc(run.Decryptions, func(d coordinator.DecryptionRecord) bool { return d.Digest == s.Digest })
		if i < 0 {
			bad("the member gave a share for an aggregate the coordinator does not record")
			continue
		}
		d := run.Decryptions[i]
		if d.Round != s.Round || d.Purpose != s.Purpose.String() {
			bad("the coordinator records this aggregate as the %s aggregate of round %d", d.Purpose, d.Round)
		}
		if !slices.Equal(d.Contributors, s.ContributorIDs) {
			onlyMember, onlyCoordinator := difference(s.ContributorIDs, d.Contributors), difference(d.Contributors, s.ContributorIDs)
			bad("contributors differ: %d in the member's log, %d in the coordinator's record; only in the log: %s; only in the record: %s",
				len(s.ContributorIDs), len(d.Contributors), names(onlyMember), names(onlyCoordinator))
		}
		if !slices.ContainsFunc(d.Active, func(a []int) bool { return slices.Equal(a, s.Active) }) {
			bad("the member answered in active set %v, the coordinator records %v", s.Active, d.Active)
		}
	}
	ids := make([]string, 0, len(runs))
	for id := range runs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		run := runs[id]
		minimum := run.Config.SecureAggregation.MinContributors
		for j, b := range run.Decryptions {
			for _, a := range run.Decryptions[:j] {
				if a.Purpose != b.Purpose {
					continue
				}
				if err := task.CheckDifference(b.ContributorSet(), a.ContributorSet(), minimum); err != nil {
					out = append(out, mismatch{member: "(coordinator)", run: id, round: b.Round, purpose: b.Purpose, digest: b.Digest,
						problem: fmt.Sprintf("asked after the aggregate of round %d (%.12s): %v", a.Round, a.Digest, err)})
				}
			}
		}
	}
	return out
}

// difference lists the ids in a that are not in b.
func difference(a, b []string) []string {
	in := make(map[string]bool, len(b))
	for _, id := range b {
		in[id] = true
	}
	var out []string
	for _, id := range a {
		if !in[id] {
			out = append(out, id)
		}
	}
	return out
}

// names is a short list of ids for one table cell.
func names(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	if len(ids) > 5 {
		return strings.Join(ids[:5], ",") + fmt.Sprintf(" and %d more", len(ids)-5)
	}
	return strings.Join(ids, ",")
}
