// Package fairness audits a propensity model for bias across the groups of the schema's
// sensitive attributes (for bank-full: age bands and marital status) without any record leaving
// a client.
//
// A client scores its held-out rows and returns GroupSums: for every group of every sensitive
// attribute, the evaluation sums of package metrics (row and positive counts, log loss, score
// histograms for the AUC) and, at each configured threshold, the count of positive predictions
// and of true positives. Every quantity is a count or a sum, flattened by Vector into one vector
// whose layout the Layout fixes in advance, so the coordinator can add the clients' vectors in
// plaintext or under homomorphic encryption. Report turns the total into per-group figures (size,
// AUC, positive-prediction rate, true- and false-positive rates) and the largest gaps between
// groups (demographic-parity and equal-opportunity differences); a Policy says which gaps are
// acceptable and flags a model beyond them.
//
// A row is predicted positive at threshold t when its score is above t (score > t), the rule
// metrics uses for accuracy at 0.5.
package fairness

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrLayout marks a layout that cannot be built or sums whose layouts differ.
	ErrLayout = errors.New("fairness layout")
	// ErrVector marks a flattened GroupSums vector that cannot be decoded.
	ErrVector = errors.New("invalid fairness sums vector")
	// ErrRows marks scored rows that cannot be added: lengths that differ, a label that is not
	// 0 or 1, or a group the layout does not know.
	ErrRows = errors.New("invalid scored rows")
	// ErrPolicy marks a policy that cannot be applied.
	ErrPolicy = errors.New("invalid fairness policy")
)

// DefaultThresholds returns the decision thresholds audited when a LayoutConfig names none:
// 0.5.
func DefaultThresholds() []float64 { return []float64{0.5} }

// LayoutConfig chooses what an audit measures.
type LayoutConfig struct {
	// Thresholds are the decision thresholds at which positive predictions are counted, each in
	// (0, 1); empty means DefaultThresholds.
	Thresholds []float64 `yaml:"thresholds" json:"thresholds"`
	// Bins is the number of score-histogram bins per group behind each group's AUC; < 1 means
	// metrics.DefaultBins.
	Bins int `yaml:"bins" json:"bins"`
	// Groups lists the groups of a sensitive attribute that has neither bands nor a vocabulary
	// (a sensitive column that is not a categorical feature, such as a gender column), by
	// column name. Such an attribute also gets a dataset.OtherCategory group for any other
	// value.
	Groups map[string][]string `yaml:"groups" json:"groups"`
	// MinGroupSize is the fewest records a group must count for its figures to be reported;
	// smaller groups are suppressed (see ReportOptions). 0 means DefaultMinGroupSize.
	MinGroupSize int `yaml:"min_group_size" json:"min_group_size,omitempty"`
}

// DefaultMinGroupSize is LayoutConfig.MinGroupSize when unset: a group of fewer records is
// not reported, since its rates are close to statements about the few people in it (and, in a
// differentially private release, mostly noise).
const DefaultMinGroupSize = 20

// Attribute is a sensitive attribute and its groups, in report order.
type Attribute struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
}

// Layout fixes the attributes, groups, thresholds and histogram bins of an audit, and with them
// the layout of GroupSums vectors: every client and the coordinator must use the same Layout.
// Build it with NewLayout; treat it as immutable.
type Layout struct {
	Attributes []Attribute `json:"attributes"`
	Thresholds []float64   `json:"thresholds"`
	Bins       int         `json:"bins"`
}

// NewLayout derives the layout from the schema's sensitive attributes, in schema order: a banded
// attribute has its bands' labels as groups; an attribute that is a categorical feature has its
// vocabulary (and dataset.OtherCategory under "unseen: other"); any other attribute must be
// listed in cfg.Groups and gets dataset.OtherCategory as an extra group.
func NewLayout(schema *dataset.Schema, cfg LayoutConfig) (Layout, error) {
	if schema == nil {
		return Layout{}, fmt.Errorf("%w: no schema", ErrLayout)
	}
	l := Layout{Thresholds: slices.Clone(cfg.Thresholds), Bins: cfg.Bins}
	if len(l.Thresholds) == 0 {
		l.Thresholds = DefaultThresholds()
	}
	if l.Bins < 1 {
		l.Bins = metrics.DefaultBins
	}
	for _, sa := range schema.Sensitive {
		var groups []string
		i := slices.IndexFunc(schema.Categorical, func(c dataset.CategoricalSpec) bool { return c.Column == sa.Column })
		switch {
		case len(sa.Bands) > 0:
			groups = sa.BandLabels()
		case i >= 0:
			groups = slices.Clone(schema.Categorical[i].Values)
			if schema.Categorical[i].Policy() == dataset.UnseenOther {
				groups = append(groups, dataset.OtherCategory)
			}
		case len(sa.Groups) > 0 && len(cfg.Groups[sa.Column]) == 0:
			groups = append(slices.Clone(sa.Groups), dataset.OtherCategory)
		default:
			listed, ok := cfg.Groups[sa.Column]
			if !ok || len(listed) == 0 {
				return Layout{}, fmt.Errorf("%w: sensitive attribute %q has neither bands, a vocabulary nor groups: list its groups in the schema (sensitive[].groups) or the fairness configuration", ErrLayout, sa.Column)
			}
			groups = append(slices.Clone(listed), dataset.OtherCategory)
		}
		l.Attributes = append(l.Attributes, Attribute{Name: sa.Column, Groups: groups})
	}
	for name := range cfg.Groups {
		if !slices.ContainsFunc(l.Attributes, func(a Attribute) bool { return a.Name == name }) {
			return Layout{}, fmt.Errorf("%w: groups are listed for %q, which is not a sensitive attribute of schema %q", ErrLayout, name, schema.Name)
		}
	}
	if err := l.Validate(); err != nil {
		return Layout{}, err
	}
	return l, nil
}

// Validate checks that the layout is usable: thresholds in (0, 1), strictly increasing; at least
// one bin; every attribute named, with at least one group and no group listed twice.
func (l Layout) Validate() error {
	if l.Bins < 1 {
		return fmt.Errorf("%w: %d histogram bins", ErrLayout, l.Bins)
	}
	if len(l.Thresholds) == 0 {
		return fmt.Errorf("%w: no threshold", ErrLayout)
	}
	for i, t := range l.Thresholds {
		if !(t > 0 && t < 1) {
			return fmt.Errorf("%w: threshold %v is not in (0, 1)", ErrLayout, t)
		}
		if i > 0 && !(t > l.Thresholds[i-1]) {
			return fmt.Errorf("%w: thresholds must be strictly increasing", ErrLayout)
		}
	}
	for _, a := range l.Attributes {
		if a.Name == "" || len(a.Groups) == 0 {
			return fmt.Errorf("%w: attribute %q has no groups", ErrLayout, a.Name)
		}
		seen := map[string]bool{}
		for _, g := range a.Groups {
			if seen[g] {
				return fmt.Errorf("%w: attribute %q lists group %q twice", ErrLayout, a.Name, g)
			}
			seen[g] = true
		}
	}
	return nil
}

// Equal reports whether two layouts describe the same vector layout.
func (l Layout) Equal(o Layout) bool {
	return l.Bins == o.Bins && slices.Equal(l.Thresholds, o.Thresholds) &&
		slices.EqualFunc(l.Attributes, o.Attributes, func(a, b Attribute) bool {
			return a.Name == b.Name && slices.Equal(a.Groups, b.Groups)
		})
}

// groupCount is the number of groups over every attribute.
func (l Layout) groupCount() int {
	n := 0
	for _, a := range l.Attributes {
		n += len(a.Groups)
	}
	return n
}

// groupWidth is the number of values one group contributes to a vector.
func (l Layout) groupWidth() int {
	return metrics.VectorLen(l.Bins) + 2*len(l.Thresholds)
}

// VectorLen is the length of the vectors of GroupSums with this layout.
func (l Layout) VectorLen() int { return l.groupCount() * l.groupWidth() }

// RecordBound is what one record can add to a GroupSums vector of this layout, rows added with
// AddWeighted at a weight of at most 1 and metrics.MaxRowLogLoss: in each attribute it falls in
// one group, whose evaluation sums it changes as metrics.EvalSumsRecordBound says, and whose
// predicted-positive and true-positive counts it raises by at most 1 per threshold.
func (l Layout) RecordBound() metrics.RecordBound {
	eval := metrics.EvalSumsRecordBound(l.Bins)
	group := append(slices.Clone(eval.Bounds), make([]float64, 2*len(l.Thresholds))...)
	for i := len(eval.Bounds); i < len(group); i++ {
		group[i] = 1
	}
	out := metrics.RecordBound{Touched: len(l.Attributes) * (eval.Touched + 2*len(l.Thresholds))}
	for range l.groupCount() {
		out.Bounds = append(out.Bounds, group...)
	}
	return out
}

// GroupCounts are one group's sums.
type GroupCounts struct {
	// Eval holds the group's evaluation sums (rows, positives, log loss, Brier score, score
	// histograms).
	Eval metrics.EvalSums
	// PredictedPositive and TruePositive hold, per threshold of the layout, the rows scored
	// above the threshold and those of them whose label is positive.
	PredictedPositive, TruePositive []float64
}

// GroupSums are a client's (or the federation's) fairness sums: Groups holds one GroupCounts
// per group, attribute by attribute in Layout order. Create them with NewGroupSums.
type GroupSums struct {
	Layout Layout
	Groups []GroupCounts
}

// NewGroupSums returns empty sums for the layout.
func NewGroupSums(l Layout) GroupSums {
	g := GroupSums{Layout: l, Groups: make([]GroupCounts, l.groupCount())}
	for i := range g.Groups {
		g.Groups[i] = GroupCounts{
			Eval:              metrics.NewEvalSums(l.Bins),
			PredictedPositive: make([]float64, len(l.Thresholds)),
			TruePositive:      make([]float64, len(l.Thresholds)),
		}
	}
	return g
}

// index returns the position in Groups of attribute a's group name, falling back to the
// attribute's dataset.OtherCategory group.
func (g *GroupSums) index(lookup []map[string]int, a int, name string) (int, error) {
	if i, ok := lookup[a][name]; ok {
		return i, nil
	}
	if i, ok := lookup[a][dataset.OtherCategory]; ok {
		return i, nil
	}
	return 0, fmt.Errorf("%w: attribute %q has no group %q", ErrRows, g.Layout.Attributes[a].Name, name)
}

// AddScores adds scored rows: scores[i] and labels[i] (0 or 1) of a row whose group of
// attribute k is groups[i][k] (the layout of dataset.Dataset.Groups). A row counts once in a
// group of every attribute. Nothing is added when an error is returned.
func (g *GroupSums) AddScores(scores, labels []float64, groups [][]string) error {
	return g.AddWeighted(scores, labels, groups, 1, 0)
}

// AddWeighted is AddScores counting each row weight times, with each row's log loss capped at
// maxLogLoss (0: uncapped), as metrics.EvalSums.AddWeighted does for a differentially private
// release. Nothing is added when an error is returned.
func (g *GroupSums) AddWeighted(scores, labels []float64, groups [][]string, weight, maxLogLoss float64) error {
	if len(scores) != len(labels) || len(scores) != len(groups) {
		return fmt.Errorf("%w: %d scores, %d labels and %d group rows", ErrRows, len(scores), len(labels), len(groups))
	}
	if len(g.Groups) != g.Layout.groupCount() {
		return fmt.Errorf("%w: sums hold %d groups, the layout %d (use NewGroupSums)", ErrLayout, len(g.Groups), g.Layout.groupCount())
	}
	lookup := make([]map[string]int, len(g.Layout.Attributes))
	offset := 0
	for a, attr := range g.Layout.Attributes {
		lookup[a] = make(map[string]int, len(attr.Groups))
		for j, name := range attr.Groups {
			lookup[a][name] = offset + j
		}
		offset += len(attr.Groups)
	}
	// Resolve every row first, so that a bad row adds nothing.
	at := make([]int, 0, len(scores)*len(lookup))
	for i, row := range groups {
		if labels[i] != 0 && labels[i] != 1 {
			return fmt.Errorf("%w: row %d has label %v (want 0 or 1)", ErrRows, i, labels[i])
		}
		if math.IsNaN(scores[i]) {
			return fmt.Errorf("%w: row %d has a NaN score", ErrRows, i)
		}
		if len(row) != len(lookup) {
			return fmt.Errorf("%w: row %d has %d groups for %d attributes", ErrRows, i, len(row), len(lookup))
		}
		for a, name := range row {
			j, err := g.index(lookup, a, name)
			if err != nil {
				return fmt.Errorf("row %d: %w", i, err)
			}
			at = append(at, j)
		}
	}
	for i := range scores {
		for _, j := range at[i*len(lookup) : (i+1)*len(lookup)] {
			c := &g.Groups[j]
			c.Eval.AddWeighted(scores[i:i+1], labels[i:i+1], weight, maxLogLoss)
			for k, t := range g.Layout.Thresholds {
				if scores[i] > t {
					c.PredictedPositive[k] += weight
					c.TruePositive[k] += weight * labels[i]
				}
			}
		}
	}
	return nil
}

// Add adds o into g; both must have the same layout.
func (g *GroupSums) Add(o GroupSums) error {
	if !g.Layout.Equal(o.Layout) {
		return fmt.Errorf("add fairness sums: %w: the layouts differ", ErrLayout)
	}
	if len(g.Groups) != len(o.Groups) || len(g.Groups) != g.Layout.groupCount() {
		return fmt.Errorf("add fairness sums: %w: %d groups and %d groups", ErrLayout, len(g.Groups), len(o.Groups))
	}
	for i := range g.Groups {
		if len(o.Groups[i].PredictedPositive) != len(g.Layout.Thresholds) || len(o.Groups[i].TruePositive) != len(g.Layout.Thresholds) ||
			len(g.Groups[i].PredictedPositive) != len(g.Layout.Thresholds) || len(g.Groups[i].TruePositive) != len(g.Layout.Thresholds) {
			return fmt.Errorf("add fairness sums: %w: group %d has counts for the wrong number of thresholds", ErrLayout, i)
		}
	}
	for i := range g.Groups {
		if err := g.Groups[i].Eval.Add(o.Groups[i].Eval); err != nil {
			return fmt.Errorf("add fairness sums: group %d: %w", i, err)
		}
		for k := range g.Groups[i].PredictedPositive {
			g.Groups[i].PredictedPositive[k] += o.Groups[i].PredictedPositive[k]
			g.Groups[i].TruePositive[k] += o.Groups[i].TruePositive[k]
		}
	}
	return nil
}

// Vector flattens the sums for secure aggregation: for each group in order, its
// metrics.EvalSums vector, then PredictedPositive, then TruePositive (Layout.VectorLen values in
// all). Summing vectors equals adding GroupSums.
func (g GroupSums) Vector() []float64 {
	v := make([]float64, 0, g.Layout.VectorLen())
	for _, c := range g.Groups {
		v = append(v, c.Eval.Vector()...)
		v = append(v, c.PredictedPositive...)
		v = append(v, c.TruePositive...)
	}
	return v
}

// GroupSumsFromVector decodes a vector made by Vector (or a sum of such vectors) with layout l.
// It rejects a wrong length and any non-finite value; values need not be integers (decrypted
// CKKS sums are approximate).
func GroupSumsFromVector(l Layout, v []float64) (GroupSums, error) {
	if err := l.Validate(); err != nil {
		return GroupSums{}, fmt.Errorf("decode fairness sums: %w", err)
	}
	if len(v) != l.VectorLen() {
		return GroupSums{}, fmt.Errorf("decode fairness sums: %w: %d values, the layout needs %d", ErrVector, len(v), l.VectorLen())
	}
	g := NewGroupSums(l)
	w, evalWidth, t := l.groupWidth(), metrics.VectorLen(l.Bins), len(l.Thresholds)
	for i := range g.Groups {
		part := v[i*w : (i+1)*w]
		for _, x := range part[evalWidth:] {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return GroupSums{}, fmt.Errorf("decode fairness sums: %w: group %d has a non-finite count", ErrVector, i)
			}
		}
		eval, err := metrics.EvalSumsFromVector(part[:evalWidth], l.Bins)
		if err != nil {
			return GroupSums{}, fmt.Errorf("decode fairness sums: group %d: %w: %w", i, ErrVector, err)
		}
		g.Groups[i].Eval = eval
		copy(g.Groups[i].PredictedPositive, part[evalWidth:evalWidth+t])
		copy(g.Groups[i].TruePositive, part[evalWidth+t:])
	}
	return g, nil
}

// EvaluationNoiseScales are the per-value noise scales (metrics.NoiseScales) of a differentially
// private evaluation vector: the evaluation sums over bins histogram bins, then the fairness
// sums of layout (nil: none). Coordinator and clients compute them alike from the task.
func EvaluationNoiseScales(bins int, layout *Layout) []float64 {
	parts := []metrics.RecordBound{metrics.EvalSumsRecordBound(bins)}
	if layout != nil {
		parts = append(parts, layout.RecordBound())
	}
	return metrics.NoiseScales(parts...)
}
