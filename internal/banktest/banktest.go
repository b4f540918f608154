// Package banktest loads the UCI Bank Marketing reference data for tests: bank-full.csv read
// through the dataset package with configs/schema-bank.yaml, split into the fixed training and
// test rows of bank-full.test-rows.txt, and a model fitted centrally on the training rows. Like
// sharedtest, it skips a test when the shared data is absent, and fails it under CI=true.
package banktest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/sharedtest"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/release/modelfile"
)

// L2 is scikit-learn's default penalty (C=1) for the 36,168 training rows, as in
// configs/sim-bank.yaml.
const L2 = 2.7649e-5

// Split is bank-full read with its schema and split into training and test rows.
type Split struct {
	Schema      *dataset.Schema
	Train, Test *dataset.Dataset
}

// Load reads and splits bank-full, skipping tb (failing it under CI=true) without the data.
func Load(tb testing.TB) Split {
	tb.Helper()
	data := sharedtest.Path(tb, "bank-full.csv")
	rows := sharedtest.Path(tb, "bank-full.test-rows.txt")
	split, err := read(data, rows)
	if err != nil {
		tb.Fatalf("load bank-full: %v", err)
	}
	return split
}

// Model fits the reference model on the training rows, standardised with their statistics
// (Dataset.Stats), and returns it as a model document of version 1.
func (s Split) Model(tb testing.TB) *modelfile.Document {
	tb.Helper()
	std, err := s.Train.Stats().Standardization()
	if err != nil {
		tb.Fatalf("standardization: %v", err)
	}
	enc, err := dataset.NewEncoder(s.Schema, std)
	if err != nil {
		tb.Fatalf("encoder: %v", err)
	}
	w, err := logreg.FitCentralized(enc.Encode(s.Train), s.Train.Label, L2)
	if err != nil {
		tb.Fatalf("fit: %v", err)
	}
	doc := &modelfile.Document{
		Format:          modelfile.Format,
		Version:         1,
		RunID:           "bank-reference",
		Round:           1,
		Created:         time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Intercept:       w[0],
		Coefficients:    w[1:],
		Features:        enc.FeatureNames(),
		Schema:          s.Schema,
		Standardization: std,
		Examples:        float64(s.Train.Len()),
		Contributors:    1,
	}
	if err := doc.Validate(); err != nil {
		tb.Fatalf("model document: %v", err)
	}
	return doc
}

func read(dataPath, testRowsPath string) (Split, error) {
	root, err := sharedtest.ModuleRoot()
	if err != nil {
		return Split{}, fmt.Errorf("module root: %w", err)
	}
	schema, err := dataset.LoadSchema(filepath.Join(root, "configs", "schema-bank.yaml"))
	if err != nil {
		return Split{}, err
	}
	all, err := dataset.ReadCSV(context.Background(), dataPath, schema)
	if err != nil {
		return Split{}, err
	}
	test, err := readRows(testRowsPath, all.Len())
	if err != nil {
		return Split{}, err
	}
	var train []int
	isTest := make([]bool, all.Len())
	for _, i := range test {
		isTest[i] = true
	}
	for i := range all.Len() {
		if !isTest[i] {
			train = append(train, i)
		}
	}
	return Split{Schema: schema, Train: all.Subset(train), Test: all.Subset(test)}, nil
}

// readRows reads 0-based data-row indices, one a line ('#' comments and blank lines skipped).
func readRows(path string, n int) ([]int, error) {
	f, err := os.Open(path) // #nosec G304 -- the shared test data's own file
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i, err := strconv.Atoi(line)
		if err != nil || i < 0 || i >= n {
			return nil, fmt.Errorf("%s: %q is not a row index below %d", path, line, n)
		}
		rows = append(rows, i)
	}
	return rows, sc.Err()
}
