package explain_test

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/explain"
)

// populationReference is the training reference over ds's own category frequencies.
func populationReference(t *testing.T, x *explain.Explainer, ds *dataset.Dataset) *explain.Explainer {
	t.Helper()
	shares, err := x.CategorySharesOf(ds)
	require.NoError(t, err)
	ref, err := x.TrainingReference(shares, "the test population")
	require.NoError(t, err)
	y, err := x.WithReference(ref)
	require.NoError(t, err)
	return y
}

// Against a population's reference, every record's contributions plus the expected log-odds
// are its log-odds, each contribution is the effect minus the column's expected effect, and
// the population's mean contribution is 0 in every categorical column (numeric columns are
// measured from the training mean, which this sample only approximates).
func TestContributionsAgainstAReferenceAddUpToTheMargin(t *testing.T) {
	doc, ds := testModel(t, 500)
	x0, err := explain.New(doc)
	require.NoError(t, err)
	x := populationReference(t, x0, ds)
	ref := x.Reference()
	assert.Contains(t, ref.Description, "numeric features at the training population's mean")
	assert.Contains(t, ref.Description, "weighted by the test population")

	// The expected effects by hand: region (north 0.5, south -1.2, east 0) and channel (app
	// 0.25, branch -0.1, other 2) weighted by their frequencies.
	counts := [2][3]float64{}
	for i := range ds.Len() {
		counts[0][ds.Category[i][0]]++
		counts[1][ds.Category[i][1]]++
	}
	n := float64(ds.Len())
	wantRegion := (0.5*counts[0][0] - 1.2*counts[0][1] + 0*counts[0][2]) / n
	wantChannel := (0.25*counts[1][0] - 0.1*counts[1][1] + 2*counts[1][2]) / n
	assert.InDeltaSlice(t, []float64{0, 0, wantRegion, wantChannel}, ref.Expected, 1e-15)
	assert.InDelta(t, testIntercept+wantRegion+wantChannel, ref.ExpectedLogOdds, 1e-15)

	mean := make([]float64, 4)
	for i := range ds.Len() {
		contrib, logOdds, err := x.Contributions(ds, i)
		require.NoError(t, err)
		sum := ref.ExpectedLogOdds
		for k, c := range contrib {
			sum += c.Contribution
			require.Equal(t, c.Effect-ref.Expected[k], c.Contribution)
			mean[k] += c.Contribution / n
		}
		require.InDelta(t, logOdds, sum, 1e-12, "row %d: contributions + expected log-odds = log-odds", i)
		_, logOdds0, err := x0.Contributions(ds, i)
		require.NoError(t, err)
		require.Equal(t, logOdds0, logOdds, "the reference changes no score")
	}
	assert.InDelta(t, 0, mean[2], 1e-12, "region's mean contribution over its own population")
	assert.InDelta(t, 0, mean[3], 1e-12, "channel's mean contribution over its own population")

	got, err := x.Explain(ds, 0)
	require.NoError(t, err)
	for i, e := range got {
		sum := e.ExpectedLogOdds
		for _, c := range slices.Concat(e.Raised, e.Lowered) {
			sum += c.Contribution
		}
		require.InDelta(t, e.LogOdds, sum, 1e-12, "row %d", i)
	}
}

// A record at the population's mean contributes about nothing: numeric values at the training
// mean contribute exactly 0, and the category nearly everyone has contributes close to 0,
// wherever the coefficients lie.
func TestARecordAtThePopulationMeanContributesAboutNothing(t *testing.T) {
	doc, _ := testModel(t, 1)
	x0, err := explain.New(doc)
	require.NoError(t, err)
	cases := []struct {
		name   string
		shares explain.CategoryShares
		// the record: region and channel indices
		region, channel int32
		maxAbs          float64
	}{
		// Everyone in south and app: the record is the population.
		{"a population of one kind", explain.CategoryShares{{0, 1, 0}, {1, 0, 0}}, 1, 0, 0},
		// 99% north and branch: 1% elsewhere moves the mean effect by at most 1% of the
		// largest coefficient gap (1.7 for region, 2.1 for channel).
		{"nearly everyone alike", explain.CategoryShares{{0.99, 0.005, 0.005}, {0.005, 0.99, 0.005}}, 0, 1, 0.01 * 2.1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := x0.TrainingReference(tc.shares, "the case's shares")
			require.NoError(t, err)
			x, err := x0.WithReference(ref)
			require.NoError(t, err)
			b := dataset.NewBuilder(doc.Schema, "mean.csv", 1)
			// income and age at the standardisation's mean: 0 and 40.
			b.Append([]float64{0, 40}, []int32{tc.region, tc.channel}, nil, 1, 2)
			ds := b.Finish()
			contrib, logOdds, err := x.Contributions(ds, 0)
			require.NoError(t, err)
			assert.Zero(t, contrib[0].Contribution, "income at the training mean")
			assert.Zero(t, contrib[1].Contribution, "age at the training mean")
			for _, c := range contrib[2:] {
				assert.LessOrEqual(t, math.Abs(c.Contribution), tc.maxAbs+1e-15, c.Feature)
			}
			sum := ref.ExpectedLogOdds
			for _, c := range contrib {
				sum += c.Contribution
			}
			assert.InDelta(t, logOdds, sum, 1e-12)
		})
	}
}

// The motivating case: every category coefficient of region is negative. Against zero, every
// record shows its region as lowering its score; against the population, the regions better
// than the average raise it and only the worse ones lower it.
func TestAllNegativeCategoriesNoLongerAllLowerTheScore(t *testing.T) {
	doc, ds := testModel(t, 300)
	neg := *doc
	neg.Coefficients = slices.Clone(doc.Coefficients)
	neg.Coefficients[2], neg.Coefficients[3], neg.Coefficients[4] = -0.496, -0.9, -1.4 // north, south, east
	x0, err := explain.New(&neg)
	require.NoError(t, err)
	x := populationReference(t, x0, ds)

	side := func(x *explain.Explainer) (raised, lowered int) {
		got, err := x.Explain(ds, 0)
		require.NoError(t, err)
		for _, e := range got {
			for _, c := range e.Raised {
				if c.Feature == "region" {
					raised++
				}
			}
			for _, c := range e.Lowered {
				if c.Feature == "region" {
					lowered++
				}
			}
		}
		return raised, lowered
	}
	raised, lowered := side(x0)
	assert.Zero(t, raised, "against zero no region ever raises a score")
	assert.Equal(t, ds.Len(), lowered)
	raised, lowered = side(x)
	assert.Positive(t, raised, "north, the best region, raises scores against the population")
	assert.Positive(t, lowered, "east, the worst, lowers them")
	assert.Contains(t, x0.Reference().Description, "against a coefficient of 0")
}

// The federated evaluation's sums give the same expected effects as counting the same
// population's categories: Sum over N of a categorical column is its frequency-weighted mean
// category effect.
func TestEvaluationSumsGiveThePopulationReference(t *testing.T) {
	doc, ds := testModel(t, 900)
	x, err := explain.New(doc)
	require.NoError(t, err)
	total := make([]float64, 1+2*len(x.Features()))
	for _, part := range [][]int{seq(0, 200), seq(200, 900)} {
		s := x.NewImportanceSums()
		require.NoError(t, x.AddImportance(&s, ds.Subset(part)))
		for i, v := range s.Vector() {
			total[i] += v
		}
	}
	sums, err := explain.ImportanceSumsFromVector(total, len(x.Features()))
	require.NoError(t, err)
	fromSums, err := x.EvaluationReference(sums, "the federated evaluation")
	require.NoError(t, err)
	shares, err := x.CategorySharesOf(ds)
	require.NoError(t, err)
	fromShares, err := x.TrainingReference(shares, "counted categories")
	require.NoError(t, err)
	assert.InDeltaSlice(t, fromShares.Expected, fromSums.Expected, 1e-12)
	assert.InDelta(t, fromShares.ExpectedLogOdds, fromSums.ExpectedLogOdds, 1e-12)
	assert.Equal(t, []float64{0, 0}, fromSums.Expected[:2], "numeric columns stay at the training mean")
	assert.Contains(t, fromSums.Description, "over the federated evaluation")
}

func TestReferencesThatDoNotFitAreRefused(t *testing.T) {
	doc, ds := testModel(t, 10)
	x, err := explain.New(doc)
	require.NoError(t, err)
	good := explain.CategoryShares{{0.2, 0.3, 0.5}, {0.5, 0.5, 0}}
	_, err = x.TrainingReference(good, "good")
	require.NoError(t, err)
	cases := []struct {
		name string
		err  func() error
	}{
		{"shares for one column", func() error { _, err := x.TrainingReference(good[:1], "x"); return err }},
		{"shares of the wrong width", func() error {
			_, err := x.TrainingReference(explain.CategoryShares{{0.5, 0.5}, {1, 0, 0}}, "x")
			return err
		}},
		{"a negative share", func() error {
			_, err := x.TrainingReference(explain.CategoryShares{{-0.1, 0.6, 0.5}, {1, 0, 0}}, "x")
			return err
		}},
		{"a NaN share", func() error {
			_, err := x.TrainingReference(explain.CategoryShares{{math.NaN(), 0, 0}, {1, 0, 0}}, "x")
			return err
		}},
		{"shares above 1", func() error {
			_, err := x.TrainingReference(explain.CategoryShares{{0.6, 0.6, 0}, {1, 0, 0}}, "x")
			return err
		}},
		{"expected effects of the wrong length", func() error {
			_, err := x.WithReference(explain.Reference{Expected: []float64{0}})
			return err
		}},
		{"an infinite expected effect", func() error {
			_, err := x.WithReference(explain.Reference{Expected: []float64{0, 0, math.Inf(1), 0}})
			return err
		}},
		{"evaluation sums over no rows", func() error {
			_, err := x.EvaluationReference(x.NewImportanceSums(), "x")
			return err
		}},
		{"evaluation sums of another model", func() error {
			_, err := x.EvaluationReference(explain.ImportanceSums{N: 1, Sum: []float64{1}, SumSq: []float64{1}}, "x")
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.err(), explain.ErrReference)
		})
	}
	_, err = x.CategorySharesOf(ds.Subset(nil))
	require.ErrorIs(t, err, explain.ErrData, "no rows")
}
