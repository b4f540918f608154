package synth_test

import (
	"bytes"
	"context"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/sharedtest"
	"github.com/fedprop/fedprop/synth"
)

func TestConfigDefaultsAndValidate(t *testing.T) {
	d := synth.DefaultConfig()
	assert.Equal(t, synth.Config{Branches: 8, CustomersPerBranch: 2000, ConsentOptOut: 0.05, TestFraction: 0.2}, d)
	require.NoError(t, d.Validate())
	assert.Equal(t, d, d.WithDefaults(), "WithDefaults is idempotent")
	none := synth.Config{ConsentOptOut: -1, TestFraction: -1}.WithDefaults()
	assert.Equal(t, -1.0, none.ConsentOptOut, "a negative fraction means none and is kept")
	require.NoError(t, none.Validate())

	tests := []struct {
		name string
		cfg  synth.Config
		want string
	}{
		{"negative branches", synth.Config{Branches: -1}, "branches -1"},
		{"negative customers", synth.Config{CustomersPerBranch: -5}, "customers per branch -5"},
		{"too many customers", synth.Config{Branches: 100_000, CustomersPerBranch: 1000}, "exceeds the limit"},
		{"negative extras", synth.Config{ExtraFeatures: -1}, "extra features -1"},
		{"all opt out", synth.Config{ConsentOptOut: 1}, "consent opt-out 1"},
		{"NaN test fraction", synth.Config{TestFraction: math.NaN()}, "test fraction NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			_, err = synth.Generate(tt.cfg)
			require.Error(t, err)
		})
	}
}

func TestSchema(t *testing.T) {
	s := synth.Schema(synth.Config{ExtraFeatures: 25})
	require.NoError(t, s.Validate())
	assert.Len(t, s.Numeric, 32)
	assert.Equal(t, "behav_25", s.Numeric[31])
	assert.True(t, s.Consent.Tracked)
	assert.Equal(t, synth.ConsentColumn, s.Consent.Column)
	assert.False(t, s.Sensitive[1].ModelInput, "gender is not a model input")
}

func TestSchemaFileMatchesCode(t *testing.T) {
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	fromFile, err := dataset.LoadSchema(filepath.Join(root, "configs", "schema-synthetic.yaml"))
	require.NoError(t, err)
	assert.Equal(t, synth.Schema(synth.DefaultConfig()), fromFile)
}

func TestGenerateIsDeterministic(t *testing.T) {
	cfg := synth.Config{Branches: 12, CustomersPerBranch: 300, ExtraFeatures: 3, Seed: 99}
	a, err := synth.Generate(cfg)
	require.NoError(t, err)
	prev := runtime.GOMAXPROCS(1) // a different schedule must give the same draw
	b, err := synth.Generate(cfg)
	runtime.GOMAXPROCS(prev)
	require.NoError(t, err)
	require.Equal(t, a, b)

	cfg.Seed++
	c, err := synth.Generate(cfg)
	require.NoError(t, err)
	assert.NotEqual(t, a[0].Train.Numeric, c[0].Train.Numeric)
}

func TestGenerateShape(t *testing.T) {
	cfg := synth.Config{Branches: 20, ExtraFeatures: 5, Seed: 7}
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	require.Len(t, branches, 20)
	s := synth.Schema(cfg)
	total, test, excluded := 0, 0, 0
	var meanAges, rates []float64
	for i, b := range branches {
		assert.Equal(t, synth.BranchName(cfg, i), b.Name)
		assert.Equal(t, b.Train.ExcludedNoConsent, b.TrainOptedOut.Len())
		assert.Equal(t, b.Test.ExcludedNoConsent, b.TestOptedOut.Len())
		n := b.Train.Len() + b.Test.Len() + b.TrainOptedOut.Len() + b.TestOptedOut.Len()
		total += n
		test += b.Test.Len() + b.TestOptedOut.Len()
		excluded += b.TrainOptedOut.Len() + b.TestOptedOut.Len()
		assert.InDelta(t, 0.2*float64(n), float64(b.Test.Len()+b.TestOptedOut.Len()), 0.5)
		for _, d := range []*dataset.Dataset{b.Train, b.Test} {
			requireWellFormed(t, s, d)
		}
		ages := 0.0
		for _, row := range b.Train.Numeric {
			ages += row[0]
		}
		meanAges = append(meanAges, ages/float64(b.Train.Len()))
		rates = append(rates, float64(b.Train.Positives())/float64(b.Train.Len()))
	}
	assert.Equal(t, 20*2000, total, "branch sizes add up to Branches x CustomersPerBranch")
	assert.InDelta(t, 0.05, float64(excluded)/float64(total), 0.01)
	assert.InDelta(t, 0.2, float64(test)/float64(total), 0.01)
	// Branches are not IID: their age profiles and base rates differ.
	assert.Greater(t, spread(meanAges), 2.0)
	assert.Greater(t, spread(rates), 0.02)
}

func TestNoOptOutNoTest(t *testing.T) {
	branches, err := synth.Generate(synth.Config{Branches: 2, CustomersPerBranch: 100, ConsentOptOut: -1, TestFraction: -1})
	require.NoError(t, err)
	for _, b := range branches {
		assert.Equal(t, 0, b.Test.Len())
		assert.Equal(t, 0, b.Train.ExcludedNoConsent)
		assert.Equal(t, 0, b.TrainOptedOut.Len())
		assert.Positive(t, b.Train.Len())
	}
}

// TestPropensityIsRealistic checks the base rate and the AUC a well-fitted logistic
// regression reaches, and that the ground truth is calibrated to the drawn labels.
func TestPropensityIsRealistic(t *testing.T) {
	cfg := synth.Config{Branches: 20, Seed: 2}
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	truth := synth.GroundTruth(cfg)
	var trains, tests []*dataset.Dataset
	sumTruth, n := 0.0, 0
	for _, b := range branches {
		trains, tests = append(trains, b.Train), append(tests, b.Test)
		for i := range b.Train.Len() {
			p := truth(b.Train, i)
			require.True(t, p > 0 && p < 1, "truth %v", p)
			sumTruth += p
			n++
		}
	}
	train, test := dataset.Concat(trains...), dataset.Concat(tests...)
	rate := float64(train.Positives()) / float64(train.Len())
	assert.InDelta(t, 0.115, rate, 0.035, "base rate")
	assert.InDelta(t, rate, sumTruth/float64(n), 0.01, "the labels follow the ground truth")

	fitted := auc(fittedLogistic(t, train, test), test.Label)
	assert.Greater(t, fitted, 0.75)
	assert.Less(t, fitted, 0.85)

	var trueScores, labels []float64
	for _, b := range branches {
		for i := range b.Test.Len() {
			trueScores = append(trueScores, truth(b.Test, i))
			labels = append(labels, b.Test.Label[i])
		}
	}
	assert.Greater(t, auc(trueScores, labels), fitted, "no model beats the truth")
}

func TestGroundTruthNeedsTheBranch(t *testing.T) {
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 50, Seed: 1}
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	truth := synth.GroundTruth(cfg)
	d := branches[1].Train
	want := truth(d, 0)
	assert.False(t, math.IsNaN(want))
	assert.Equal(t, want, synth.GroundTruthForBranch(cfg, 1)(d, 0))
	assert.NotEqual(t, want, synth.GroundTruthForBranch(cfg, 2)(d, 0), "branches have their own effect")

	renamed := *d
	renamed.Source = "merged.csv"
	assert.True(t, math.IsNaN(truth(&renamed, 0)))
	assert.True(t, math.IsNaN(truth(d, d.Len())))
	assert.True(t, math.IsNaN(synth.GroundTruthForBranch(cfg, 3)(d, 0)))
	other := *d
	other.Schema = &dataset.Schema{Numeric: []string{"x"}}
	assert.True(t, math.IsNaN(truth(&other, 0)))
}

func TestBranchIndex(t *testing.T) {
	tests := []struct {
		source string
		want   int
		ok     bool
	}{
		{"branch-007/train", 7, true},
		{"shards/branch-012.train.csv", 12, true},
		{"branch-0", 0, true},
		{"branch-x.csv", 0, false},
		{"bank.csv", 0, false},
	}
	for _, tt := range tests {
		b, ok := synth.BranchIndex(tt.source)
		assert.Equal(t, tt.ok, ok, tt.source)
		assert.Equal(t, tt.want, b, tt.source)
	}
}

func TestShardsRoundTripThroughCSV(t *testing.T) {
	cfg := synth.Config{Branches: 4, CustomersPerBranch: 400, ExtraFeatures: 2, Seed: 5}
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	truth := synth.GroundTruth(cfg)
	b := branches[3]

	var buf bytes.Buffer
	require.NoError(t, synth.WriteShard(&buf, b.Train, b.TrainOptedOut))
	assert.True(t, strings.Contains(buf.String(), "\nmarketing-only,"), "opted-out rows are in the shard")
	got, err := dataset.ReadCSVFrom(context.Background(), &buf, "shards/"+b.Name+".train.csv", schema)
	require.NoError(t, err)
	requireSameRows(t, b.Train, got)
	assert.Equal(t, b.TrainOptedOut.Len(), got.ExcludedNoConsent)
	assert.Positive(t, got.ExcludedNoConsent)
	assert.Equal(t, truth(b.Train, 5), truth(got, 5), "the truth follows the file name")

	buf.Reset()
	require.NoError(t, dataset.WriteCSV(&buf, b.Test))
	got, err = dataset.ReadCSVFrom(context.Background(), &buf, "test.csv", schema)
	require.NoError(t, err)
	requireSameRows(t, b.Test, got)
}

func TestManySmallAppClients(t *testing.T) {
	if testing.Short() {
		t.Skip("draws a million rows")
	}
	cfg := synth.Config{Branches: 100_000, CustomersPerBranch: 10, Seed: 3}
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	require.Len(t, branches, 100_000)
	customers, sizes := 0, map[int]int{}
	for _, b := range branches {
		n := b.Train.Len() + b.Test.Len() + b.TrainOptedOut.Len() + b.TestOptedOut.Len()
		require.GreaterOrEqual(t, n, 2)
		customers += n
		sizes[n]++
	}
	// Only the minimum of 2 customers per client can add to the total.
	assert.InDelta(t, 1_000_000, customers, 1000)
	assert.Greater(t, len(sizes), 10, "client sizes vary")
}

// BenchmarkGenerate1M draws 1,000,000 customers with 32 numeric features (7 base + 25
// extra, plus 3 categorical) over 160 branches.
func BenchmarkGenerate1M(b *testing.B) {
	cfg := synth.Config{Branches: 160, CustomersPerBranch: 6250, ExtraFeatures: 25, Seed: 1}
	b.ReportAllocs()
	for b.Loop() {
		branches, err := synth.Generate(cfg)
		if err != nil {
			b.Fatal(err)
		}
		rows := 0
		for _, br := range branches {
			rows += br.Train.Len() + br.Test.Len() + br.TrainOptedOut.Len() + br.TestOptedOut.Len()
		}
		b.ReportMetric(float64(rows), "rows")
	}
}

func requireWellFormed(t *testing.T, s *dataset.Schema, d *dataset.Dataset) {
	t.Helper()
	for i := range d.Len() {
		for j, v := range d.Numeric[i] {
			require.False(t, math.IsNaN(v) || math.IsInf(v, 0), "%s row %d %s = %v", d.Source, i, s.Numeric[j], v)
		}
		for j, c := range d.Category[i] {
			require.True(t, c >= 0 && int(c) < len(s.Categorical[j].Values))
		}
		require.Contains(t, []string{"<30", "30-60", ">=60"}, d.Groups[i][0])
		require.Contains(t, []string{"female", "male"}, d.Groups[i][1])
		age := d.Numeric[i][0]
		require.True(t, age >= 18 && age <= 90)
		require.LessOrEqual(t, d.Numeric[i][3], age-18, "tenure within adult life")
	}
}

func requireSameRows(t *testing.T, want, got *dataset.Dataset) {
	t.Helper()
	require.Equal(t, want.Len(), got.Len())
	assert.Equal(t, want.Numeric, got.Numeric)
	assert.Equal(t, want.Category, got.Category)
	assert.Equal(t, want.Label, got.Label)
	assert.Equal(t, want.Groups, got.Groups)
}

func spread(v []float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return hi - lo
}
