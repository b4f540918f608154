package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/release/modelfile"
)

// The report of a model explained by its own attributions (model.Model.ExplainAll) rather
// than per-column effects against a chosen reference (package explain): today a tree model,
// whose attributions are exact TreeSHAP values; its types keep the names of that report.

// treeContribution is one feature's contribution to a record's margin.
type treeContribution struct {
	Feature      string  `json:"feature"`
	Value        string  `json:"value"`
	Contribution float64 `json:"contribution"`
}

// treeRecord is one record's explanation: its score, its log-odds, and the features that
// raised and lowered it most; the expected log-odds plus every feature's contribution is its
// log-odds.
type treeRecord struct {
	Line    int                `json:"line"`
	Score   float64            `json:"score"`
	LogOdds float64            `json:"log_odds"`
	Raised  []treeContribution `json:"raised"`
	Lowered []treeContribution `json:"lowered"`
}

// treeImportance is a feature's global importance: model.Model.Importance over the file (a
// tree model's mean |SHAP|) and its share of the model's total split gain (0 for a model
// without one).
type treeImportance struct {
	Feature     string  `json:"feature"`
	MeanAbsSHAP float64 `json:"mean_abs_shap"`
	GainShare   float64 `json:"gain_share"`
}

type treeReport struct {
	Model           explainModel     `json:"model"`
	ExpectedLogOdds float64          `json:"expected_log_odds"`
	Reference       string           `json:"reference"`
	Records         []treeRecord     `json:"records"`
	Importance      []treeImportance `json:"importance"`
}

// gainImportance is a model that also states each column's share in its training gain (a
// tree model: the total gain of its splits on the column).
type gainImportance interface {
	GainImportance() []float64
}

// explainAttributions explains the scores of a model without per-column effects with its own
// explanations (model.Model.ExplainAll; a tree model's are exact path-dependent TreeSHAP,
// Lundberg et al. 2018): per record, the contributions add up to its log-odds minus the
// model's expected log-odds.
func explainAttributions(w io.Writer, doc *modelfile.Document, m model.Model, ds *dataset.Dataset, top int, format string) (int, error) {
	xs, err := m.ExplainAll(ds)
	if err != nil {
		return 0, err
	}
	desc, cols := m.Describe(), m.Columns()
	rep := treeReport{Model: explainModel{Version: doc.Version, RunID: doc.RunID, Schema: doc.Schema.Name,
		Target: doc.Schema.Label.Column + "=" + doc.Schema.Label.Positive}, ExpectedLogOdds: desc.Expected, Reference: desc.Reference}
	for i, x := range xs {
		r := treeRecord{Line: ds.Line[i], LogOdds: x.Margin, Score: 1 / (1 + math.Exp(-x.Margin))}
		var cs []treeContribution
		for f, v := range x.Values {
			if v != 0 {
				cs = append(cs, treeContribution{Feature: cols[f].Name, Value: treeValue(ds, i, cols[f]), Contribution: v})
			}
		}
		slices.SortStableFunc(cs, func(a, b treeContribution) int { return cmp.Compare(b.Contribution, a.Contribution) })
		for _, c := range cs {
			if c.Contribution > 0 && len(r.Raised) < top {
				r.Raised = append(r.Raised, c)
			}
		}
		for k := len(cs) - 1; k >= 0; k-- {
			if cs[k].Contribution < 0 && len(r.Lowered) < top {
				r.Lowered = append(r.Lowered, cs[k])
			}
		}
		rep.Records = append(rep.Records, r)
	}
	importance := make([]float64, len(cols)) // no rows: none measured
	if len(xs) > 0 {
		if importance, err = m.Importance(xs); err != nil {
			return 0, err
		}
	}
	var gain []float64
	if g, ok := m.(gainImportance); ok {
		gain = g.GainImportance()
	}
	total := 0.0
	for _, g := range gain {
		total += g
	}
	for f, c := range cols {
		imp := treeImportance{Feature: c.Name, MeanAbsSHAP: importance[f]}
		if total > 0 {
			imp.GainShare = gain[f] / total
		}
		rep.Importance = append(rep.Importance, imp)
	}
	slices.SortStableFunc(rep.Importance, func(a, b treeImportance) int { return cmp.Compare(b.MeanAbsSHAP, a.MeanAbsSHAP) })
	bw := bufio.NewWriter(w)
	if format == "json" {
		enc := json.NewEncoder(bw)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 0, err
		}
		return len(xs), bw.Flush()
	}
	size := ""
	if desc.Trees > 0 {
		size = fmt.Sprintf("%d trees; ", desc.Trees)
	}
	fmt.Fprintf(bw, "model version %d (run %s, schema %s): %sscore = P(%s); a record's log-odds = the expected log-odds + its contributions\n",
		doc.Version, doc.RunID, doc.Schema.Name, size, rep.Model.Target)
	fmt.Fprintf(bw, "reference: log-odds %s (score %.4f): %s\n\n", signed(rep.ExpectedLogOdds), sigmoid(rep.ExpectedLogOdds), rep.Reference)
	list := func(cs []treeContribution) string {
		if len(cs) == 0 {
			return "-"
		}
		s := ""
		for i, c := range cs {
			if i > 0 {
				s += ", "
			}
			s += c.Feature + "=" + c.Value + " " + signed(c.Contribution)
		}
		return s
	}
	for _, r := range rep.Records {
		fmt.Fprintf(bw, "line %d  score %.4f  log-odds %s\n", r.Line, r.Score, signed(r.LogOdds))
		fmt.Fprintf(bw, "  raised:  %s\n", list(r.Raised))
		fmt.Fprintf(bw, "  lowered: %s\n", list(r.Lowered))
	}
	if len(xs) > 0 {
		fmt.Fprintf(bw, "\nglobal feature importance over %d rows (mean |contribution| to the log-odds; share of the trees' split gain):\n", len(xs))
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  FEATURE\tMEAN |SHAP|\tGAIN SHARE")
		for _, imp := range rep.Importance {
			fmt.Fprintf(tw, "  %s\t%.4f\t%.1f%%\n", imp.Feature, imp.MeanAbsSHAP, 100*imp.GainShare)
		}
		if err := tw.Flush(); err != nil {
			return 0, err
		}
	}
	return len(xs), bw.Flush()
}

// treeValue is a record's value of a feature column, as the record has it.
func treeValue(ds *dataset.Dataset, i int, f model.Column) string {
	if f.Kind == model.Numeric {
		for j, name := range ds.Schema.Numeric {
			if name == f.Name {
				return strconv.FormatFloat(ds.Numeric[i][j], 'g', -1, 64)
			}
		}
		return "?"
	}
	for j, c := range ds.Schema.Categorical {
		if c.Column == f.Name {
			if k := int(ds.Category[i][j]); k >= 0 && k < len(c.Values) {
				return c.Values[k]
			}
			return "other"
		}
	}
	return "?"
}
