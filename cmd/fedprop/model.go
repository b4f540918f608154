package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/dataset/parquet"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/export"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

func newModelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "List, pull and score committed global models",
	}
	var addr string
	cmd.PersistentFlags().StringVar(&addr, "coordinator", envOr("FEDPROP_COORDINATOR", "127.0.0.1:7070"), "coordinator address (env FEDPROP_COORDINATOR)")
	var dialer modelDialer // mutual TLS flags, see ca.go
	dialer.flags(cmd.PersistentFlags())

	var (
		limit      int
		listOutput string
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List committed model versions, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit: must be 0 (every version) or more, got %d", limit)
			}
			if listOutput != "table" && listOutput != "json" {
				return usagef("--output: %q is not table or json", listOutput)
			}
			conn, err := dialer.dial(cmd, g, addr)
			if err != nil {
				return err
			}
			defer conn.Close()
			models, err := grpctransport.NewModelClient(conn).List(cmd.Context())
			if err != nil {
				return fmt.Errorf("list models at %s: %w", addr, err)
			}
			return writeModelList(g.stdout, models, limit, listOutput)
		},
	}
	list.Flags().IntVar(&limit, "limit", 20, "list the newest N versions (0: every version)")
	list.Flags().StringVarP(&listOutput, "output", "o", "table", "table, or json (machine-readable)")

	var (
		versionFlag, out, format string
		candidate                bool
	)
	pull := &cobra.Command{
		Use:   "pull",
		Short: "Pull a model version with everything needed to score (the latest approved by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := parseVersion(versionFlag)
			if err != nil {
				return err
			}
			if format != "json" && format != "pmml" && format != "onnx" {
				return usagef("--format: %q is not json, pmml or onnx", format)
			}
			conn, err := dialer.dial(cmd, g, addr)
			if err != nil {
				return err
			}
			defer conn.Close()
			doc, raw, err := grpctransport.NewModelClient(conn).Pull(cmd.Context(), v, candidate)
			if err != nil {
				return withCandidateHint(fmt.Errorf("pull version %s from %s: %w", versionFlag, addr, err), v, candidate)
			}
			switch format {
			case "pmml":
				raw, err = export.PMML(doc)
			case "onnx":
				raw, err = export.ONNX(doc)
			}
			if err != nil {
				return fmt.Errorf("export version %d as %s: %w", doc.Version, format, err)
			}
			if out == "" || out == "-" {
				_, err = g.stdout.Write(raw)
				return err
			}
			if err := os.WriteFile(out, raw, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "pulled version %d (run %s, round %d, %d features) as %s to %s\n", doc.Version, doc.RunID, doc.Round, len(doc.Features), format, out)
			if p := doc.Privacy; p != nil {
				fmt.Fprintf(g.stderr, "differential privacy: %s, epsilon %.4g at delta %g (z %.4g, C %.4g, q %g, %d steps)\n",
					p.Mechanism, p.Epsilon, p.Delta, p.NoiseMultiplier, p.ClipNorm, p.SamplingRate, p.Steps)
			}
			return nil
		},
	}
	pull.Flags().StringVar(&versionFlag, "version", "latest", "version number or latest (the latest approved one)")
	pull.Flags().StringVar(&out, "out", "model.json", "output file (- for standard output)")
	pull.Flags().StringVar(&format, "format", "json", "json (the model document), pmml (PMML 4.4) or onnx")
	pull.Flags().BoolVar(&candidate, "candidate", false, "allow a version no approver has approved yet")

	var cardFormat string
	card := &cobra.Command{
		Use:   "card VERSION|latest",
		Short: "Print a version's model card: how it was made, how it performs, fairness, privacy, lineage, approval",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := parseVersion(args[0])
			if err != nil {
				return err
			}
			if cardFormat != "md" && cardFormat != "json" {
				return usagef("--format: %q is not md or json", cardFormat)
			}
			conn, err := dialer.dial(cmd, g, addr)
			if err != nil {
				return err
			}
			defer conn.Close()
			raw, err := grpctransport.NewModelClient(conn).Card(cmd.Context(), v)
			if err != nil {
				return fmt.Errorf("model card of version %s from %s: %w", args[0], addr, err)
			}
			if cardFormat == "json" {
				_, err = g.stdout.Write(raw)
				return err
			}
			c, err := modelcard.Decode(bytes.NewReader(raw))
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(c.Markdown())
			return err
		},
	}
	card.Flags().StringVar(&cardFormat, "format", "md", "md (a page to file) or json")

	review := func(approve bool) *cobra.Command {
		var reason string
		var override bool
		use, short := "reject VERSION --reason TEXT", "Reject a candidate version (needs the approver role; signed with the approver's key)"
		if approve {
			use, short = "approve VERSION --reason TEXT", "Approve a candidate version for release (needs the approver role; signed with the approver's key)"
		}
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Long: short + `.

The decision is signed on this machine with the private key of the approver's certificate
(--tls-key), over the decision, the version, the version's content hash (fetched from the
coordinator first) and the reason; the coordinator checks the signature against the CA, and that
the signer is the approver calling, and keeps it with the decision in the audit log, where
fedprop audit verify checks it again.`,
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				v, err := parseVersion(args[0])
				if err != nil || v == 0 {
					return usagef("VERSION: %q is not a version number", args[0])
				}
				if reason == "" {
					return usagef("--reason is required: every decision is recorded with its reason")
				}
				if missing := dialer.files.Missing(); len(missing) > 0 {
					return usagef("%s: required: a decision is signed with the key of the approver's own certificate (an approver's kit from fedprop ca issue)",
						strings.Join(missing, ", "))
				}
				signer, err := pki.LoadSigner(dialer.files)
				if err != nil {
					return usagef("%v", err)
				}
				conn, err := dialer.dial(cmd, g, addr)
				if err != nil {
					return err
				}
				defer conn.Close()
				action := audit.ActionReject
				if approve {
					action = audit.ActionApprove
					if override {
						action = audit.ActionOverride
					}
				}
				r, err := grpctransport.NewOversightClient(conn).Decide(cmd.Context(), signer, action, v, reason)
				if err != nil {
					return fmt.Errorf("review version %d at %s: %w", v, addr, err)
				}
				fmt.Fprintf(g.stdout, "version %d is %s, signed by %s (audit entry %d, %s)\n", r.Version, r.Status, signer.Identity(), r.AuditSeq, r.AuditHash)
				return nil
			},
		}
		c.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
		if approve {
			c.Flags().BoolVar(&override, "override", false, "approve a version the fairness policy flagged; the reason must say why")
		}
		return c
	}

	var modelPath, dataPath, scoreOut string
	score := &cobra.Command{
		Use:   "score",
		Short: "Score a CSV with a pulled model: one probability per row",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modelPath == "" || dataPath == "" {
				return usagef("--model and --data are required")
			}
			doc, ds, err := loadForScoring(cmd.Context(), modelPath, dataPath)
			if err != nil {
				return err
			}
			scores, err := doc.Score(ds)
			if err != nil {
				return err
			}
			w, closeOut, err := openOutput(g, scoreOut)
			if err != nil {
				return err
			}
			defer closeOut()
			bw := bufio.NewWriter(w)
			fmt.Fprintln(bw, "line,probability")
			for i, p := range scores {
				fmt.Fprintf(bw, "%d,%s\n", ds.Line[i], strconv.FormatFloat(p, 'g', 17, 64))
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if ds.ExcludedNoConsent > 0 {
				fmt.Fprintf(g.stderr, "%d rows without consent for %s were not scored\n", ds.ExcludedNoConsent, doc.Schema.Consent.Purpose)
			}
			fmt.Fprintf(g.stderr, "scored %d rows with model version %d\n", len(scores), doc.Version)
			return nil
		},
	}
	score.Flags().StringVar(&modelPath, "model", "", "pulled model document (model.json)")
	score.Flags().StringVar(&dataPath, "data", "", "CSV to score (the label column may be absent)")
	score.Flags().StringVar(&scoreOut, "out", "-", "output CSV (- for standard output)")

	cmd.AddCommand(list, pull, score, card, review(true), review(false))
	cmd.AddCommand(newExplainCmd(g))
	return cmd
}

// modelList is `fedprop model list --output json`: a stable, machine-readable document.
type modelList struct {
	// Total is the number of committed versions; More how many of them, the oldest, the
	// --limit left out.
	Total    int              `json:"total"`
	More     int              `json:"more"`
	Versions []modelListEntry `json:"versions"`
}

// modelListEntry is one version of a modelList. A metric is null when the version has no
// federated evaluation (the table's "-").
type modelListEntry struct {
	Version  uint64    `json:"version"`
	RunID    string    `json:"run_id"`
	Round    int       `json:"round"`
	Created  time.Time `json:"created"`
	AUC      *float64  `json:"auc"`
	LogLoss  *float64  `json:"log_loss"`
	Accuracy *float64  `json:"accuracy"`
	Status   string    `json:"status"`
}

// writeModelList writes the newest limit versions (every one for 0), newest first, as a table
// followed by a line saying how many older ones were left out, or as a modelList (json).
func writeModelList(w io.Writer, models []grpctransport.ModelInfo, limit int, output string) error {
	// Newest first whatever order the coordinator sends: an operator looks for the latest.
	models = slices.Clone(models)
	slices.SortStableFunc(models, func(a, b grpctransport.ModelInfo) int { return cmp.Compare(b.Version, a.Version) })
	total := len(models)
	if limit > 0 && limit < total {
		models = models[:limit]
	}
	more := total - len(models)
	if output == "json" {
		doc := modelList{Total: total, More: more, Versions: make([]modelListEntry, 0, len(models))}
		for _, m := range models {
			doc.Versions = append(doc.Versions, modelListEntry{Version: m.Version, RunID: m.RunID, Round: m.Round, Created: m.Created,
				AUC: optional(m.AUC), LogLoss: optional(m.LogLoss), Accuracy: optional(m.Accuracy), Status: m.Status})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tRUN\tROUND\tCREATED\tAUC\tLOG LOSS\tACCURACY\tSTATUS")
	for _, m := range models {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Version, m.RunID, m.Round, m.Created.Format(time.RFC3339),
			metric(m.AUC), metric(m.LogLoss), metric(m.Accuracy), m.Status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if more > 0 {
		noun := "versions"
		if more == 1 {
			noun = "version"
		}
		_, err := fmt.Fprintf(w, "... and %d older %s (--limit 0 lists every version)\n", more, noun)
		return err
	}
	return nil
}

// optional is a metric for JSON: nil when absent (0, as metric prints "-").
func optional(x float64) *float64 {
	if x == 0 {
		return nil
	}
	return &x
}

// withCandidateHint adds to a failed pull of an approved version (candidate false) the flag
// that pulls one nobody has approved yet, when that is why it failed: the version asked for
// is not approved (coordinator.ErrNotApproved), or, for the latest (version 0), no version is
// (the coordinator answers coordinator.ErrNotFound: there is no approved one to find).
func withCandidateHint(err error, version uint64, candidate bool) error {
	switch {
	case candidate:
		return err
	case errors.Is(err, coordinator.ErrNotApproved):
		return fmt.Errorf("%w\nhint: a version must be approved before it is released; add --candidate to pull it anyway, for review", err)
	case version == 0 && errors.Is(err, coordinator.ErrNotFound):
		return fmt.Errorf("%w\nhint: no version is approved yet; add --candidate to pull the latest version awaiting approval, for review", err)
	}
	return err
}

func metric(x float64) string {
	if x == 0 {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 4, 64)
}

func parseVersion(s string) (uint64, error) {
	if strings.EqualFold(s, "latest") || s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, usagef("--version: %q is not a version number or latest", s)
	}
	return v, nil
}

// openOutput is standard output for "" or "-", otherwise the file at path, created afresh.
func openOutput(g *globals, path string) (io.Writer, func() error, error) {
	if path == "" || path == "-" {
		return g.stdout, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

// loadForScoring reads a pulled model and a CSV or Parquet file to score or explain with it: the schema's
// consent rule applies, and the label column may be absent.
func loadForScoring(ctx context.Context, modelPath, dataPath string) (*modelfile.Document, *dataset.Dataset, error) {
	doc, err := modelfile.Load(modelPath)
	if err != nil {
		return nil, nil, err
	}
	// CSV or Parquet, by the schema's format or the file's extension.
	ds, err := parquet.Read(ctx, dataPath, doc.Schema, dataset.ReadOptions{LabelOptional: true})
	if err != nil {
		return nil, nil, err
	}
	return doc, ds, nil
}
