// Package export writes a pulled model (a modelfile.Document) in the formats a bank's scoring
// stack reads, each one self-contained: it takes the raw feature columns of a record and does
// the standardisation and the one-hot encoding itself, exactly as fedprop's encoder does, so a
// scoring engine needs neither fedprop nor the model document.
//
//   - PMML 4.4 (PMML): a logistic RegressionModel whose inputs are derived fields of a
//     TransformationDictionary. It validates against the Data Mining Group's PMML 4.4 XML
//     Schema.
//   - ONNX (ONNX): a graph of standard operators (ai.onnx opset 13, and ai.onnx.ml's
//     OneHotEncoder) computing the probability in double precision, IR version 7.
//
// A gradient-boosted-trees model goes out the same two ways with the same inputs and output
// (ONNXTrees, PMMLTrees; ONNX and PMML call them for a document holding trees): ONNX's
// ai.onnx.ml opset 5 TreeEnsemble in double precision, and a PMML MiningModel chaining the sum
// of one TreeModel per tree with a logit RegressionModel; numeric splits compare the raw value
// with the exact raw cut point of fedprop's standardised threshold.
//
// Both score a record with the probability of the schema's positive label. A categorical value
// outside the vocabulary is an error under the schema's "unseen: error" policy and falls into the
// "other" input under "unseen: other", as in fedprop.
package export

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/release/modelfile"
)

// ErrInvalidModel marks a model document that cannot be exported.
var ErrInvalidModel = errors.New("model cannot be exported")

// Producer is the name exported documents give as their producing application.
const Producer = "fedprop"

// check validates doc for export.
func check(doc *modelfile.Document) error {
	if doc == nil {
		return fmt.Errorf("%w: no model document", ErrInvalidModel)
	}
	if err := doc.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	if err := logreg.CheckWeights(doc.Weights(), len(doc.Features)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	return nil
}

// formatFloat writes v with the fewest digits that read back as exactly v.
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
