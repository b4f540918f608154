package export_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/banktest"
	"github.com/fedprop/fedprop/model/gbdt"
)

// treeTolerance is the largest difference between fedprop's probability and an exported tree
// model's the exports must keep to: both compute in double precision and take the same
// branches, so only the order of the sum of the trees can differ.
const treeTolerance = 1e-9

// bankTreesFit is a small tree model of bank-full's training rows, fitted once for the tests
// that need it.
var bankTreesFit struct {
	once sync.Once
	m    *gbdt.Model
	err  error
}

// bankTrees loads bank-full (skipping without the shared data, failing under CI=true) and
// returns its split and a model of 30 trees of depth 4 fitted on the training rows,
// standardised with their statistics: enough trees and depth to use every kind of split the
// data has, and seconds to fit.
func bankTrees(t *testing.T) (banktest.Split, *gbdt.Model) {
	t.Helper()
	split := banktest.Load(t)
	bankTreesFit.once.Do(func() {
		std, err := split.Train.Stats().Standardization()
		if err != nil {
			bankTreesFit.err = err
			return
		}
		p := gbdt.DefaultParams()
		p.Trees, p.MaxDepth = 30, 4
		bankTreesFit.m, bankTreesFit.err = gbdt.Fit(split.Train, std, p)
	})
	require.NoError(t, bankTreesFit.err)
	return split, bankTreesFit.m
}

// treesSchema has a numeric feature that is never missing and two that impute missing values,
// a categorical feature whose unseen values are errors, one with an "other" bucket, and one
// whose missing values are a category of their own.
const treesSchema = `
name: trees-test
label: {column: y, positive: "yes", negative: ["no"]}
numeric: [income, age, score]
categorical:
  - {column: region, values: [north, south, east]}
  - {column: channel, values: [app, branch], unseen: other}
  - {column: segment, values: [retail, private]}
consent: {tracked: false}
missing: {income: impute, score: impute, segment: category}
`

// unseenValue is the raw value written for rows in a categorical column's "other" bucket.
const unseenValue = "fax"

// treesData returns n rows over treesSchema drawn with seed: incomes and scores missing in a
// fifth of the rows, channels in the "other" bucket and segments missing in a quarter, and a
// label that depends on all of them, so that the trees split on missing values and buckets.
func treesData(t testing.TB, seed uint64, n int) *dataset.Dataset {
	t.Helper()
	s, err := dataset.ParseSchema("trees.yaml", []byte(treesSchema))
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(seed, 3))
	b := dataset.NewBuilder(s, "trees", n)
	for range n {
		income := math.Exp(r.NormFloat64()*0.5) * 40000
		age := float64(18 + r.IntN(70))
		score := r.NormFloat64()*100 + 600
		region, channel, segment := int32(r.IntN(3)), int32(r.IntN(3)), int32(r.IntN(3)) // channel 2: other; segment 2: <missing>
		z := -0.5 + 1.2*math.Log(income/40000) + 0.02*(age-50) + 0.01*(score-600)
		if r.Float64() < 0.2 {
			income = math.NaN()
			z += 1.0 // customers who withhold their income behave like rich ones
		}
		if r.Float64() < 0.2 {
			score = math.NaN()
			z -= 1.5 // and those without a score like poor ones
		}
		if channel == 2 {
			z += 1.5
		}
		if segment == 2 {
			z -= 1.0
		}
		if region == 1 {
			z += 0.7
		}
		y := 0.0
		if r.Float64() < 1/(1+math.Exp(-z)) {
			y = 1
		}
		b.Append([]float64{income, age, score}, []int32{region, channel, segment}, nil, y, 0)
	}
	return b.Finish()
}

// treesModel returns a model fitted on treesData and adjusted so that it holds every kind of
// split the exports write: on a numeric column that may be missing, splits sending missing
// values left and splits sending them right; a split of a categorical column's "other" bucket
// and one of its missing category; and a tree that is a single leaf. Fitting finds most of
// these by itself; the test makes sure of all of them.
func treesModel(t testing.TB) (*gbdt.Model, *dataset.Dataset) {
	t.Helper()
	train := treesData(t, 1, 3000)
	std, err := train.Stats().Standardization()
	require.NoError(t, err)
	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth = 20, 3
	m, err := gbdt.Fit(train, std, p)
	require.NoError(t, err)

	channel, segment := len(m.Features)-2, len(m.Features)-1
	otherBin, missingBin := len(m.Features[channel].Levels), len(m.Features[segment].Levels)-1
	require.Equal(t, dataset.MissingCategory, m.Features[segment].Levels[missingBin])
	var missingLeft, missingRight, other, missingCategory int
	for ti := range m.Trees {
		for i := range m.Trees[ti].Nodes {
			n := &m.Trees[ti].Nodes[i]
			switch {
			case n.IsLeaf():
			case n.Feature == 0 || n.Feature == 2: // income, score: may be missing
				// Alternate the side of missing values: a valid model either way, and
				// fedprop's scores are what the exports must match.
				n.MissingLeft = (missingLeft+missingRight)%2 == 0
				if n.MissingLeft {
					missingLeft++
				} else {
					missingRight++
				}
			case n.Feature == channel && n.Bin == otherBin:
				other++
			case n.Feature == segment && n.Bin == missingBin:
				missingCategory++
			}
		}
	}
	require.Positive(t, missingLeft, "splits sending missing values left")
	require.Positive(t, missingRight, "splits sending missing values right")
	require.Positive(t, other, "splits of channel's other bucket")
	require.Positive(t, missingCategory, "splits of segment's missing category")
	m.Trees = append(m.Trees, gbdt.Tree{Nodes: []gbdt.Node{{Left: -1, Right: -1, Feature: -1, Value: 0.125}}})
	require.NoError(t, m.Validate())
	return m, withCutPoints(m, treesData(t, 2, 600))
}

// withCutPoints returns ds followed by rows at the cut points of m's numeric splits: copies of
// ds's rows (in turn) whose split feature is the threshold on the raw scale, t*Std+Mean, or one
// of the three floats above or below it. The exact cut point, where the standardised test
// flips, is among them, so an export that rounds a threshold to the wrong side scores one of
// these rows otherwise than fedprop; data rows almost never fall there.
func withCutPoints(m *gbdt.Model, ds *dataset.Dataset) *dataset.Dataset {
	type cut struct {
		feature   int
		threshold float64
	}
	seen := map[cut]bool{}
	b := dataset.NewBuilder(ds.Schema, ds.Source+" and cut points", ds.Len())
	for r := range ds.Len() {
		b.Append(ds.Numeric[r], ds.Category[r], ds.Groups[r], ds.Label[r], ds.Line[r])
	}
	next := 0
	for _, tree := range m.Trees {
		for _, n := range tree.Nodes {
			c := cut{n.Feature, n.Threshold}
			if n.IsLeaf() || m.Features[n.Feature].Kind != gbdt.Numeric || seen[c] {
				continue
			}
			seen[c] = true
			raw, _ := m.RawThreshold(n)
			for k := -3; k <= 3; k++ {
				r := next % ds.Len()
				next++
				numeric := append([]float64(nil), ds.Numeric[r]...)
				numeric[n.Feature] = floatsAway(raw, k)
				b.Append(numeric, ds.Category[r], ds.Groups[r], ds.Label[r], 0)
			}
		}
	}
	return b.Finish()
}

// floatsAway returns the float k floats above x (below for k < 0).
func floatsAway(x float64, k int) float64 {
	for ; k > 0; k-- {
		x = math.Nextafter(x, math.Inf(1))
	}
	for ; k < 0; k++ {
		x = math.Nextafter(x, math.Inf(-1))
	}
	return x
}

// treeInputs returns the rows of ds as the ONNX graph's inputs: numbers (the string "NaN" for a
// missing one, which score.js's Float64Array.from reads as NaN, and JSON cannot hold), and
// vocabulary values (unseen for the "other" bucket; a missing category is its level's name).
func treeInputs(ds *dataset.Dataset, unseen string) map[string]onnxColumn {
	inputs := map[string]onnxColumn{}
	for i, col := range ds.Schema.Numeric {
		values := make([]any, ds.Len())
		for r := range values {
			if v := ds.Numeric[r][i]; math.IsNaN(v) {
				values[r] = "NaN"
			} else {
				values[r] = v
			}
		}
		inputs[col] = onnxColumn{"float64", values}
	}
	for j, c := range ds.Schema.Categorical {
		values := make([]string, ds.Len())
		for r := range values {
			values[r] = unseen
			if idx := int(ds.Category[r][j]); idx < len(c.Values) {
				values[r] = c.Values[idx]
			}
		}
		inputs[c.Column] = onnxColumn{"string", values}
	}
	return inputs
}

// treeRecords returns the rows of ds as the raw records a PMML engine receives: a missing value
// (a NaN, or a categorical column's missing category) is absent, a value in the "other" bucket
// is unseen, numbers are written with the fewest digits that read back exactly.
func treeRecords(ds *dataset.Dataset, unseen string) []map[string]string {
	out := make([]map[string]string, ds.Len())
	for r := range out {
		rec := map[string]string{}
		for i, col := range ds.Schema.Numeric {
			if v := ds.Numeric[r][i]; !math.IsNaN(v) {
				rec[col] = formatNumber(v)
			}
		}
		for j, c := range ds.Schema.Categorical {
			switch idx := int(ds.Category[r][j]); {
			case idx >= len(c.Values):
				rec[c.Column] = unseen
			case c.Values[idx] != dataset.MissingCategory:
				rec[c.Column] = c.Values[idx]
			}
		}
		out[r] = rec
	}
	return out
}

// scoreTreesONNX scores named input columns with model in onnxruntime-node (score.js); the
// logistic export's scoreONNX builds its columns from a dataset and calls it too.
func scoreTreesONNX(t *testing.T, model []byte, inputs map[string]onnxColumn) (onnxResult, error) {
	t.Helper()
	dir := onnxRuntimeDir(t)
	tmp := t.TempDir()
	modelPath := filepath.Join(tmp, "model.onnx")
	require.NoError(t, os.WriteFile(modelPath, model, 0o600))
	raw, err := json.Marshal(inputs)
	require.NoError(t, err)
	inputsPath := filepath.Join(tmp, "inputs.json")
	require.NoError(t, os.WriteFile(inputsPath, raw, 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "score.js"), modelPath, inputsPath)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var res onnxResult
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("onnx runtime: %v, output %q, stderr %q: %w", runErr, out, stderr.String(), err)
	}
	if res.Error != "" || runErr != nil {
		return res, fmt.Errorf("onnx runtime: %s (%v)", res.Error, runErr)
	}
	return res, nil
}
