package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/release/modelfile"
)

// explainReport is what `fedprop model explain --format json` writes.
type explainReport struct {
	Model      explainModel          `json:"model"`
	Records    []explain.Explanation `json:"records"`
	Importance []explain.Importance  `json:"importance"`
}

type explainModel struct {
	Version uint64 `json:"version"`
	RunID   string `json:"run_id"`
	Schema  string `json:"schema"`
	Target  string `json:"target"`
}

func newExplainCmd(g *globals) *cobra.Command {
	var modelPath, dataPath, format, out string
	var top int
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Explain a pulled model's scores: per record, the features that raised and lowered it most",
		Long: `Explain scores each record of a CSV with a pulled model and lists the features whose
contributions to the log-odds raised and lowered its score most: a numeric feature contributes
its coefficient times its standardised value, a categorical feature its category's coefficient;
the intercept plus all contributions is the record's log-odds. It ends with the global importance
of each feature over the file: the standard deviation of its contribution across the records.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if modelPath == "" || dataPath == "" {
				return usagef("--model and --data are required")
			}
			if format != "text" && format != "json" {
				return usagef("--format: %q is not text or json", format)
			}
			if top < 1 {
				return usagef("--top: %d is not a positive number", top)
			}
			doc, ds, err := loadForScoring(cmd.Context(), modelPath, dataPath)
			if err != nil {
				return err
			}
			x, err := explain.New(doc)
			if err != nil {
				return fmt.Errorf("explain %s: %w", modelPath, err)
			}
			records, err := x.Explain(ds, top)
			if err != nil {
				return err
			}
			var importance []explain.Importance
			if ds.Len() > 0 {
				sums := x.NewImportanceSums()
				if err := x.AddImportance(&sums, ds); err != nil {
					return err
				}
				if importance, err = x.Importance(sums); err != nil {
					return err
				}
			}

			w, closeOut, err := openOutput(g, out)
			if err != nil {
				return err
			}
			defer closeOut()
			bw := bufio.NewWriter(w)
			target := doc.Schema.Label.Column + "=" + doc.Schema.Label.Positive
			if format == "json" {
				enc := json.NewEncoder(bw)
				enc.SetIndent("", "  ")
				err = enc.Encode(explainReport{
					Model:   explainModel{Version: doc.Version, RunID: doc.RunID, Schema: doc.Schema.Name, Target: target},
					Records: records, Importance: importance,
				})
			} else {
				err = writeExplanations(bw, doc, target, records, importance)
			}
			if err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if ds.ExcludedNoConsent > 0 {
				fmt.Fprintf(g.stderr, "%d rows without consent for %s were not explained\n", ds.ExcludedNoConsent, doc.Schema.Consent.Purpose)
			}
			fmt.Fprintf(g.stderr, "explained %d rows with model version %d\n", len(records), doc.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&modelPath, "model", "", "pulled model document (model.json)")
	cmd.Flags().StringVar(&dataPath, "data", "", "CSV to explain (the label column may be absent)")
	cmd.Flags().IntVar(&top, "top", 3, "features listed per record in each direction")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	cmd.Flags().StringVar(&out, "out", "-", "output file (- for standard output)")
	return cmd
}

// writeExplanations writes the text report: one block per record, then global importance.
func writeExplanations(w io.Writer, doc *modelfile.Document, target string, records []explain.Explanation, importance []explain.Importance) error {
	fmt.Fprintf(w, "model version %d (run %s, schema %s): score = P(%s), log-odds = intercept %s + contributions\n\n",
		doc.Version, doc.RunID, doc.Schema.Name, target, signed(doc.Intercept))
	for _, r := range records {
		fmt.Fprintf(w, "line %d  score %.4f  log-odds %s\n", r.Line, r.Score, signed(r.LogOdds))
		fmt.Fprintf(w, "  raised:  %s\n", contributionList(r.Raised))
		fmt.Fprintf(w, "  lowered: %s\n", contributionList(r.Lowered))
	}
	if len(importance) == 0 {
		_, err := fmt.Fprintln(w, "\nno rows: no global importance")
		return err
	}
	fmt.Fprintf(w, "\nglobal feature importance over %d rows (standard deviation of each feature's contribution to the log-odds):\n", len(records))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FEATURE\tKIND\tIMPORTANCE\tSHARE")
	for _, m := range importance {
		fmt.Fprintf(tw, "  %s\t%s\t%.4f\t%.1f%%\n", m.Feature, m.Kind, m.Importance, 100*m.Share)
	}
	return tw.Flush()
}

func contributionList(cs []explain.Contribution) string {
	if len(cs) == 0 {
		return "-"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Feature + "=" + c.Value + " " + signed(c.Contribution)
	}
	return strings.Join(parts, ", ")
}

// signed formats a log-odds figure with its sign and three decimals.
func signed(x float64) string {
	s := strconv.FormatFloat(x, 'f', 3, 64)
	if x >= 0 {
		s = "+" + s
	}
	return s
}
