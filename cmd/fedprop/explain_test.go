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
	code, out, errOut := runCLI(t, "model", "explain", "--model", modelPath, "--data", dataPath, "--top", "1")
	require.Equal(t, 0, code, errOut)
	// Line 2: income 120 -> +2, north +0.5: log-odds 1.5.
	assert.Contains(t, out, "line 2  score 0.8176  log-odds +1.500\n  raised:  income=120 +2.000\n  lowered: -\n")
	// Line 3: income 90 -> -1, south -2: log-odds -4; top 1 keeps the larger.
	assert.Contains(t, out, "line 3  score 0.0180  log-odds -4.000\n  raised:  -\n  lowered: region=south -2.000\n")
	assert.NotContains(t, out, "line 4 ", "the refusing row is not explained")
	assert.Contains(t, out, "line 5 ")
	assert.Contains(t, out, "global feature importance over 3 rows")
	assert.Contains(t, errOut, "1 rows without consent")
}

func TestModelExplainJSON(t *testing.T) {
	modelPath, dataPath := writeExplainFixture(t)
	code, out, errOut := runCLI(t, "model", "explain", "--model", modelPath, "--data", dataPath, "--format", "json")
	require.Equal(t, 0, code, errOut)
	var rep explainReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Equal(t, "y=yes", rep.Model.Target)
	require.Len(t, rep.Records, 3)
	assert.Equal(t, []int{2, 3, 5}, []int{rep.Records[0].Line, rep.Records[1].Line, rep.Records[2].Line})
	assert.InDelta(t, 1/(1+math.Exp(-1.5)), rep.Records[0].Score, 1e-15)
	require.Len(t, rep.Importance, 2)
	// Contributions of region: +0.5, -2, -2: std 1.1785; of income: +2, -1, 0: std 1.2472.
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
