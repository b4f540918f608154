package model_test

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/internal/sharedtest"
)

// bankSplit is the UCI bank-marketing data encoded the way the scikit-learn reference in
// ../shared/data/README.md encodes it. This loader is test scaffolding only; the product reads
// data through the dataset package.
type bankSplit struct {
	XTrain, XTest *mat.Dense
	YTrain, YTest []float64
}

var (
	bankNumeric     = []string{"age", "balance", "day", "campaign", "pdays", "previous"}
	bankCategorical = []string{"job", "marital", "education", "default", "housing", "loan", "contact", "month", "poutcome"}
)

// loadBank reads bank-full.csv and its test-row list: numerics standardised with the mean and
// population standard deviation of the training rows, categoricals one-hot over the training
// vocabulary (sorted, no level dropped), duration dropped, label y == "yes".
func loadBank(t *testing.T) bankSplit {
	t.Helper()
	split, err := readBank(sharedtest.Path(t, "bank-full.csv"), sharedtest.Path(t, "bank-full.test-rows.txt"))
	require.NoError(t, err)
	return split
}

func readBank(dataPath, testRowsPath string) (bankSplit, error) {
	testRows, err := readTestRows(testRowsPath)
	if err != nil {
		return bankSplit{}, err
	}
	f, err := os.Open(dataPath)
	if err != nil {
		return bankSplit{}, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	header, err := r.Read()
	if err != nil {
		return bankSplit{}, fmt.Errorf("read header: %w", err)
	}
	col := make(map[string]int, len(header))
	for i, name := range header {
		col[name] = i
	}
	var records [][]string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bankSplit{}, err
		}
		records = append(records, rec)
	}
	isTest := make([]bool, len(records))
	for _, i := range testRows {
		if i < 0 || i >= len(records) {
			return bankSplit{}, fmt.Errorf("test row %d out of range", i)
		}
		isTest[i] = true
	}

	numeric := make([][]float64, len(records))
	for i, rec := range records {
		numeric[i] = make([]float64, len(bankNumeric))
		for j, name := range bankNumeric {
			if numeric[i][j], err = strconv.ParseFloat(rec[col[name]], 64); err != nil {
				return bankSplit{}, fmt.Errorf("row %d %s: %w", i, name, err)
			}
		}
	}
	mean := make([]float64, len(bankNumeric))
	std := make([]float64, len(bankNumeric))
	var nTrain float64
	for i := range records {
		if !isTest[i] {
			nTrain++
			for j, v := range numeric[i] {
				mean[j] += v
			}
		}
	}
	for j := range mean {
		mean[j] /= nTrain
	}
	for i := range records {
		if !isTest[i] {
			for j, v := range numeric[i] {
				std[j] += (v - mean[j]) * (v - mean[j])
			}
		}
	}
	for j := range std {
		std[j] = math.Sqrt(std[j] / nTrain)
	}

	vocab := make([][]string, len(bankCategorical))
	for j, name := range bankCategorical {
		for i, rec := range records {
			if !isTest[i] && !slices.Contains(vocab[j], rec[col[name]]) {
				vocab[j] = append(vocab[j], rec[col[name]])
			}
		}
		slices.Sort(vocab[j])
	}
	dim := len(bankNumeric)
	for _, v := range vocab {
		dim += len(v)
	}

	var split bankSplit
	var train, test []float64
	for i, rec := range records {
		row := make([]float64, 0, dim)
		for j, v := range numeric[i] {
			row = append(row, (v-mean[j])/std[j])
		}
		for j, name := range bankCategorical {
			for _, level := range vocab[j] {
				row = append(row, indicator(rec[col[name]] == level))
			}
		}
		label := indicator(rec[col["y"]] == "yes")
		if isTest[i] {
			test = append(test, row...)
			split.YTest = append(split.YTest, label)
		} else {
			train = append(train, row...)
			split.YTrain = append(split.YTrain, label)
		}
	}
	split.XTrain = mat.NewDense(len(split.YTrain), dim, train)
	split.XTest = mat.NewDense(len(split.YTest), dim, test)
	return split, nil
}

func readTestRows(path string) ([]int, error) {
	f, err := os.Open(path)
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
		if err != nil {
			return nil, fmt.Errorf("test rows %q: %w", line, err)
		}
		rows = append(rows, i)
	}
	return rows, sc.Err()
}

func indicator(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
