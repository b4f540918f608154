package explain_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/banktest"
	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/release/modelfile"
)

const testSchema = `
name: explain-test
label: {column: y, positive: "1", negative: ["0"]}
numeric: [income, age]
categorical:
  - {column: region, values: [north, south, east]}
  - {column: channel, values: [app, branch], unseen: other}
consent: {tracked: false}
`

// Inputs: income, age, region=north, region=south, region=east, channel=app, channel=branch,
// channel=<other>.
var testCoefficients = []float64{0.8, -0.3, 0.5, -1.2, 0, 0.25, -0.1, 2}

const testIntercept = -1.5

// testModel returns a model over testSchema with testCoefficients, standardised with mean 0 and
// std 1 for income and mean 40, std 10 for age, and rows drawn at random.
func testModel(t testing.TB, rows int) (*modelfile.Document, *dataset.Dataset) {
	t.Helper()
	s, err := dataset.ParseSchema("explain.yaml", []byte(testSchema))
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(3, 4))
	b := dataset.NewBuilder(s, "rows.csv", rows)
	for i := range rows {
		b.Append([]float64{rng.NormFloat64(), float64(20 + rng.IntN(50))}, []int32{int32(rng.IntN(3)), int32(rng.IntN(3))}, nil, float64(rng.IntN(2)), i+2)
	}
	doc := &modelfile.Document{
		Format: modelfile.Format, Intercept: testIntercept, Coefficients: testCoefficients,
		Features: []string{"income", "age", "region=north", "region=south", "region=east", "channel=app", "channel=branch", "channel=<other>"},
		Schema:   s, Standardization: dataset.Standardization{Mean: []float64{0, 40}, Std: []float64{1, 10}},
	}
	require.NoError(t, doc.Validate())
	return doc, b.Finish()
}

func TestContributionsAddUpToTheScore(t *testing.T) {
	doc, ds := testModel(t, 200)
	x, err := explain.New(doc)
	require.NoError(t, err)
	scores, err := doc.Score(ds)
	require.NoError(t, err)
	for i := range ds.Len() {
		contrib, logOdds, err := x.Contributions(ds, i)
		require.NoError(t, err)
		require.Len(t, contrib, 4)
		sum := testIntercept
		for _, c := range contrib {
			sum += c.Contribution
		}
		require.InDelta(t, logOdds, sum, 1e-12)
		require.InDelta(t, scores[i], 1/(1+math.Exp(-logOdds)), 1e-12, "row %d", i)

		// Numeric: coefficient x standardised value; categorical: the category's coefficient.
		assert.InDelta(t, 0.8*ds.Numeric[i][0], contrib[0].Contribution, 1e-15)
		assert.InDelta(t, -0.3*(ds.Numeric[i][1]-40)/10, contrib[1].Contribution, 1e-15)
		assert.Equal(t, testCoefficients[2+ds.Category[i][0]], contrib[2].Contribution)
		assert.Equal(t, testCoefficients[5+ds.Category[i][1]], contrib[3].Contribution)
		if ds.Category[i][1] == 2 {
			assert.Equal(t, dataset.OtherCategory, contrib[3].Value)
		}
	}
	_, _, err = x.Contributions(ds, ds.Len())
	require.ErrorIs(t, err, explain.ErrData)
}

func TestExplainRanksRaisingAndLoweringFeatures(t *testing.T) {
	doc, _ := testModel(t, 1)
	s := doc.Schema
	b := dataset.NewBuilder(s, "one.csv", 1)
	// income 1.5 -> +1.2; age 60 -> -0.6; region south -> -1.2; channel other -> +2.
	b.Append([]float64{1.5, 60}, []int32{1, 2}, nil, 1, 7)
	ds := b.Finish()
	x, err := explain.New(doc)
	require.NoError(t, err)

	cases := []struct {
		top              int
		raised, lowered  []string
		raisedContrib    []float64
		loweredContrib   []float64
		wantLine         int
		wantScoreLogOdds float64
	}{
		{0, []string{"channel", "income"}, []string{"region", "age"}, []float64{2, 1.2}, []float64{-1.2, -0.6}, 7, -1.5 + 1.2 - 0.6 - 1.2 + 2},
		{1, []string{"channel"}, []string{"region"}, []float64{2}, []float64{-1.2}, 7, -1.5 + 1.2 - 0.6 - 1.2 + 2},
	}
	for _, tc := range cases {
		got, err := x.Explain(ds, tc.top)
		require.NoError(t, err)
		require.Len(t, got, 1)
		e := got[0]
		assert.Equal(t, tc.wantLine, e.Line)
		assert.InDelta(t, tc.wantScoreLogOdds, e.LogOdds, 1e-12)
		assert.InDelta(t, 1/(1+math.Exp(-e.LogOdds)), e.Score, 1e-15)
		var names []string
		var values []float64
		for _, c := range e.Raised {
			names, values = append(names, c.Feature), append(values, c.Contribution)
		}
		assert.Equal(t, tc.raised, names)
		assert.InDeltaSlice(t, tc.raisedContrib, values, 1e-12)
		names, values = nil, nil
		for _, c := range e.Lowered {
			names, values = append(names, c.Feature), append(values, c.Contribution)
		}
		assert.Equal(t, tc.lowered, names)
		assert.InDeltaSlice(t, tc.loweredContrib, values, 1e-12)
	}
	e, err := x.Explain(ds, 0)
	require.NoError(t, err)
	assert.Equal(t, "<other>", e[0].Raised[0].Value)
	assert.Equal(t, "1.5", e[0].Raised[1].Value)
}

func TestImportanceIsTheSpreadOfEachContribution(t *testing.T) {
	doc, ds := testModel(t, 3000)
	x, err := explain.New(doc)
	require.NoError(t, err)

	// Federated: three clients' sums added through their vectors equal the pooled sums.
	pooled := x.NewImportanceSums()
	require.NoError(t, x.AddImportance(&pooled, ds))
	total := make([]float64, 1+2*len(x.Features()))
	for _, part := range [][]int{seq(0, 1000), seq(1000, 1700), seq(1700, 3000)} {
		s := x.NewImportanceSums()
		require.NoError(t, x.AddImportance(&s, ds.Subset(part)))
		for i, v := range s.Vector() {
			total[i] += v
		}
	}
	federated, err := explain.ImportanceSumsFromVector(total, len(x.Features()))
	require.NoError(t, err)
	assert.Equal(t, pooled.N, federated.N)
	assert.InDeltaSlice(t, pooled.Sum, federated.Sum, 1e-9)
	assert.InDeltaSlice(t, pooled.SumSq, federated.SumSq, 1e-9)

	imp, err := x.Importance(federated)
	require.NoError(t, err)
	got := map[string]float64{}
	share := 0.0
	for i, m := range imp {
		got[m.Feature] = m.Importance
		share += m.Share
		if i > 0 {
			assert.GreaterOrEqual(t, imp[i-1].Importance, m.Importance, "most important first")
		}
	}
	assert.InDelta(t, 1, share, 1e-12)

	// The same figure computed directly: the population standard deviation of each column's
	// contribution over the rows.
	for k, f := range x.Features() {
		var vals []float64
		for i := range ds.Len() {
			c, _, err := x.Contributions(ds, i)
			require.NoError(t, err)
			vals = append(vals, c[k].Contribution)
		}
		assert.InDelta(t, popStd(vals), got[f.Name], 1e-9, f.Name)
	}
	// For a numeric column that is |coefficient| x the std of the standardised column.
	var ages []float64
	for i := range ds.Len() {
		ages = append(ages, (ds.Numeric[i][1]-40)/10)
	}
	assert.InDelta(t, 0.3*popStd(ages), got["age"], 1e-9)

	_, err = x.Importance(x.NewImportanceSums())
	require.ErrorIs(t, err, explain.ErrData, "no rows")
	_, err = explain.ImportanceSumsFromVector(total[1:], len(x.Features()))
	require.ErrorIs(t, err, explain.ErrVector)
	total[0] = math.NaN()
	_, err = explain.ImportanceSumsFromVector(total, len(x.Features()))
	require.ErrorIs(t, err, explain.ErrVector)
}

func TestNewRefusesModelsItCannotExplain(t *testing.T) {
	doc, _ := testModel(t, 1)
	nan := *doc
	nan.Coefficients = append([]float64{math.Inf(1)}, doc.Coefficients[1:]...)
	short := *doc
	short.Features = doc.Features[1:]
	for name, d := range map[string]*modelfile.Document{"nil": nil, "infinite coefficient": &nan, "features missing": &short} {
		t.Run(name, func(t *testing.T) {
			_, err := explain.New(d)
			require.ErrorIs(t, err, explain.ErrModel)
		})
	}
}

func TestExplainsBankFullTestRows(t *testing.T) {
	split := banktest.Load(t)
	doc := split.Model(t)
	x, err := explain.New(doc)
	require.NoError(t, err)
	got, err := x.Explain(split.Test, 3)
	require.NoError(t, err)
	scores, err := doc.Score(split.Test)
	require.NoError(t, err)
	require.Len(t, got, split.Test.Len())
	for i, e := range got {
		require.InDelta(t, scores[i], e.Score, 1e-12)
		require.LessOrEqual(t, len(e.Raised), 3)
		require.LessOrEqual(t, len(e.Lowered), 3)
	}
	s := x.NewImportanceSums()
	require.NoError(t, x.AddImportance(&s, split.Test))
	imp, err := x.Importance(s)
	require.NoError(t, err)
	for _, m := range imp[:5] {
		t.Logf("%-10s %.3f (%.1f%%)", m.Feature, m.Importance, 100*m.Share)
	}
	// A previous campaign's success is bank-full's strongest single signal.
	assert.Contains(t, []string{imp[0].Feature, imp[1].Feature, imp[2].Feature}, "poutcome")
}

func BenchmarkExplain(b *testing.B) {
	doc, ds := testModel(b, 1000)
	x, err := explain.New(doc)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.Explain(ds, 3); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(1000, "rows/op")
}

func popStd(v []float64) float64 {
	mean := 0.0
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	ss := 0.0
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss / float64(len(v)))
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}
