package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/release/modelfile"
)

// writeTreeFixture writes a tree model fitted on explainSchema's columns (the consent column
// aside) and the CSV of writeExplainFixture: three consenting rows and one refusing row.
func writeTreeFixture(t *testing.T) (modelPath, dataPath string) {
	t.Helper()
	s, err := dataset.ParseSchema("schema.yaml", []byte(explainSchema))
	require.NoError(t, err)
	std := dataset.Standardization{Mean: []float64{100}, Std: []float64{10}}
	rng := rand.New(rand.NewPCG(7, 8))
	b := dataset.NewBuilder(s, "train", 400)
	for i := range 400 {
		income, region := 100+10*rng.NormFloat64(), int32(rng.IntN(2))
		label := 0.0
		if rng.Float64() < 1/(1+math.Exp(-((income-100)/10-2*float64(region)+0.5))) {
			label = 1
		}
		b.Append([]float64{income}, []int32{region}, nil, label, i+2)
	}
	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth, p.Bins = 4, 2, 16
	trees, err := gbdt.Fit(b.Finish(), std, p)
	require.NoError(t, err)
	doc := &modelfile.Document{Format: modelfile.Format, Version: 6, RunID: "run-t", Round: 4, Trees: trees, Schema: s, Standardization: std}
	require.NoError(t, doc.Validate())

	dir := t.TempDir()
	modelPath = filepath.Join(dir, "model.json")
	f, err := os.Create(modelPath)
	require.NoError(t, err)
	require.NoError(t, doc.Write(f))
	require.NoError(t, f.Close())
	dataPath = filepath.Join(dir, "score.csv")
	require.NoError(t, os.WriteFile(dataPath, []byte("income,region,consent\n120,north,yes\n90,south,yes\n100,north,no\n100,south,yes\n"), 0o600))
	return modelPath, dataPath
}

func TestModelExplainTrees(t *testing.T) {
	modelPath, dataPath := writeTreeFixture(t)
	code, out, errOut := runCLI(t, "model", "explain", "--model", modelPath, "--data", dataPath, "--format", "json")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "explained 3 rows with model version 6 (TreeSHAP)")
	var rep treeReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Equal(t, "y=yes", rep.Model.Target)
	assert.Contains(t, rep.Reference, "exact path-dependent TreeSHAP")
	require.Len(t, rep.Records, 3)
	assert.Equal(t, []int{2, 3, 5}, []int{rep.Records[0].Line, rep.Records[1].Line, rep.Records[2].Line})
	for _, r := range rep.Records {
		// Two features, --top 3: every non-zero contribution is listed.
		sum := rep.ExpectedLogOdds
		for _, c := range append(r.Raised, r.Lowered...) {
			sum += c.Contribution
		}
		assert.InDelta(t, r.LogOdds, sum, 1e-12, "line %d: the expected log-odds plus the contributions", r.Line)
		assert.InDelta(t, 1/(1+math.Exp(-r.LogOdds)), r.Score, 1e-15)
	}
	require.Len(t, rep.Importance, 2)
	gain := 0.0
	for _, imp := range rep.Importance {
		assert.Contains(t, []string{"income", "region"}, imp.Feature)
		gain += imp.GainShare
	}
	assert.InDelta(t, 1, gain, 1e-12, "the gain shares add up to 1")
	assert.GreaterOrEqual(t, rep.Importance[0].MeanAbsSHAP, rep.Importance[1].MeanAbsSHAP, "most important first")

	code, out, errOut = runCLI(t, "model", "explain", "--model", modelPath, "--data", dataPath, "--top", "1")
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{
		"model version 6 (run run-t, schema explain-cli): 4 trees; score = P(y=yes); a record's log-odds = the expected log-odds + its contributions\n",
		fmt.Sprintf("reference: log-odds %s (score %.4f): the model's expectation", signed(rep.ExpectedLogOdds), sigmoid(rep.ExpectedLogOdds)),
		fmt.Sprintf("line 2  score %.4f  log-odds %s\n", rep.Records[0].Score, signed(rep.Records[0].LogOdds)),
		"global feature importance over 3 rows (mean |contribution| to the log-odds; share of the trees' split gain):",
	} {
		assert.Contains(t, out, want)
	}
	assert.Equal(t, 3, strings.Count(out, "  raised:  "), "one block per consenting row")
}
