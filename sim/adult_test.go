package sim_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/dataset/parquet"
	"github.com/fedprop/fedprop/internal/sharedtest"
	"github.com/fedprop/fedprop/sim"
	"github.com/fedprop/fedprop/synth"
)

// adultLike writes n records shaped as UCI Adult is published: no header, ", " separators,
// "?" for a missing workclass, occupation or country, a junk first line (as adult.test has),
// and labels with and without adult.test's trailing dot. Income depends on age, education,
// hours and marriage, so that a model has something to learn.
func adultLike(t *testing.T, n int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 5))
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	var b strings.Builder
	b.WriteString("|1x3 Cross validator\n")
	for range n {
		age := 17 + rng.IntN(60)
		edu := 1 + rng.IntN(16)
		hours := 10 + rng.IntN(60)
		married := rng.IntN(2) == 0
		ms, rel := "Never-married", "Not-in-family"
		if married {
			ms, rel = "Married-civ-spouse", pick("Husband", "Wife")
		}
		z := -7 + 0.04*float64(age) + 0.3*float64(edu) + 0.03*float64(hours)
		if married {
			z += 1.5
		}
		label := "<=50K"
		if rng.Float64() < 1/(1+math.Exp(-z)) {
			label = ">50K"
		}
		if rng.IntN(2) == 0 {
			label += "."
		}
		work := pick("Private", "Self-emp-not-inc", "Local-gov", "?")
		occ := pick("Tech-support", "Sales", "Exec-managerial", "Prof-specialty", "?")
		country := pick("United-States", "United-States", "Mexico", "?")
		fmt.Fprintf(&b, "%d, %s, %d, Bachelors, %d, %s, %s, %s, White, %s, %d, 0, %d, %s, %s\n",
			age, work, 100000+rng.IntN(200000), edu, ms, occ, rel, pick("Male", "Female"), rng.IntN(3)*1000, hours, country, label)
	}
	path := filepath.Join(t.TempDir(), "adult.data")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	return path
}

// TestAdultAsPublishedRunsWithASchemaAlone: a file in UCI Adult's published layout is read by
// the simulator through configs/schema-adult.yaml alone, with no conversion, and trains.
func TestAdultAsPublishedRunsWithASchemaAlone(t *testing.T) {
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	data := adultLike(t, 3000)
	doc := fmt.Sprintf(`
seed: 4
data:
  source: csv
  csv:
    path: %s
    schema: %s
    test_fraction: 0.2
  partition: {method: iid, clients: 4}
run:
  rounds: 5
  min_clients: 4
`, data, filepath.Join(root, "configs/schema-adult.yaml"))
	cfg := parse(t, doc)
	world, err := sim.LoadWith(context.Background(), cfg, parquet.Read)
	require.NoError(t, err)
	res, err := sim.Run(context.Background(), cfg, sim.Options{World: world})
	require.NoError(t, err)
	assert.Equal(t, "completed", res.Summary.Status)
	assert.Equal(t, 3000, res.Summary.TrainRows+res.Summary.TestRows, "every record read, the junk line skipped")
	assert.Greater(t, res.Summary.Final.AUC, 0.7)
}

// TestAParquetCopyTrainsTheSameModelAsItsCSV: the synthetic bank's rows written as CSV and as
// Parquet (as a bank would export the table) train the same model, bit for bit.
func TestAParquetCopyTrainsTheSameModelAsItsCSV(t *testing.T) {
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 400, Seed: 6}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var parts []*dataset.Dataset
	for _, b := range branches {
		parts = append(parts, b.Train, b.Test)
	}
	all := dataset.Concat(parts...)
	dir := t.TempDir()
	doc, err := yaml.Marshal(schema)
	require.NoError(t, err)
	schemaPath := filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schemaPath, doc, 0o600))
	var csvBuf, pqBuf bytes.Buffer
	require.NoError(t, dataset.WriteCSV(&csvBuf, all))
	require.NoError(t, parquet.Write(&pqBuf, all))
	csvPath, pqPath := filepath.Join(dir, "bank.csv"), filepath.Join(dir, "bank.parquet")
	require.NoError(t, os.WriteFile(csvPath, csvBuf.Bytes(), 0o600))
	require.NoError(t, os.WriteFile(pqPath, pqBuf.Bytes(), 0o600))

	run := func(path string) *sim.Result {
		c := parse(t, fmt.Sprintf(`
seed: 4
data:
  source: csv
  csv: {path: %s, schema: %s, test_fraction: 0.2}
  partition: {method: iid, clients: 3}
run:
  rounds: 3
  min_clients: 3
`, path, schemaPath))
		world, err := sim.LoadWith(context.Background(), c, parquet.Read)
		require.NoError(t, err)
		res, err := sim.Run(context.Background(), c, sim.Options{World: world})
		require.NoError(t, err)
		return res
	}
	fromCSV, fromParquet := run(csvPath), run(pqPath)
	require.NotEmpty(t, fromCSV.Summary.Weights)
	assert.Equal(t, fromCSV.Summary.Weights, fromParquet.Summary.Weights, "the same rows, the same model")
	assert.Equal(t, all.Len(), fromParquet.Summary.TrainRows+fromParquet.Summary.TestRows)
}
