package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/release/modelfile"
)

const explainSchema = `
name: explain-cli
label: {column: y, positive: "yes", negative: ["no"]}
numeric: [income]
categorical:
  - {column: region, values: [north, south]}
consent: {tracked: true, column: consent, grants: ["yes"]}
`

// writeExplainFixture writes a model (income +1 per std, north +0.5, south -2, intercept -1) and
// a CSV without a label column: three consenting rows and one refusing row.
func writeExplainFixture(t *testing.T) (modelPath, dataPath string) {
	t.Helper()
	dir := t.TempDir()
	s, err := dataset.ParseSchema("schema.yaml", []byte(explainSchema))
	require.NoError(t, err)
	doc := &modelfile.Document{
		Format: modelfile.Format, Version: 4, RunID: "run-x", Round: 4,
		Intercept: -1, Coefficients: []float64{1, 0.5, -2}, Features: []string{"income", "region=north", "region=south"},
		Schema: s, Standardization: dataset.Standardization{Mean: []float64{100}, Std: []float64{10}},
	}
	modelPath = filepath.Join(dir, "model.json")
	f, err := os.Create(modelPath)
	require.NoError(t, err)
	require.NoError(t, doc.Write(f))
	require.NoError(t, f.Close())
	dataPath = filepath.Join(dir, "score.csv")
	require.NoError(t, os.WriteFile(dataPath, []byte("income,region,consent\n120,north,yes\n90,south,yes\n100,north,no\n100,south,yes\n"), 0o600))
	return modelPath, dataPath
}

func TestModelExplainText(t *testing.T) {
	modelPath, dataPath := writeExplainFixture(t)
	// The three consenting rows: income 120 north, 90 south, 100 south. Against the file's
	// population region's expected effect is (0.5 - 2 - 2)/3 = -7/6, so north contributes
	// +1.667 and south -0.833; income is measured from its training mean 100.
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"against the data's population (the default)", nil, []string{
			"reference: log-odds -2.167 (score 0.1028; intercept -1.000): numeric features at the training population's mean",
			"categorical features at their mean category effect weighted by their frequencies in the 3 records of score.csv (the model document carries no federated category frequencies)\n",
			// Line 2: income 120 -> +2, north +1.667: log-odds -2.167 + 3.667 = 1.5.
			"line 2  score 0.8176  log-odds +1.500\n  raised:  income=120 +2.000\n  lowered: -\n",
			// Line 3: income 90 -> -1, south -0.833: top 1 keeps the larger.
			"line 3  score 0.0180  log-odds -4.000\n  raised:  -\n  lowered: income=90 -1.000\n",
			"line 5  score 0.0474  log-odds -3.000\n  raised:  -\n  lowered: region=south -0.833\n",
		}},
		{"against zero", []string{"--reference", "zero"}, []string{
			"reference: log-odds -1.000 (score 0.2689; intercept -1.000): numeric features at the training population's mean",
			"categorical features against a coefficient of 0",
			"line 2  score 0.8176  log-odds +1.500\n  raised:  income=120 +2.000\n  lowered: -\n",
			"line 3  score 0.0180  log-odds -4.000\n  raised:  -\n  lowered: region=south -2.000\n",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"model", "explain", "--model", modelPath, "--data", dataPath, "--top", "1"}, tc.args...)...)
			require.Equal(t, 0, code, errOut)
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
			assert.NotContains(t, out, "line 4 ", "the refusing row is not explained")
			assert.Contains(t, out, "global feature importance over 3 rows")
			assert.Contains(t, errOut, "1 rows without consent")
		})
	}
}

func TestModelExplainJSON(t *testing.T) {
	modelPath, dataPath := writeExplainFixture(t)
	code, out, errOut := runCLI(t, "model", "explain", "--model", modelPath, "--data", dataPath, "--format", "json")
	require.Equal(t, 0, code, errOut)
	var rep explainReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Equal(t, "y=yes", rep.Model.Target)
	require.Len(t, rep.Reference.Expected, 2)
	assert.Zero(t, rep.Reference.Expected["income"], "numeric features at the training mean")
	assert.InDelta(t, (0.5-2-2)/3.0, rep.Reference.Expected["region"], 1e-15, "region's category effects weighted by the file's frequencies")
	assert.InDelta(t, -1+(0.5-2-2)/3.0, rep.Reference.ExpectedLogOdds, 1e-15)
	assert.Contains(t, rep.Reference.Description, "score.csv")
	require.Len(t, rep.Records, 3)
	assert.Equal(t, []int{2, 3, 5}, []int{rep.Records[0].Line, rep.Records[1].Line, rep.Records[2].Line})
	assert.InDelta(t, 1/(1+math.Exp(-1.5)), rep.Records[0].Score, 1e-15)
	for _, r := range rep.Records {
		// --top 3 keeps both features: the reference plus all contributions is the log-odds.
		sum := r.ExpectedLogOdds
		for _, c := range append(r.Raised, r.Lowered...) {
			sum += c.Contribution
		}
		assert.InDelta(t, r.LogOdds, sum, 1e-12, "line %d", r.Line)
	}
	require.Len(t, rep.Importance, 2)
	// Effects of region: +0.5, -2, -2: std 1.1785; of income: +2, -1, 0: std 1.2472.
	assert.Equal(t, "income", rep.Importance[0].Feature)
	assert.InDelta(t, math.Sqrt(14.0/9), rep.Importance[0].Importance, 1e-12)
	assert.InDelta(t, math.Sqrt(12.5/9), rep.Importance[1].Importance, 1e-12)
}

func TestModelExplainUsage(t *testing.T) {
	modelPath, dataPath := writeExplainFixture(t)
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no model", []string{"--data", dataPath}, 2, "--model and --data are required"},
		{"bad top", []string{"--model", modelPath, "--data", dataPath, "--top", "0"}, 2, "--top"},
		{"bad format", []string{"--model", modelPath, "--data", dataPath, "--format", "xml"}, 2, "--format"},
		{"bad reference", []string{"--model", modelPath, "--data", dataPath, "--reference", "mean"}, 2, "--reference"},
		{"missing data", []string{"--model", modelPath, "--data", dataPath + ".none"}, 1, "none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"model", "explain"}, tc.args...)...)
			assert.Equal(t, tc.code, code, errOut)
			assert.True(t, strings.Contains(errOut, tc.msg), errOut)
		})
	}
}
