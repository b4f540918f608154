package fairness_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/banktest"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/partition"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/synth"
)

// thresholds audited in the tests: the usual 0.5 and a cut-off nearer bank-full's base rate.
var testThresholds = []float64{0.2, 0.5}

func TestFederatedFiguresEqualCentralFiguresOnBankFull(t *testing.T) {
	split := banktest.Load(t)
	doc := split.Model(t)
	layout, err := fairness.NewLayout(split.Schema, fairness.LayoutConfig{Thresholds: testThresholds})
	require.NoError(t, err)
	assert.Equal(t, []fairness.Attribute{
		{Name: "age", Groups: []string{"<30", "30-60", ">=60"}},
		{Name: "marital", Groups: []string{"married", "divorced", "single"}},
	}, layout.Attributes)

	// 10 clients holding the test rows with Dirichlet(0.5) label skew, as the bank simulation.
	parts, err := partition.Dirichlet(split.Test.Label, 10, 0.5, rand.New(rand.NewPCG(7, 7)))
	require.NoError(t, err)
	checkFederatedEqualsCentral(t, doc, split.Test, parts, layout)
}

func TestFederatedFiguresEqualCentralFiguresOnSyntheticBranches(t *testing.T) {
	cfg := synth.Config{Branches: 6, CustomersPerBranch: 800, Seed: 5}
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	var trains, tests []*dataset.Dataset
	for _, b := range branches {
		trains = append(trains, b.Train)
		tests = append(tests, b.Test)
	}
	schema := branches[0].Train.Schema
	doc := fitDoc(t, schema, dataset.Concat(trains...))
	layout, err := fairness.NewLayout(schema, fairness.LayoutConfig{Thresholds: testThresholds, Groups: map[string][]string{"gender": {"female", "male"}}})
	require.NoError(t, err)
	assert.Equal(t, []string{"female", "male", dataset.OtherCategory}, layout.Attributes[1].Groups)

	pooled := dataset.Concat(tests...)
	var parts [][]int
	start := 0
	for _, d := range tests {
		parts = append(parts, seq(start, start+d.Len()))
		start += d.Len()
	}
	checkFederatedEqualsCentral(t, doc, pooled, parts, layout)
}

// checkFederatedEqualsCentral sums the clients' vectors (each client holding the rows of one
// part) and requires every per-group figure and gap to equal the one computed directly on the
// pooled rows: counts and rates exactly, AUC within the histogram's bound.
func checkFederatedEqualsCentral(t *testing.T, doc *modelfile.Document, pooled *dataset.Dataset, parts [][]int, layout fairness.Layout) {
	t.Helper()
	total := make([]float64, layout.VectorLen())
	for _, rows := range parts {
		client := pooled.Subset(rows)
		scores, err := doc.Score(client)
		require.NoError(t, err)
		sums := fairness.NewGroupSums(layout)
		require.NoError(t, sums.AddScores(scores, client.Label, client.Groups))
		v := sums.Vector()
		require.Len(t, v, layout.VectorLen())
		for i, x := range v {
			total[i] += x
		}
	}
	sums, err := fairness.GroupSumsFromVector(layout, total)
	require.NoError(t, err)
	report, err := sums.Report()
	require.NoError(t, err)

	scores, err := doc.Score(pooled)
	require.NoError(t, err)
	require.Len(t, report.Attributes, len(layout.Attributes))
	for a, ar := range report.Attributes {
		require.Equal(t, layout.Attributes[a].Name, ar.Attribute)
		centralGroups := make([]central, len(ar.Groups))
		for j, gr := range ar.Groups {
			c := centralFigures(scores, pooled.Label, pooled.Groups, a, gr.Group, layout.Thresholds)
			centralGroups[j] = c
			assert.Equal(t, c.n, float64(gr.N), "%s=%s size", ar.Attribute, gr.Group)
			assert.Equal(t, c.positives, float64(gr.Positives), "%s=%s positives", ar.Attribute, gr.Group)
			if c.n > 0 && c.positives > 0 && c.positives < c.n {
				assert.InDelta(t, c.auc, float64(gr.AUC), float64(gr.AUCErrorBound)+1e-12, "%s=%s AUC", ar.Attribute, gr.Group)
				t.Logf("%s=%s: n %v, AUC %.4f (exact %.4f, bound %.5f)", ar.Attribute, gr.Group, c.n, float64(gr.AUC), c.auc, float64(gr.AUCErrorBound))
			}
			for k := range layout.Thresholds {
				r := gr.Rates[k]
				assert.Equal(t, c.predPos[k], float64(r.PredictedPositive), "%s=%s predicted positive at %v", ar.Attribute, gr.Group, r.Threshold)
				assert.Equal(t, c.truePos[k], float64(r.TruePositive), "%s=%s true positive at %v", ar.Attribute, gr.Group, r.Threshold)
				sameRate(t, c.rate(c.predPos[k], c.n), r.PositiveRate)
				sameRate(t, c.rate(c.truePos[k], c.positives), r.TruePositiveRate)
				sameRate(t, c.rate(c.predPos[k]-c.truePos[k], c.n-c.positives), r.FalsePositiveRate)
			}
		}
		for k := range layout.Thresholds {
			dp := gapOf(centralGroups, func(c central) float64 { return c.rate(c.predPos[k], c.n) })
			eo := gapOf(centralGroups, func(c central) float64 { return c.rate(c.truePos[k], c.positives) })
			assert.Equal(t, dp, float64(ar.Gaps[k].DemographicParity), "%s demographic parity at %v", ar.Attribute, layout.Thresholds[k])
			assert.Equal(t, eo, float64(ar.Gaps[k].EqualOpportunity), "%s equal opportunity at %v", ar.Attribute, layout.Thresholds[k])
			t.Logf("%s at %v: DP gap %.4f (%s vs %s), EO gap %.4f", ar.Attribute, layout.Thresholds[k], dp,
				ar.Gaps[k].DemographicParityMax, ar.Gaps[k].DemographicParityMin, eo)
		}
	}
}

// central holds one group's figures computed directly on pooled rows.
type central struct {
	n, positives     float64
	auc              float64
	predPos, truePos []float64
}

func (central) rate(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func centralFigures(scores, labels []float64, groups [][]string, attr int, group string, thresholds []float64) central {
	c := central{predPos: make([]float64, len(thresholds)), truePos: make([]float64, len(thresholds))}
	var gs, gl []float64
	for i, s := range scores {
		if groups[i][attr] != group {
			continue
		}
		gs, gl = append(gs, s), append(gl, labels[i])
		c.n++
		if labels[i] == 1 {
			c.positives++
		}
		for k, th := range thresholds {
			if s > th {
				c.predPos[k]++
				if labels[i] == 1 {
					c.truePos[k]++
				}
			}
		}
	}
	if len(gs) > 0 {
		c.auc = metrics.AUC(gs, gl)
	}
	return c
}

func gapOf(groups []central, rate func(central) float64) float64 {
	var vals []float64
	for _, g := range groups {
		if v := rate(g); !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	if len(vals) < 2 {
		return 0
	}
	return slices.Max(vals) - slices.Min(vals)
}

func sameRate(t *testing.T, want float64, got fairness.Number) {
	t.Helper()
	if math.IsNaN(want) {
		assert.True(t, math.IsNaN(float64(got)), "want an undefined rate, got %v", got)
		return
	}
	assert.Equal(t, want, float64(got))
}

func fitDoc(t *testing.T, schema *dataset.Schema, train *dataset.Dataset) *modelfile.Document {
	t.Helper()
	std, err := train.Stats().Standardization()
	require.NoError(t, err)
	enc, err := dataset.NewEncoder(schema, std)
	require.NoError(t, err)
	w, err := logreg.FitCentralized(enc.Encode(train), train.Label, 1e-4)
	require.NoError(t, err)
	return &modelfile.Document{Format: modelfile.Format, Intercept: w[0], Coefficients: w[1:], Features: enc.FeatureNames(), Schema: schema, Standardization: std}
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

const auditSchema = `
name: audit
label: {column: y, positive: "1", negative: ["0"]}
numeric: [age]
categorical:
  - {column: region, values: [north, south], unseen: other}
consent: {tracked: false}
sensitive:
  - {column: age, model_input: true, bands: [40]}
  - {column: region, model_input: true}
  - {column: gender}
`

func auditLayout(t *testing.T, groups map[string][]string) (fairness.Layout, error) {
	t.Helper()
	s, err := dataset.ParseSchema("audit.yaml", []byte(auditSchema))
	require.NoError(t, err)
	return fairness.NewLayout(s, fairness.LayoutConfig{Groups: groups, Bins: 10})
}

func TestNewLayout(t *testing.T) {
	l, err := auditLayout(t, map[string][]string{"gender": {"f", "m"}})
	require.NoError(t, err)
	assert.Equal(t, []fairness.Attribute{
		{Name: "age", Groups: []string{"<40", ">=40"}},
		{Name: "region", Groups: []string{"north", "south", dataset.OtherCategory}},
		{Name: "gender", Groups: []string{"f", "m", dataset.OtherCategory}},
	}, l.Attributes)
	assert.Equal(t, []float64{0.5}, l.Thresholds, "default threshold")
	assert.Equal(t, 8*(5+2*10+2), l.VectorLen())

	cases := []struct {
		name   string
		groups map[string][]string
	}{
		{"an attribute without bands or vocabulary needs its groups", nil},
		{"groups for a column that is not sensitive", map[string][]string{"gender": {"f"}, "income": {"low"}}},
		{"a group listed twice", map[string][]string{"gender": {"f", "f"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auditLayout(t, tc.groups)
			require.ErrorIs(t, err, fairness.ErrLayout)
		})
	}
	for _, bad := range [][]float64{{0}, {1}, {0.5, 0.5}, {0.6, 0.4}, {math.NaN()}} {
		bl := l
		bl.Thresholds = bad
		require.ErrorIs(t, bl.Validate(), fairness.ErrLayout, "thresholds %v", bad)
	}
}

func TestAddScoresCountsEachRowOnceInEachAttribute(t *testing.T) {
	l, err := auditLayout(t, map[string][]string{"gender": {"f", "m"}})
	require.NoError(t, err)
	g := fairness.NewGroupSums(l)
	require.NoError(t, g.AddScores(
		[]float64{0.9, 0.2, 0.7, 0.5},
		[]float64{1, 0, 0, 1},
		[][]string{{"<40", "north", "f"}, {">=40", "south", "m"}, {"<40", "west", "x"}, {">=40", "north", "f"}}))
	r, err := g.Report()
	require.NoError(t, err)

	type fig struct{ n, pos, pp, tp float64 }
	got := map[string]fig{}
	for _, a := range r.Attributes {
		for _, gr := range a.Groups {
			got[a.Attribute+"="+gr.Group] = fig{float64(gr.N), float64(gr.Positives), float64(gr.Rates[0].PredictedPositive), float64(gr.Rates[0].TruePositive)}
		}
	}
	assert.Equal(t, map[string]fig{
		"age=<40": {2, 1, 2, 1}, "age=>=40": {2, 1, 0, 0},
		"region=north": {2, 2, 1, 1}, "region=south": {1, 0, 0, 0}, "region=<other>": {1, 0, 1, 0},
		"gender=f": {2, 2, 1, 1}, "gender=m": {1, 0, 0, 0}, "gender=<other>": {1, 0, 1, 0},
	}, got, "0.5 is not above the threshold 0.5; unknown values fall into <other>")

	age := r.Attributes[0].Gaps[0]
	assert.InDelta(t, 1.0, float64(age.DemographicParity), 1e-15, "<40 always predicted positive, >=40 never")
	assert.Equal(t, "<40", age.DemographicParityMax)
	assert.Equal(t, ">=40", age.DemographicParityMin)
	assert.InDelta(t, 1.0, float64(age.EqualOpportunity), 1e-15)
	region := r.Attributes[1].Groups
	assert.True(t, math.IsNaN(float64(region[1].Rates[0].TruePositiveRate)), "south has no positives")
	assert.True(t, math.IsNaN(float64(region[1].AUC)), "nor an AUC")
}

func TestAddScoresRejectsBadRowsAndAddsNothing(t *testing.T) {
	l, err := auditLayout(t, map[string][]string{"gender": {"f", "m"}})
	require.NoError(t, err)
	bands := []string{"<40", "north", "f"}
	s, err := dataset.ParseSchema("audit.yaml", []byte(auditSchema))
	require.NoError(t, err)
	strict, err := fairness.NewLayout(s, fairness.LayoutConfig{Groups: map[string][]string{"gender": {"f"}}})
	require.NoError(t, err)
	strict.Attributes[0].Groups = []string{"<40"} // no <other> bucket for age
	cases := []struct {
		name   string
		layout fairness.Layout
		scores []float64
		labels []float64
		groups [][]string
	}{
		{"lengths differ", l, []float64{0.1, 0.2}, []float64{1}, [][]string{bands}},
		{"label not 0 or 1", l, []float64{0.1, 0.2}, []float64{1, math.NaN()}, [][]string{bands, bands}},
		{"NaN score", l, []float64{0.1, math.NaN()}, []float64{1, 0}, [][]string{bands, bands}},
		{"too few groups", l, []float64{0.1, 0.2}, []float64{1, 0}, [][]string{bands, {"<40"}}},
		{"unknown group without other bucket", strict, []float64{0.1, 0.2}, []float64{1, 0}, [][]string{bands, {">=40", "north", "f"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := fairness.NewGroupSums(tc.layout)
			empty := g.Vector()
			require.ErrorIs(t, g.AddScores(tc.scores, tc.labels, tc.groups), fairness.ErrRows)
			assert.Equal(t, empty, g.Vector(), "nothing added")
		})
	}
}

func TestVectorRoundTripAndAdd(t *testing.T) {
	l, err := auditLayout(t, map[string][]string{"gender": {"f", "m"}})
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	newClient := func() fairness.GroupSums {
		g := fairness.NewGroupSums(l)
		n := 50
		scores, labels, groups := make([]float64, n), make([]float64, n), make([][]string, n)
		for i := range n {
			scores[i] = rng.Float64()
			labels[i] = float64(rng.IntN(2))
			groups[i] = []string{[]string{"<40", ">=40"}[rng.IntN(2)], []string{"north", "south", "east"}[rng.IntN(3)], []string{"f", "m"}[rng.IntN(2)]}
		}
		require.NoError(t, g.AddScores(scores, labels, groups))
		return g
	}
	a, b := newClient(), newClient()
	decoded, err := fairness.GroupSumsFromVector(l, a.Vector())
	require.NoError(t, err)
	assert.Equal(t, a, decoded)

	sum := make([]float64, l.VectorLen())
	for i := range sum {
		sum[i] = a.Vector()[i] + b.Vector()[i]
	}
	require.NoError(t, a.Add(b))
	assert.Equal(t, sum, a.Vector(), "adding sums equals adding vectors")

	other, err := auditLayout(t, map[string][]string{"gender": {"f", "m", "x"}})
	require.NoError(t, err)
	require.ErrorIs(t, a.Add(fairness.NewGroupSums(other)), fairness.ErrLayout)

	_, err = fairness.GroupSumsFromVector(l, sum[1:])
	require.ErrorIs(t, err, fairness.ErrVector)
	sum[len(sum)-1] = math.Inf(1)
	_, err = fairness.GroupSumsFromVector(l, sum)
	require.ErrorIs(t, err, fairness.ErrVector)
}

func TestPolicyCheck(t *testing.T) {
	l, err := auditLayout(t, map[string][]string{"gender": {"f", "m"}})
	require.NoError(t, err)
	l.Thresholds = []float64{0.3, 0.5}
	g := fairness.NewGroupSums(l)
	// <40: 4 rows, 2 positives, 3 predicted positive at 0.5 (2 true); >=40: 4 rows, 2 positives,
	// 1 predicted positive (1 true). DP gap 0.5, EO gap 0.5 at 0.5; at 0.3 everyone is positive.
	require.NoError(t, g.AddScores(
		[]float64{0.9, 0.8, 0.7, 0.4, 0.9, 0.4, 0.4, 0.4},
		[]float64{1, 1, 0, 0, 1, 1, 0, 0},
		[][]string{{"<40", "north", "f"}, {"<40", "north", "f"}, {"<40", "north", "f"}, {"<40", "north", "f"},
			{">=40", "north", "f"}, {">=40", "north", "f"}, {">=40", "north", "f"}, {">=40", "north", "f"}}))
	r, err := g.Report()
	require.NoError(t, err)

	cases := []struct {
		name     string
		policy   fairness.Policy
		flagged  []string
		errorMsg string
	}{
		{"within both limits", fairness.Policy{MaxDemographicParityGap: 0.5, MaxEqualOpportunityGap: 0.5, Threshold: 0.5}, nil, ""},
		{"demographic parity beyond its limit", fairness.Policy{MaxDemographicParityGap: 0.4, MaxEqualOpportunityGap: 0.6, Threshold: 0.5},
			[]string{"age " + fairness.MetricDemographicParity}, ""},
		{"both beyond", fairness.Policy{MaxDemographicParityGap: 0.1, MaxEqualOpportunityGap: 0.1, Threshold: 0.5},
			[]string{"age " + fairness.MetricDemographicParity, "age " + fairness.MetricEqualOpportunity}, ""},
		{"first threshold by default", fairness.Policy{MaxDemographicParityGap: 0.1, MaxEqualOpportunityGap: 0.1}, nil, ""},
		{"zero limit is invalid", fairness.Policy{MaxEqualOpportunityGap: 0.1}, nil, "max_demographic_parity_gap"},
		{"threshold not audited", fairness.Policy{MaxDemographicParityGap: 0.1, MaxEqualOpportunityGap: 0.1, Threshold: 0.7}, nil, "not one of"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.policy.Check(r)
			if tc.errorMsg != "" {
				require.ErrorIs(t, err, fairness.ErrPolicy)
				assert.Contains(t, err.Error(), tc.errorMsg)
				return
			}
			require.NoError(t, err)
			var flagged []string
			for _, viol := range v.Violations {
				flagged = append(flagged, viol.Attribute+" "+viol.Metric)
				assert.Equal(t, "<40", viol.MaxGroup)
				assert.Equal(t, ">=40", viol.MinGroup)
				assert.Contains(t, viol.String(), "exceeds")
			}
			assert.Equal(t, tc.flagged, flagged)
			assert.Equal(t, len(tc.flagged) > 0, v.Flagged)
		})
	}
}

func TestReportJSONWritesUndefinedFiguresAsNull(t *testing.T) {
	l, err := auditLayout(t, map[string][]string{"gender": {"f", "m"}})
	require.NoError(t, err)
	r, err := fairness.NewGroupSums(l).Report()
	require.NoError(t, err)
	raw, err := json.Marshal(r)
	require.NoError(t, err)
	assert.Contains(t, string(raw), `"auc":null`)
	var back fairness.Report
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.True(t, math.IsNaN(float64(back.Attributes[0].Groups[0].AUC)))
	assert.Equal(t, r.Attributes[0].Groups[0].Group, back.Attributes[0].Groups[0].Group)
}

func BenchmarkAddScores(b *testing.B) {
	s, err := dataset.ParseSchema("audit.yaml", []byte(auditSchema))
	require.NoError(b, err)
	l, err := fairness.NewLayout(s, fairness.LayoutConfig{Groups: map[string][]string{"gender": {"f", "m"}}, Thresholds: []float64{0.2, 0.5}})
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(1, 2))
	n := 10000
	scores, labels, groups := make([]float64, n), make([]float64, n), make([][]string, n)
	for i := range n {
		scores[i], labels[i] = rng.Float64(), float64(rng.IntN(2))
		groups[i] = []string{"<40", "north", "f"}
	}
	b.ReportAllocs()
	for b.Loop() {
		g := fairness.NewGroupSums(l)
		if err := g.AddScores(scores, labels, groups); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "rows/op")
}
