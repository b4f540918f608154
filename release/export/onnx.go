package export

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/release/modelfile"
)

// ONNX model constants: the IR version and operator sets an exported model declares.
const (
	// ONNXIRVersion is the ONNX IR version of exported models (ONNX 1.8 and later read it).
	ONNXIRVersion = 7
	// ONNXOpset is the ai.onnx operator set version.
	ONNXOpset = 13
	// ONNXMLOpset is the ai.onnx.ml operator set version (for OneHotEncoder).
	ONNXMLOpset = 1
	// ONNXOutput is the name of the exported graph's output: the probability of the positive
	// label, a double tensor of shape [N, 1].
	ONNXOutput = "probability"
	// ONNXBatch is the symbolic name of the batch dimension of every input and the output.
	ONNXBatch = "N"
)

const onnxMLDomain = "ai.onnx.ml"

// onnxInternal prefixes the names of the graph's intermediate tensors, so that no column name
// can clash with them.
const onnxInternal = "fedprop/"

// ONNX returns doc as a serialized ONNX ModelProto that scores raw records.
//
// The graph has one input per feature column of the schema, in schema order and named after the
// column: a numeric column is a double tensor of shape [N, 1], a categorical column a string
// tensor of shape [N, 1]. Its single output, ONNXOutput, is the probability of the positive label
// as a double tensor of shape [N, 1]. Inside, numeric columns are concatenated, have the pinned
// means subtracted and are divided by the pinned standard deviations (Sub, Div); each
// categorical column is one-hot encoded over its vocabulary by ai.onnx.ml's OneHotEncoder
// (zeros=0 under "unseen: error", so an unseen value fails the run; zeros=1 under
// "unseen: other", whose extra input is 1 minus the sum of the others), reshaped and cast to
// double; then MatMul with the coefficients, Add the intercept, and Sigmoid. All arithmetic is in
// double precision, so the probabilities agree with fedprop's to rounding.
//
// A document of a tree model is exported by ONNXTrees.
func ONNX(doc *modelfile.Document) ([]byte, error) {
	w, m, err := exporterOf(doc)
	if err != nil {
		return nil, fmt.Errorf("export onnx: %w", err)
	}
	return w.onnx(doc, m)
}

// onnxTrees is ONNXTrees for a document's tree model.
func onnxTrees(doc *modelfile.Document, m *gbdt.Model) ([]byte, error) {
	return ONNXTrees(m, doc.Schema)
}

// onnxLogistic is ONNX for a document's logistic regression (see ONNX).
func onnxLogistic(doc *modelfile.Document, lr *logreg.Model) ([]byte, error) {
	weights := lr.Weights()
	s := doc.Schema
	for _, col := range s.Columns() {
		if col == ONNXOutput || strings.HasPrefix(col, onnxInternal) {
			return nil, fmt.Errorf("export onnx: %w: column %q clashes with the graph's own names", ErrInvalidModel, col)
		}
	}
	b := &onnxBuilder{}

	var parts []string // encoded [N, k] double tensors, concatenated in model-input order
	if k := len(s.Numeric); k > 0 {
		raw := make([]string, k)
		for i, col := range s.Numeric {
			b.input(col, "numeric feature "+col+" (raw value)", onnxDouble)
			raw[i] = col
		}
		numeric := raw[0]
		if k > 1 {
			numeric = b.op("Concat", raw, "numeric_raw", intAttr("axis", 1))
		}
		mean := b.constDoubles("numeric_mean", []int64{int64(k)}, doc.Standardization.Mean)
		std := b.constDoubles("numeric_std", []int64{int64(k)}, doc.Standardization.Std)
		centred := b.op("Sub", []string{numeric, mean}, "numeric_centred")
		parts = append(parts, b.op("Div", []string{centred, std}, "numeric_standardised"))
	}
	for j, c := range s.Categorical {
		b.input(c.Column, fmt.Sprintf("categorical feature %s (raw value; one of %d)", c.Column, len(c.Values)), onnxString)
		p := "categorical_" + strconv.Itoa(j)
		zeros := int64(0) // an unseen value is an error
		if c.Policy() == dataset.UnseenOther {
			zeros = 1 // an unseen value encodes as all zeros here, and as 1 in the other input
		}
		oneHot := b.opIn(onnxMLDomain, "OneHotEncoder", []string{c.Column}, p+"_onehot3d",
			stringsAttr("cats_strings", c.Values), intAttr("zeros", zeros))
		shape := b.constInt64s(p+"_shape", []int64{2}, []int64{-1, int64(len(c.Values))})
		flat := b.op("Reshape", []string{oneHot, shape}, p+"_onehot_float")
		encoded := b.op("Cast", []string{flat}, p+"_onehot", intAttr("to", onnxDouble))
		if c.Policy() == dataset.UnseenOther {
			axes := b.constInt64s(p+"_axes", []int64{1}, []int64{1})
			known := b.op("ReduceSum", []string{encoded, axes}, p+"_known", intAttr("keepdims", 1))
			one := b.constDoubles(p+"_one", []int64{1}, []float64{1})
			other := b.op("Sub", []string{one, known}, p+"_other")
			encoded = b.op("Concat", []string{encoded, other}, p+"_encoded", intAttr("axis", 1))
		}
		parts = append(parts, encoded)
	}
	features := parts[0]
	if len(parts) > 1 {
		features = b.op("Concat", parts, "features", intAttr("axis", 1))
	}
	coef := b.constDoubles("coefficients", []int64{int64(len(weights) - 1), 1}, weights[1:])
	intercept := b.constDoubles("intercept", []int64{1}, weights[:1])
	weighted := b.op("MatMul", []string{features, coef}, "weighted_sum")
	logit := b.op("Add", []string{weighted, intercept}, "logit")
	b.nodes = append(b.nodes, node{name: onnxInternal + "sigmoid", opType: "Sigmoid", inputs: []string{logit}, outputs: []string{ONNXOutput}})

	label := s.Label.Column + "=" + s.Label.Positive
	m := modelProto{
		irVersion:       ONNXIRVersion,
		producerName:    Producer,
		producerVersion: modelfile.Format,
		domain:          "fedprop",
		modelVersion:    int64(min(doc.Version, 1<<63-1)),
		doc: fmt.Sprintf("fedprop propensity model %s, run %s, version %d (round %d): logistic regression giving P(%s).",
			s.Name, doc.RunID, doc.Version, doc.Round, label),
		opsets: []opset{{version: ONNXOpset}, {domain: onnxMLDomain, version: ONNXMLOpset}},
		graph: graph{
			name:         "fedprop_propensity",
			doc:          "Standardisation and one-hot encoding as fedprop encodes records, then the logistic model.",
			nodes:        b.nodes,
			initializers: b.inits,
			inputs:       b.inputs,
			output:       []valueInfo{{name: ONNXOutput, doc: "P(" + label + ")", elemType: onnxDouble, batch: ONNXBatch, dims: []int64{1}}},
		},
		metadata: []metadata{
			{"fedprop.schema", s.Name},
			{"fedprop.run_id", doc.RunID},
			{"fedprop.version", strconv.FormatUint(doc.Version, 10)},
			{"fedprop.round", strconv.Itoa(doc.Round)},
			{"fedprop.created", doc.Created.UTC().Format(time.RFC3339)},
			{"fedprop.target", label},
			{"fedprop.features", strings.Join(doc.Features, ",")},
		},
	}
	return m.encode(), nil
}

// onnxBuilder collects the nodes, initializers and inputs of a graph.
type onnxBuilder struct {
	nodes  []node
	inits  []tensor
	inputs []valueInfo
}

func (b *onnxBuilder) input(name, doc string, elemType int64) {
	b.inputs = append(b.inputs, valueInfo{name: name, doc: doc, elemType: elemType, batch: ONNXBatch, dims: []int64{1}})
}

// op adds an ai.onnx node with one output and returns the output's name.
func (b *onnxBuilder) op(opType string, inputs []string, output string, attrs ...attribute) string {
	return b.opIn("", opType, inputs, output, attrs...)
}

func (b *onnxBuilder) opIn(domain, opType string, inputs []string, output string, attrs ...attribute) string {
	output = onnxInternal + output
	b.nodes = append(b.nodes, node{name: output + "_node", opType: opType, domain: domain, inputs: inputs, outputs: []string{output}, attrs: attrs})
	return output
}

func (b *onnxBuilder) constDoubles(name string, dims []int64, v []float64) string {
	name = onnxInternal + name
	b.inits = append(b.inits, tensor{name: name, dims: dims, doubles: v})
	return name
}

func (b *onnxBuilder) constInt64s(name string, dims []int64, v []int64) string {
	name = onnxInternal + name
	b.inits = append(b.inits, tensor{name: name, dims: dims, int64s: v})
	return name
}
