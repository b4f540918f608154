package fairness_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
)

// TestOneRecordStaysWithinTheLayoutsRecordBound: in each attribute a record falls in one group,
// so it changes at most RecordBound().Touched values of the fairness vector, each within its
// bound: the premise of a DP release's noise.
func TestOneRecordStaysWithinTheLayoutsRecordBound(t *testing.T) {
	l, err := auditLayout(t, map[string][]string{"gender": {"f", "m"}})
	require.NoError(t, err)
	l.Thresholds = []float64{0.1, 0.5}
	rb := l.RecordBound()
	require.Len(t, rb.Bounds, l.VectorLen())
	assert.Equal(t, 3*(6+2*2), rb.Touched, "three attributes, each one group's 6 evaluation values and 2 counts per threshold")
	for _, row := range []struct {
		score, label float64
		groups       []string
	}{{0.9, 1, []string{"<40", "north", "f"}}, {0, 1, []string{">=40", "west", "x"}}, {1, 0, []string{"<40", "south", "m"}}} {
		g := fairness.NewGroupSums(l)
		require.NoError(t, g.AddWeighted([]float64{row.score}, []float64{row.label}, [][]string{row.groups}, 1, metrics.MaxRowLogLoss))
		changed := 0
		for i, v := range g.Vector() {
			if v != 0 {
				changed++
			}
			assert.LessOrEqual(t, math.Abs(v), rb.Bounds[i], "value %d", i)
		}
		assert.LessOrEqual(t, changed, rb.Touched)
	}
}

// TestSmallGroupsAreSuppressed: a group with fewer records than the minimum, or (in a DP
// release) a noised count within a few noise deviations, is reported by name only, and the
// gaps are taken over the other groups.
func TestSmallGroupsAreSuppressed(t *testing.T) {
	l, err := auditLayout(t, map[string][]string{"gender": {"f", "m"}})
	require.NoError(t, err)
	g := fairness.NewGroupSums(l)
	var scores, labels []float64
	var groups [][]string
	add := func(n int, score, label float64, row []string) {
		for range n {
			scores, labels, groups = append(scores, score), append(labels, label), append(groups, row)
		}
	}
	add(30, 0.9, 1, []string{"<40", "north", "f"})
	add(30, 0.2, 0, []string{">=40", "north", "m"})
	add(3, 0.9, 1, []string{">=40", "south", "x"}) // three people: gender <other>, region south
	require.NoError(t, g.AddScores(scores, labels, groups))

	r, err := g.ReportWith(fairness.ReportOptions{MinGroupSize: 20})
	require.NoError(t, err)
	byName := map[string]fairness.GroupReport{}
	for _, a := range r.Attributes {
		for _, gr := range a.Groups {
			byName[a.Attribute+"="+gr.Group] = gr
		}
	}
	for _, name := range []string{"region=south", "gender=<other>", "region=<other>"} {
		gr := byName[name]
		assert.True(t, gr.Suppressed, name)
		assert.True(t, math.IsNaN(float64(gr.N)), "%s: not even its size is reported", name)
		assert.True(t, math.IsNaN(float64(gr.Rates[0].PositiveRate)), name)
	}
	assert.False(t, byName["gender=f"].Suppressed)
	assert.Equal(t, 30.0, float64(byName["gender=f"].N))
	assert.Equal(t, "m", r.Attributes[2].Gaps[0].DemographicParityMin, "gaps over the reported groups")

	unsuppressed, err := g.Report()
	require.NoError(t, err)
	assert.False(t, unsuppressed.Attributes[1].Groups[1].Suppressed, "Report alone withholds nothing")

	noisy, err := g.ReportWith(fairness.ReportOptions{CountNoiseStd: 7})
	require.NoError(t, err)
	assert.True(t, noisy.Attributes[0].Groups[0].Suppressed, "30 records are within 5 noise deviations of 7")
}

// TestNoisedCountsAreClampedInTheReport: noise can make a count negative or a rate exceed 1;
// the report of a DP release reads them as counts that could be real.
func TestNoisedCountsAreClampedInTheReport(t *testing.T) {
	l, err := auditLayout(t, map[string][]string{"gender": {"f", "m"}})
	require.NoError(t, err)
	g := fairness.NewGroupSums(l)
	c := &g.Groups[0]
	c.Eval.N, c.Eval.Positives = 100, 120
	c.Eval.PosHist[3], c.Eval.NegHist[1], c.Eval.NegHist[5] = 120, -15, 40
	c.PredictedPositive[0], c.TruePositive[0] = -4, 9
	r, err := g.ReportWith(fairness.ReportOptions{CountNoiseStd: 1})
	require.NoError(t, err)
	gr := r.Attributes[0].Groups[0]
	assert.Equal(t, 100.0, float64(gr.Positives))
	assert.Equal(t, 0.0, float64(gr.Rates[0].PredictedPositive))
	assert.Equal(t, 0.0, float64(gr.Rates[0].TruePositive))
	assert.GreaterOrEqual(t, float64(gr.AUC), 0.0)
	assert.LessOrEqual(t, float64(gr.AUC), 1.0)
}
