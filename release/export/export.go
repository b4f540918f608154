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
// (ONNXTrees, PMMLTrees; ONNX and PMML call them for a document holding trees, finding each
// kind's writers by the Go type of the document's model.Model): ONNX's
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
	"reflect"
	"strconv"

	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/release/modelfile"
)

// ErrInvalidModel marks a model document that cannot be exported.
var ErrInvalidModel = errors.New("model cannot be exported")

// Producer is the name exported documents give as their producing application.
const Producer = "fedprop"

// exporter writes one model kind in each format, from its document (which names the version,
// run and schema) and the model the document holds.
type exporter struct {
	onnx, pmml func(doc *modelfile.Document, m model.Model) ([]byte, error)
}

// exporters holds each model kind's writers under the kind's Go type: the one place export
// tells kinds apart. A kind without an entry cannot be exported.
var exporters = newExporters()

func newExporters() map[reflect.Type]exporter {
	r := map[reflect.Type]exporter{}
	register(r, onnxLogistic, pmmlLogistic)
	register(r, onnxTrees, pmmlTrees)
	return r
}

// register adds the writers of the model kind M.
func register[M model.Model](r map[reflect.Type]exporter, onnx, pmml func(*modelfile.Document, M) ([]byte, error)) {
	r[reflect.TypeFor[M]()] = exporter{
		// exporterOf looks writers up by the model's type, so the assertions hold.
		onnx: func(doc *modelfile.Document, m model.Model) ([]byte, error) { return onnx(doc, m.(M)) },
		pmml: func(doc *modelfile.Document, m model.Model) ([]byte, error) { return pmml(doc, m.(M)) },
	}
}

// exporterOf validates doc for export and returns its model with the kind's writers.
func exporterOf(doc *modelfile.Document) (exporter, model.Model, error) {
	if doc == nil {
		return exporter{}, nil, fmt.Errorf("%w: no model document", ErrInvalidModel)
	}
	if err := doc.Validate(); err != nil {
		return exporter{}, nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	m, err := doc.Model()
	if err != nil {
		return exporter{}, nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	w, ok := exporters[reflect.TypeOf(m)]
	if !ok {
		return exporter{}, nil, fmt.Errorf("%w: no exporter for a %s model", ErrInvalidModel, m.Kind())
	}
	return w, m, nil
}

// formatFloat writes v with the fewest digits that read back as exactly v.
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
