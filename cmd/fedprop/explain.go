package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/release/modelfile"
)

// explainReport is what `fedprop model explain --format json` writes.
type explainReport struct {
	Model explainModel `json:"model"`
	// Reference is what every contribution is measured against (explain.Reference).
	Reference  explainReference      `json:"reference"`
	Records    []explain.Explanation `json:"records"`
	Importance []explain.Importance  `json:"importance"`
}

// explainReference is the reference of a report, its expected effects named by feature.
type explainReference struct {
	Description     string             `json:"description"`
	ExpectedLogOdds float64            `json:"expected_log_odds"`
	Expected        map[string]float64 `json:"expected"`
}

type explainModel struct {
	Version uint64 `json:"version"`
	RunID   string `json:"run_id"`
	Schema  string `json:"schema"`
	Target  string `json:"target"`
}

func newExplainCmd(g *globals) *cobra.Command {
	var modelPath, dataPath, format, out, reference string
	var top int
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Explain a pulled model's scores: per record, the features that raised and lowered it most",
		Long: `Explain scores each record of a CSV with a pulled model and lists the features whose
contributions raised and lowered its score most against a reference: a numeric feature's effect
on the log-odds is its coefficient times its standardised value, a categorical feature's its
category's coefficient, and a contribution is that effect minus the feature's expected effect in
the reference. The reference's log-odds plus all contributions is the record's log-odds.

--reference data (the default) measures numeric features from the training population's mean
(the federated statistics' standardisation) and categorical features from their mean category
effect weighted by how often each category occurs in the file explained: the model document
carries no federated category frequencies. --reference zero measures categorical features
against a coefficient of 0, so a category shows its own coefficient. The output names the
reference. It ends with the global importance of each feature over the file: the standard
deviation of its effect across the records, which no reference changes.`,
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
			if reference != "data" && reference != "zero" {
				return usagef("--reference: %q is not data or zero", reference)
			}
			doc, ds, err := loadForScoring(cmd.Context(), modelPath, dataPath)
			if err != nil {
				return err
			}
			x, err := explain.New(doc)
			if errors.Is(err, explain.ErrUnsupported) {
				// No per-column effects (a tree model): the model's own explanations, against
				// its own reference.
				m, err := doc.Model()
				if err != nil {
					return fmt.Errorf("explain %s: %w", modelPath, err)
				}
				w, closeOut, err := openOutput(g, out)
				if err != nil {
					return err
				}
				defer closeOut()
				n, err := explainAttributions(w, doc, m, ds, top, format)
				if err != nil {
					return fmt.Errorf("explain %s: %w", modelPath, err)
				}
				fmt.Fprintf(g.stderr, "explained %d rows with model version %d (%s)\n", n, doc.Version, m.Describe().Attribution)
				return nil
			}
			if err != nil {
				return fmt.Errorf("explain %s: %w", modelPath, err)
			}
			if x, err = withDataReference(x, ds, reference, dataPath); err != nil {
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
					Model:     explainModel{Version: doc.Version, RunID: doc.RunID, Schema: doc.Schema.Name, Target: target},
					Reference: reportReference(x),
					Records:   records, Importance: importance,
				})
			} else {
				err = writeExplanations(bw, doc, x.Intercept(), x.Reference(), target, records, importance)
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
	cmd.Flags().StringVar(&reference, "reference", "data", "what contributions are measured against: data (training mean; category frequencies of --data) or zero")
	cmd.Flags().StringVar(&out, "out", "-", "output file (- for standard output)")
	return cmd
}

// withDataReference measures x's contributions against the reference named by --reference:
// "zero" keeps explain.New's, "data" weights each categorical feature's category effects by
// their frequencies in ds. The model document carries no federated category frequencies, so the
// file explained is the one population at hand; a file without rows keeps the zero reference.
func withDataReference(x *explain.Explainer, ds *dataset.Dataset, reference, dataPath string) (*explain.Explainer, error) {
	if reference == "zero" || ds.Len() == 0 {
		return x, nil
	}
	shares, err := x.CategorySharesOf(ds)
	if err != nil {
		return nil, err
	}
	ref, err := x.TrainingReference(shares, fmt.Sprintf("their frequencies in the %d records of %s (the model document carries no federated category frequencies)",
		ds.Len(), filepath.Base(dataPath)))
	if err != nil {
		return nil, err
	}
	return x.WithReference(ref)
}

// reportReference is x's reference as the JSON report shows it.
func reportReference(x *explain.Explainer) explainReference {
	ref := x.Reference()
	out := explainReference{Description: ref.Description, ExpectedLogOdds: ref.ExpectedLogOdds, Expected: map[string]float64{}}
	for k, f := range x.Features() {
		out.Expected[f.Name] = ref.Expected[k]
	}
	return out
}

// writeExplanations writes the text report: the reference, one block per record, then global
// importance.
func writeExplanations(w io.Writer, doc *modelfile.Document, intercept float64, ref explain.Reference, target string, records []explain.Explanation, importance []explain.Importance) error {
	fmt.Fprintf(w, "model version %d (run %s, schema %s): score = P(%s); a record's log-odds = the reference's + its contributions\n",
		doc.Version, doc.RunID, doc.Schema.Name, target)
	fmt.Fprintf(w, "reference: log-odds %s (score %.4f; intercept %s): %s\n\n", signed(ref.ExpectedLogOdds), sigmoid(ref.ExpectedLogOdds),
		signed(intercept), ref.Description)
	for _, r := range records {
		fmt.Fprintf(w, "line %d  score %.4f  log-odds %s\n", r.Line, r.Score, signed(r.LogOdds))
		fmt.Fprintf(w, "  raised:  %s\n", contributionList(r.Raised))
		fmt.Fprintf(w, "  lowered: %s\n", contributionList(r.Lowered))
	}
	if len(importance) == 0 {
		_, err := fmt.Fprintln(w, "\nno rows: no global importance")
		return err
	}
	fmt.Fprintf(w, "\nglobal feature importance over %d rows (standard deviation of each feature's effect on the log-odds):\n", len(records))
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

// sigmoid is the score of a log-odds.
func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// signed formats a log-odds figure with its sign and three decimals.
func signed(x float64) string {
	s := strconv.FormatFloat(x, 'f', 3, 64)
	if x >= 0 {
		s = "+" + s
	}
	return s
}
