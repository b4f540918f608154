package export_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/sharedtest"
	"github.com/fedprop/fedprop/release/modelfile"
)

// smallSchema has two numeric features, a categorical feature whose unseen values are errors,
// one with an "other" bucket, and a sensitive attribute that is not a model input.
const smallSchema = `
name: small-test
label: {column: y, positive: "yes", negative: ["no"]}
numeric: [income, age]
categorical:
  - {column: region, values: [north, south, east]}
  - {column: channel, values: [app, branch], unseen: other}
consent: {tracked: false}
sensitive:
  - {column: gender}
`

// unseenChannel is the raw value written for rows in channel's "other" bucket.
const unseenChannel = "fax"

// smallModel returns a model over smallSchema with seeded random weights and rows rows covering
// every category, the other bucket included.
func smallModel(t testing.TB, rows int) (*modelfile.Document, *dataset.Dataset) {
	t.Helper()
	s, err := dataset.ParseSchema("small.yaml", []byte(smallSchema))
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(7, 11))
	b := dataset.NewBuilder(s, "small", rows)
	for i := range rows {
		b.Append([]float64{rng.NormFloat64()*20000 + 45000, float64(18 + rng.IntN(70))},
			[]int32{int32(i % 3), int32(i % 3)}, []string{[]string{"f", "m"}[i%2]}, float64(i%2), i+2)
	}
	ds := b.Finish()
	std, err := ds.Stats().Standardization()
	require.NoError(t, err)
	enc, err := dataset.NewEncoder(s, std)
	require.NoError(t, err)
	coef := make([]float64, enc.Dim())
	for i := range coef {
		coef[i] = rng.NormFloat64()
	}
	doc := &modelfile.Document{
		Format: modelfile.Format, Version: 3, RunID: "run-small", Round: 3,
		Created:   time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		Intercept: -0.75, Coefficients: coef, Features: enc.FeatureNames(),
		Schema: s, Standardization: std,
	}
	require.NoError(t, doc.Validate())
	return doc, ds
}

// rawColumns returns the feature columns of ds as the raw values a scoring engine receives: the
// parsed numbers, and each category's vocabulary value (unseenChannel-like placeholders for the
// other bucket).
func rawColumns(ds *dataset.Dataset, unseen string) (numeric [][]float64, categorical [][]string) {
	s := ds.Schema
	numeric = make([][]float64, len(s.Numeric))
	for i := range s.Numeric {
		for r := range ds.Len() {
			numeric[i] = append(numeric[i], ds.Numeric[r][i])
		}
	}
	categorical = make([][]string, len(s.Categorical))
	for j, c := range s.Categorical {
		for r := range ds.Len() {
			v := unseen
			if idx := int(ds.Category[r][j]); idx < len(c.Values) {
				v = c.Values[idx]
			}
			categorical[j] = append(categorical[j], v)
		}
	}
	return numeric, categorical
}

// onnxRuntimeDir returns the directory holding onnxruntime-node and the scoring script, skipping
// t when node or the runtime is not installed (failing it under CI=true).
func onnxRuntimeDir(t *testing.T) string {
	t.Helper()
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	dir := filepath.Join(root, "release", "export", "testdata", "onnxrt")
	_, nodeErr := exec.LookPath("node")
	_, rtErr := os.Stat(filepath.Join(dir, "node_modules", "onnxruntime-node", "package.json"))
	if err := errors.Join(nodeErr, rtErr); err != nil {
		msg := fmt.Sprintf("the ONNX runtime is not installed (%v): run `make onnx-runtime` (Node.js 20 and npm needed)", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("skipping: " + msg)
	}
	return dir
}

type onnxColumn struct {
	Type   string `json:"type"`
	Values any    `json:"values"`
}

type onnxResult struct {
	Version     string    `json:"version"`
	Dims        []int     `json:"dims"`
	Type        string    `json:"type"`
	Probability []float64 `json:"probability"`
	Error       string    `json:"error"`
}

// scoreONNX scores ds's rows with model in onnxruntime-node; categorical values in the other
// bucket are sent as unseen.
func scoreONNX(t *testing.T, model []byte, ds *dataset.Dataset, unseen string) (onnxResult, error) {
	t.Helper()
	numeric, categorical := rawColumns(ds, unseen)
	inputs := map[string]onnxColumn{}
	for i, col := range ds.Schema.Numeric {
		inputs[col] = onnxColumn{"float64", numeric[i]}
	}
	for j, c := range ds.Schema.Categorical {
		inputs[c.Column] = onnxColumn{"string", categorical[j]}
	}
	return scoreTreesONNX(t, model, inputs)
}
