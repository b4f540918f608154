package fairness

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// Report is the fairness audit of one model: per attribute, the figures of each group and the
// largest gaps between groups, at every threshold of the layout. Undefined figures (a rate of an
// empty group, an AUC of a group with one class) are NaN, and null in JSON.
type Report struct {
	Thresholds []float64         `json:"thresholds"`
	Bins       int               `json:"bins"`
	Attributes []AttributeReport `json:"attributes"`
}

// AttributeReport is one sensitive attribute's groups and gaps.
type AttributeReport struct {
	Attribute string        `json:"attribute"`
	Groups    []GroupReport `json:"groups"`
	// Gaps holds one entry per threshold of the report.
	Gaps []Gaps `json:"gaps"`
}

// GroupReport is one group's figures.
type GroupReport struct {
	Group string `json:"group"`
	// Suppressed is true when the group counts too few records to be reported: then every
	// figure of it is withheld (NaN, null in JSON), its size included.
	Suppressed bool   `json:"suppressed,omitempty"`
	N          Number `json:"n"`
	Positives  Number `json:"positives"`
	// AUC is the group's ROC AUC from its score histogram, within AUCErrorBound of the exact
	// AUC of its rows.
	AUC           Number `json:"auc"`
	AUCErrorBound Number `json:"auc_error_bound"`
	// Rates holds one entry per threshold of the report.
	Rates []Rates `json:"rates"`
}

// Rates are a group's decision figures at one threshold.
type Rates struct {
	Threshold         float64 `json:"threshold"`
	PredictedPositive Number  `json:"predicted_positive"`
	TruePositive      Number  `json:"true_positive"`
	// PositiveRate is the share of the group predicted positive (demographic parity compares
	// it across groups).
	PositiveRate Number `json:"positive_rate"`
	// TruePositiveRate is the share of the group's positives predicted positive (equal
	// opportunity compares it across groups).
	TruePositiveRate Number `json:"true_positive_rate"`
	// FalsePositiveRate is the share of the group's negatives predicted positive.
	FalsePositiveRate Number `json:"false_positive_rate"`
}

// Gaps are the largest differences between an attribute's groups at one threshold: the
// demographic-parity difference (largest minus smallest positive-prediction rate over groups
// with rows) and the equal-opportunity difference (largest minus smallest true-positive rate over
// groups with positives), with the groups at either end. A gap over fewer than two groups is 0.
type Gaps struct {
	Threshold            float64 `json:"threshold"`
	DemographicParity    Number  `json:"demographic_parity_difference"`
	DemographicParityMax string  `json:"demographic_parity_max_group"`
	DemographicParityMin string  `json:"demographic_parity_min_group"`
	EqualOpportunity     Number  `json:"equal_opportunity_difference"`
	EqualOpportunityMax  string  `json:"equal_opportunity_max_group"`
	EqualOpportunityMin  string  `json:"equal_opportunity_min_group"`
}

// Number is a float64 that is written to JSON as null when it is NaN or infinite.
type Number float64

// MarshalJSON writes a non-finite number as null.
func (n Number) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// UnmarshalJSON reads null as NaN.
func (n *Number) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Number(math.NaN())
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = Number(f)
	return nil
}

// ratio is a/b, NaN when b is 0.
func ratio(a, b float64) Number {
	if b == 0 {
		return Number(math.NaN())
	}
	return Number(a / b)
}

// ReportOptions say which groups a report withholds.
type ReportOptions struct {
	// MinGroupSize suppresses every group that counts fewer records (0: none).
	MinGroupSize float64
	// CountNoiseStd is the standard deviation of the noise on each count of a differentially
	// private release (0: exact counts). A group is then also suppressed when its count is
	// within SuppressNoiseMultiple of it, where its rates are mostly noise, and the counts of
	// the others are clamped to what real counts can be.
	CountNoiseStd float64
}

// SuppressNoiseMultiple is how many noise standard deviations a group's noised count must
// reach to be reported.
const SuppressNoiseMultiple = 5

// Report computes the audit figures from the sums, withholding no group.
func (g GroupSums) Report() (Report, error) { return g.ReportWith(ReportOptions{}) }

// ReportWith computes the audit figures from the sums and suppresses the groups opts says are
// too small. A suppressed group keeps its name and nothing else; gaps are taken over the groups
// reported.
func (g GroupSums) ReportWith(opts ReportOptions) (Report, error) {
	if err := g.Layout.Validate(); err != nil {
		return Report{}, fmt.Errorf("fairness report: %w", err)
	}
	if len(g.Groups) != g.Layout.groupCount() {
		return Report{}, fmt.Errorf("fairness report: %w: %d groups for a layout of %d", ErrLayout, len(g.Groups), g.Layout.groupCount())
	}
	r := Report{Thresholds: slices.Clone(g.Layout.Thresholds), Bins: g.Layout.Bins}
	next := 0
	for _, attr := range g.Layout.Attributes {
		ar := AttributeReport{Attribute: attr.Name}
		for _, name := range attr.Groups {
			c := g.Groups[next]
			next++
			if len(c.PredictedPositive) != len(r.Thresholds) || len(c.TruePositive) != len(r.Thresholds) {
				return Report{}, fmt.Errorf("fairness report: %w: group %q of %q has counts for %d thresholds", ErrLayout, name, attr.Name, len(c.PredictedPositive))
			}
			if c.Eval.N < opts.MinGroupSize || c.Eval.N < SuppressNoiseMultiple*opts.CountNoiseStd {
				ar.Groups = append(ar.Groups, suppressedGroup(name, r.Thresholds))
				continue
			}
			if opts.CountNoiseStd > 0 {
				c = clampNoised(c)
			}
			summary := c.Eval.Summary()
			gr := GroupReport{
				Group: name, N: Number(c.Eval.N), Positives: Number(c.Eval.Positives),
				AUC: Number(summary.AUC), AUCErrorBound: Number(c.Eval.AUCErrorBound()),
			}
			negatives := c.Eval.N - c.Eval.Positives
			for k, t := range r.Thresholds {
				pp, tp := c.PredictedPositive[k], c.TruePositive[k]
				gr.Rates = append(gr.Rates, Rates{
					Threshold: t, PredictedPositive: Number(pp), TruePositive: Number(tp),
					PositiveRate:      ratio(pp, c.Eval.N),
					TruePositiveRate:  ratio(tp, c.Eval.Positives),
					FalsePositiveRate: ratio(pp-tp, negatives),
				})
			}
			ar.Groups = append(ar.Groups, gr)
		}
		for k, t := range r.Thresholds {
			gaps := Gaps{Threshold: t}
			gaps.DemographicParity, gaps.DemographicParityMax, gaps.DemographicParityMin = spread(ar.Groups, func(gr GroupReport) Number { return gr.Rates[k].PositiveRate })
			gaps.EqualOpportunity, gaps.EqualOpportunityMax, gaps.EqualOpportunityMin = spread(ar.Groups, func(gr GroupReport) Number { return gr.Rates[k].TruePositiveRate })
			ar.Gaps = append(ar.Gaps, gaps)
		}
		r.Attributes = append(r.Attributes, ar)
	}
	return r, nil
}

// clampNoised undoes what noise makes impossible in a group's counts (negative counts, more
// positives or predictions than rows, more true positives than either): post-processing of a
// differentially private release, which reads better and costs nothing.
func clampNoised(c GroupCounts) GroupCounts {
	out := GroupCounts{Eval: c.Eval.Clamped(), PredictedPositive: slices.Clone(c.PredictedPositive), TruePositive: slices.Clone(c.TruePositive)}
	for k := range out.PredictedPositive {
		out.PredictedPositive[k] = min(max(out.PredictedPositive[k], 0), out.Eval.N)
		out.TruePositive[k] = min(max(out.TruePositive[k], 0), out.PredictedPositive[k], out.Eval.Positives)
	}
	return out
}

// suppressedGroup is the report of a group too small to report: its name, and NaN for every
// figure.
func suppressedGroup(name string, thresholds []float64) GroupReport {
	nan := Number(math.NaN())
	gr := GroupReport{Group: name, Suppressed: true, N: nan, Positives: nan, AUC: nan, AUCErrorBound: nan}
	for _, t := range thresholds {
		gr.Rates = append(gr.Rates, Rates{Threshold: t, PredictedPositive: nan, TruePositive: nan, PositiveRate: nan, TruePositiveRate: nan, FalsePositiveRate: nan})
	}
	return gr
}

// spread returns the largest minus the smallest defined value over the groups, and the groups
// holding them (the first such group on ties); 0 and no names with fewer than two defined values.
func spread(groups []GroupReport, value func(GroupReport) Number) (Number, string, string) {
	lo, hi := -1, -1
	defined := 0
	for i, gr := range groups {
		v := float64(value(gr))
		if math.IsNaN(v) {
			continue
		}
		defined++
		if lo < 0 || v < float64(value(groups[lo])) {
			lo = i
		}
		if hi < 0 || v > float64(value(groups[hi])) {
			hi = i
		}
	}
	if defined < 2 {
		return 0, "", ""
	}
	return value(groups[hi]) - value(groups[lo]), groups[hi].Group, groups[lo].Group
}

// Policy is the largest gap between groups a run accepts. A model beyond it is flagged and can be
// approved only by an explicit override that records a reason.
type Policy struct {
	// MaxDemographicParityGap is the largest acceptable demographic-parity difference, in
	// (0, 1]; 1 accepts every gap.
	MaxDemographicParityGap float64 `yaml:"max_demographic_parity_gap" json:"max_demographic_parity_gap"`
	// MaxEqualOpportunityGap is the largest acceptable equal-opportunity difference, in (0, 1].
	MaxEqualOpportunityGap float64 `yaml:"max_equal_opportunity_gap" json:"max_equal_opportunity_gap"`
	// Threshold is the decision threshold the policy judges, one of the report's; 0 means the
	// report's first threshold.
	Threshold float64 `yaml:"threshold" json:"threshold"`
}

// Validate checks that both limits are in (0, 1] and the threshold in [0, 1).
func (p Policy) Validate() error {
	for _, l := range []struct {
		name string
		v    float64
	}{{"max_demographic_parity_gap", p.MaxDemographicParityGap}, {"max_equal_opportunity_gap", p.MaxEqualOpportunityGap}} {
		if !(l.v > 0 && l.v <= 1) {
			return fmt.Errorf("%w: %s %v is not in (0, 1]", ErrPolicy, l.name, l.v)
		}
	}
	if !(p.Threshold >= 0 && p.Threshold < 1) {
		return fmt.Errorf("%w: threshold %v is not in [0, 1)", ErrPolicy, p.Threshold)
	}
	return nil
}

// Metric names of a Violation.
const (
	MetricDemographicParity = "demographic_parity_difference"
	MetricEqualOpportunity  = "equal_opportunity_difference"
)

// Violation is one gap beyond the policy.
type Violation struct {
	Attribute string  `json:"attribute"`
	Metric    string  `json:"metric"`
	Threshold float64 `json:"threshold"`
	Gap       float64 `json:"gap"`
	Limit     float64 `json:"limit"`
	// MaxGroup and MinGroup are the groups whose difference is the gap.
	MaxGroup string `json:"max_group"`
	MinGroup string `json:"min_group"`
}

// String describes the violation in one line.
func (v Violation) String() string {
	return fmt.Sprintf("%s: %s %.4f at threshold %g exceeds %.4f (%s vs %s)", v.Attribute, v.Metric, v.Gap, v.Threshold, v.Limit, v.MaxGroup, v.MinGroup)
}

// Verdict is a policy's judgement of a report.
type Verdict struct {
	Policy     Policy      `json:"policy"`
	Flagged    bool        `json:"flagged"`
	Violations []Violation `json:"violations"`
}

// Check judges the report: every attribute's demographic-parity and equal-opportunity gaps at
// the policy's threshold against its limits. The model is flagged when any gap exceeds its limit.
func (p Policy) Check(r Report) (Verdict, error) {
	if err := p.Validate(); err != nil {
		return Verdict{}, err
	}
	if len(r.Thresholds) == 0 {
		return Verdict{}, fmt.Errorf("%w: the report has no threshold", ErrPolicy)
	}
	t := p.Threshold
	if t == 0 {
		t = r.Thresholds[0]
	}
	k := slices.Index(r.Thresholds, t)
	if k < 0 {
		return Verdict{}, fmt.Errorf("%w: threshold %v is not one of the report's %v", ErrPolicy, t, r.Thresholds)
	}
	v := Verdict{Policy: p, Violations: []Violation{}}
	for _, a := range r.Attributes {
		if k >= len(a.Gaps) {
			return Verdict{}, fmt.Errorf("%w: attribute %q has no gaps at threshold %v", ErrPolicy, a.Attribute, t)
		}
		g := a.Gaps[k]
		if gap := float64(g.DemographicParity); gap > p.MaxDemographicParityGap {
			v.Violations = append(v.Violations, Violation{a.Attribute, MetricDemographicParity, t, gap, p.MaxDemographicParityGap, g.DemographicParityMax, g.DemographicParityMin})
		}
		if gap := float64(g.EqualOpportunity); gap > p.MaxEqualOpportunityGap {
			v.Violations = append(v.Violations, Violation{a.Attribute, MetricEqualOpportunity, t, gap, p.MaxEqualOpportunityGap, g.EqualOpportunityMax, g.EqualOpportunityMin})
		}
	}
	v.Flagged = len(v.Violations) > 0
	return v, nil
}
