package logreg_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/banktest"
)

// bankSplit is the UCI bank-marketing data encoded the way the scikit-learn reference in
// ../shared/data/README.md encodes it: numerics standardised with the mean and population
// standard deviation of the training rows, categoricals one-hot (no level dropped), duration
// dropped (configs/schema-bank.yaml), label y == "yes".
type bankSplit struct {
	XTrain, XTest *mat.Dense
	YTrain, YTest []float64
}

// loadBank reads bank-full.csv and its fixed test rows through the shared test loader.
func loadBank(t *testing.T) bankSplit {
	t.Helper()
	split := banktest.Load(t)
	std, err := split.Train.Stats().Standardization()
	require.NoError(t, err)
	enc, err := dataset.NewEncoder(split.Schema, std)
	require.NoError(t, err)
	return bankSplit{XTrain: enc.Encode(split.Train), YTrain: split.Train.Label, XTest: enc.Encode(split.Test), YTest: split.Test.Label}
}
