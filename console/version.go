package console

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
)

type featureRow struct {
	Name, Kind, Encoding, Share string
	Sensitive                   bool
}

type nameValue struct{ Name, Value string }

type calibrationRow struct{ Band, N, Predicted, Observed string }

type groupRow struct {
	Group, N, Positives, AUC, PositiveRate, TPR string
	Suppressed                                  bool
}

type gapRow struct {
	Measure, Gap, Between, Limit string
	Fail, Judged                 bool
}

type attributeView struct {
	Attribute, Threshold string
	Groups               []groupRow
	Gaps                 []gapRow
}

// diffRow is one figure of two versions; Dir says whether the change is better ("up"),
// worse ("down") or neither ("flat"), for the change's colour beside its sign.
type diffRow struct{ Name, Old, New, Delta, Dir string }

type versionDiff struct {
	Base                 uint64
	Same                 bool
	Metrics, Gaps, Model []diffRow
	ModelCaption         string
}

type versionData struct {
	Card             *modelcard.Card
	ContentHash      string
	Flagged, Audited bool
	Features         []featureRow
	Coefficients     []nameValue
	Metrics          []nameValue
	Calibration      *chart
	CalibrationRows  []calibrationRow
	Fairness         []attributeView
	PolicyText       string
	Budget           string
	Diff             *versionDiff
}

func (c *Console) version(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	n, ok := versionParam(r)
	if !ok {
		c.fail(w, s, http.StatusNotFound, "No such version", "Not a version number: "+r.PathValue("n"), "")
		return
	}
	card, err := c.cfg.Backend.ModelCard(ctx, n)
	if err != nil {
		c.versionError(w, s, n, err)
		return
	}
	doc, err := c.cfg.Backend.ModelDocument(ctx, n)
	if err != nil {
		c.versionError(w, s, n, err)
		return
	}
	subject, err := c.cfg.Backend.ReviewSubject(ctx, n)
	if err != nil {
		c.versionError(w, s, n, err)
		return
	}
	d := versionData{Card: card, ContentHash: subject.ContentHash, Flagged: subject.Flagged, Audited: card.Fairness != nil && card.Fairness.Verdict != nil}
	for _, f := range card.Features {
		row := featureRow{Name: f.Name, Kind: string(f.Kind), Sensitive: f.Sensitive, Share: "—"}
		switch {
		case len(f.Values) > 0:
			row.Encoding = "one-hot: " + strings.Join(f.Values, ", ")
			if f.Unseen != "" {
				row.Encoding += "; unseen values: " + f.Unseen
			}
		case f.Std != 0:
			row.Encoding = fmt.Sprintf("standardised: mean %.4g, sd %.4g", f.Mean, f.Std)
		default:
			row.Encoding = "as given"
		}
		if f.Share != nil {
			row.Share = fmtNum(*f.Share*100, 1) + " %"
		}
		d.Features = append(d.Features, row)
	}
	if doc.Trees == nil {
		d.Coefficients = append(d.Coefficients, nameValue{"intercept", fmtNum(doc.Intercept, 4)})
		for i, f := range doc.Features {
			if i < len(doc.Coefficients) {
				d.Coefficients = append(d.Coefficients, nameValue{f, fmtNum(doc.Coefficients[i], 4)})
			}
		}
	}
	d.Metrics, d.Calibration, d.CalibrationRows = performance(card)
	d.Fairness, d.PolicyText = fairnessViews(card)
	if b := c.budget(ctx, card.Model.RunID); b > 0 {
		d.Budget = fmtNum(b, 3)
	}
	if d.Diff, err = c.diff(ctx, n, card, doc); err != nil {
		c.internal(w, s, err)
		return
	}
	c.render(w, http.StatusOK, "version", view{Title: fmt.Sprintf("Version %d", n), Nav: "runs", Session: viewOf(s), Data: d})
}

// budget is a run's epsilon budget (0: none).
func (c *Console) budget(ctx context.Context, run string) float64 {
	st, err := c.cfg.Backend.Store().Run(ctx, run)
	if err != nil {
		return 0
	}
	return st.Config.Privacy.Epsilon
}

func finalECE(card *modelcard.Card) float64 {
	if f := card.Performance.Final; f != nil && f.ExpectedCalibrationError != nil {
		return *f.ExpectedCalibrationError
	}
	return math.NaN()
}

func performance(card *modelcard.Card) ([]nameValue, *chart, []calibrationRow) {
	f := card.Performance.Final
	if f == nil {
		return []nameValue{{"Federated evaluation", "none for this version"}}, nil, nil
	}
	m := f.Summary
	out := []nameValue{{"Held-out rows", fmtNum(m.N, 0)}, {"AUC", fmtNum(m.AUC, 4)}, {"Log loss", fmtNum(m.LogLoss, 4)},
		{"Accuracy at 0.5", fmtNum(m.Accuracy, 4)}, {"Brier score", fmtNum(m.Brier, 4)}, {"Expected calibration error", fmtNum(finalECE(card), 4)}}
	if f.AUCErrorBound != nil {
		out[1].Value += " (± " + fmtNum(*f.AUCErrorBound, 4) + " from score histograms)"
	}
	if len(f.Calibration) == 0 {
		return out, nil, nil
	}
	var xs, ys []float64
	var rows []calibrationRow
	for _, b := range f.Calibration {
		xs, ys = append(xs, b.MeanPredicted), append(ys, b.ObservedRate)
		rows = append(rows, calibrationRow{Band: fmt.Sprintf("%.3f – %.3f", b.Lower, b.Upper), N: fmtNum(b.N, 0),
			Predicted: fmtNum(b.MeanPredicted, 3), Observed: fmtNum(b.ObservedRate, 3)})
	}
	ch := drawChart(chartSpec{id: "calibration", title: "Observed rate against mean predicted score", xLabel: "mean predicted",
		note: "the diagonal is perfect calibration", xs: xs, ys: ys, xMin: 0, xMax: 1, yMin: 0, yMax: 1, diagonal: true})
	return out, &ch, rows
}

// policyIndex is the report's threshold the policy judges: its own, or the first.
func policyIndex(rep fairness.Report, v *fairness.Verdict) int {
	if v == nil || len(rep.Thresholds) == 0 {
		return 0
	}
	best := 0
	for i, t := range rep.Thresholds {
		if math.Abs(t-v.Policy.Threshold) < math.Abs(rep.Thresholds[best]-v.Policy.Threshold) {
			best = i
		}
	}
	return best
}

func fairnessViews(card *modelcard.Card) ([]attributeView, string) {
	if card.Fairness == nil {
		return nil, ""
	}
	rep, verdict := card.Fairness.Report, card.Fairness.Verdict
	idx := policyIndex(rep, verdict)
	text := "The run has no fairness policy: the gaps are shown, not judged."
	if verdict != nil {
		p := verdict.Policy
		text = fmt.Sprintf("Policy: demographic-parity gap at most %g and equal-opportunity gap at most %g, at decision threshold %g.",
			p.MaxDemographicParityGap, p.MaxEqualOpportunityGap, rep.Thresholds[idx])
		if verdict.Flagged {
			text += fmt.Sprintf(" Verdict: FLAGGED, %d gap(s) beyond the policy; approval needs an override with its reason.", len(verdict.Violations))
		} else {
			text += " Verdict: within the policy."
		}
	}
	var out []attributeView
	for _, a := range rep.Attributes {
		av := attributeView{Attribute: a.Attribute}
		if idx < len(rep.Thresholds) {
			av.Threshold = fmt.Sprintf("%g", rep.Thresholds[idx])
		}
		for _, g := range a.Groups {
			gr := groupRow{Group: g.Group, Suppressed: g.Suppressed, N: fmtNum(float64(g.N), 0), Positives: fmtNum(float64(g.Positives), 0),
				AUC: fmtNum(float64(g.AUC), 3), PositiveRate: "n/a", TPR: "n/a"}
			if idx < len(g.Rates) {
				gr.PositiveRate, gr.TPR = fmtNum(float64(g.Rates[idx].PositiveRate), 3), fmtNum(float64(g.Rates[idx].TruePositiveRate), 3)
			}
			av.Groups = append(av.Groups, gr)
		}
		if idx < len(a.Gaps) {
			gp := a.Gaps[idx]
			dp := gapRow{Measure: "Demographic parity difference", Gap: fmtNum(float64(gp.DemographicParity), 3),
				Between: gp.DemographicParityMax + " vs " + gp.DemographicParityMin, Limit: "—"}
			eo := gapRow{Measure: "Equal opportunity difference", Gap: fmtNum(float64(gp.EqualOpportunity), 3),
				Between: gp.EqualOpportunityMax + " vs " + gp.EqualOpportunityMin, Limit: "—"}
			if verdict != nil {
				dp.Judged, eo.Judged = true, true
				dp.Limit, eo.Limit = fmtNum(verdict.Policy.MaxDemographicParityGap, 3), fmtNum(verdict.Policy.MaxEqualOpportunityGap, 3)
				for _, v := range verdict.Violations {
					if v.Attribute != a.Attribute {
						continue
					}
					dp.Fail = dp.Fail || v.Metric == fairness.MetricDemographicParity
					eo.Fail = eo.Fail || v.Metric == fairness.MetricEqualOpportunity
				}
			}
			av.Gaps = []gapRow{dp, eo}
		}
		out = append(out, av)
	}
	return out, text
}

// diff compares version n with the latest approved version.
func (c *Console) diff(ctx context.Context, n uint64, card *modelcard.Card, doc *modelfile.Document) (*versionDiff, error) {
	base, same, err := c.approvedBase(ctx, n)
	if err != nil || base == 0 || same {
		return &versionDiff{Base: base, Same: same}, err
	}
	oldCard, err := c.cfg.Backend.ModelCard(ctx, base)
	if err != nil {
		return nil, err
	}
	oldDoc, err := c.cfg.Backend.ModelDocument(ctx, base)
	if err != nil {
		return nil, err
	}
	d := &versionDiff{Base: base}
	summary := func(cd *modelcard.Card) (auc, loss, acc, brier float64) {
		if f := cd.Performance.Final; f != nil {
			return f.Summary.AUC, f.Summary.LogLoss, f.Summary.Accuracy, f.Summary.Brier
		}
		nan := math.NaN()
		return nan, nan, nan, nan
	}
	oa, ol, oacc, ob := summary(oldCard)
	na, nl, nacc, nb := summary(card)
	d.Metrics = []diffRow{
		row("AUC", oa, na, 4, +1), row("Log loss", ol, nl, 4, -1), row("Accuracy at 0.5", oacc, nacc, 4, +1),
		row("Brier score", ob, nb, 4, -1), row("Expected calibration error", finalECE(oldCard), finalECE(card), 4, -1),
		row("Privacy spent (ε)", oldCard.Privacy.Epsilon, card.Privacy.Epsilon, 3, -1),
		row("Training contributors", float64(oldDoc.Contributors), float64(doc.Contributors), 0, 0),
	}
	d.Gaps = gapDiff(oldCard, card)
	if doc.Trees != nil || oldDoc.Trees != nil {
		d.ModelCaption = "Trees"
		count := func(dd *modelfile.Document) float64 {
			if dd.Trees == nil {
				return math.NaN()
			}
			return float64(len(dd.Trees.Trees))
		}
		d.Model = []diffRow{row("Trees", count(oldDoc), count(doc), 0, 0), row("Base score", oldCard.Model.Intercept, card.Model.Intercept, 4, 0)}
		return d, nil
	}
	d.ModelCaption = "Coefficients (standardised inputs)"
	d.Model = append(d.Model, row("intercept", oldDoc.Intercept, doc.Intercept, 4, 0))
	old := map[string]float64{}
	for i, f := range oldDoc.Features {
		if i < len(oldDoc.Coefficients) {
			old[f] = oldDoc.Coefficients[i]
		}
	}
	for i, f := range doc.Features {
		if i >= len(doc.Coefficients) {
			break
		}
		o, ok := old[f]
		if !ok {
			o = math.NaN()
		}
		d.Model = append(d.Model, row(f, o, doc.Coefficients[i], 4, 0))
	}
	return d, nil
}

// gapDiff compares each attribute's gaps at the policy's threshold.
func gapDiff(oldCard, card *modelcard.Card) []diffRow {
	gaps := func(cd *modelcard.Card) map[string]float64 {
		out := map[string]float64{}
		if cd.Fairness == nil {
			return out
		}
		idx := policyIndex(cd.Fairness.Report, cd.Fairness.Verdict)
		for _, a := range cd.Fairness.Report.Attributes {
			if idx < len(a.Gaps) {
				out[a.Attribute+": demographic parity"] = float64(a.Gaps[idx].DemographicParity)
				out[a.Attribute+": equal opportunity"] = float64(a.Gaps[idx].EqualOpportunity)
			}
		}
		return out
	}
	o, n := gaps(oldCard), gaps(card)
	var out []diffRow
	if card.Fairness != nil {
		for _, a := range card.Fairness.Report.Attributes {
			for _, m := range []string{": demographic parity", ": equal opportunity"} {
				k := a.Attribute + m
				ov, ok := o[k]
				if !ok {
					ov = math.NaN()
				}
				out = append(out, row(k, ov, n[k], 3, -1))
			}
		}
	}
	return out
}

// row is a diff row; better is +1 when higher is better, -1 when lower is, 0 when neither.
func row(name string, old, new float64, prec int, better int) diffRow {
	r := diffRow{Name: name, Old: fmtNum(old, prec), New: fmtNum(new, prec), Delta: "n/a", Dir: "flat"}
	delta := new - old
	if math.IsNaN(delta) || math.IsInf(delta, 0) {
		return r
	}
	r.Delta = fmtNum(delta, prec)
	if delta > 0 {
		r.Delta = "+" + r.Delta
	}
	if math.Abs(delta) < math.Pow(10, -float64(prec)) {
		r.Delta = "±0"
		return r
	}
	switch {
	case better > 0 && delta > 0, better < 0 && delta < 0:
		r.Dir = "up"
		r.Delta += " ▲ better"
	case better != 0:
		r.Dir = "down"
		r.Delta += " ▼ worse"
	}
	return r
}
