package export

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
)

// ONNX versions a tree model declares. The logistic export keeps its older ones (ONNXIRVersion
// and friends): its operators have not changed since, and older runtimes read it.
const (
	// ONNXTreesIRVersion is the IR version of exported tree models: that of ONNX 1.16, the
	// release that introduced ai.onnx.ml opset 5.
	ONNXTreesIRVersion = 10
	// ONNXTreesOpset is the ai.onnx operator set of exported tree models (ONNX 1.16's).
	ONNXTreesOpset = 21
	// ONNXTreesMLOpset is the ai.onnx.ml operator set of exported tree models: 5, the first
	// with TreeEnsemble, whose thresholds, leaf weights and output are double tensors. The
	// older TreeEnsembleRegressor and TreeEnsembleClassifier always output float32, whose
	// rounding (about 1e-7 on a probability) would hide any real disagreement with fedprop.
	ONNXTreesMLOpset = 5
)

// TreeEnsemble (ai.onnx.ml 5) attribute values.
const (
	treeBranchLEQ     = 0 // nodes_modes: x <= split is true
	treeBranchEQ      = 4 // nodes_modes: x == split is true
	treeAggregateSum  = 1 // aggregate_function SUM
	treePostTransform = 0 // post_transform NONE
)

// ONNXTrees returns a boosted tree model as a serialized ONNX ModelProto that scores raw records
// of schema, as fedprop's gbdt.Model.Probability does.
//
// The graph's inputs and output are the logistic export's (see ONNX): one input per feature
// column of the schema, in schema order and named after it, a double tensor of shape [N, 1] for
// a numeric column and a string tensor of shape [N, 1] for a categorical one, and the output
// ONNXOutput, the probability of the positive label as a double tensor of shape [N, 1]. A
// missing numeric value is NaN; a missing categorical value (a column whose schema says
// "missing: category") is the string dataset.MissingCategory, the level fedprop reads it as.
//
// Inside, each categorical column becomes the index of its value in the vocabulary (one-hot
// encoded by ai.onnx.ml's OneHotEncoder, then multiplied by the indices): a value outside it
// fails the run under "unseen: error", as fedprop refuses it, and is the index len(values), the
// "other" bucket, under "unseen: other". The raw numeric columns and the indices, concatenated
// in the model's feature order, feed one ai.onnx.ml TreeEnsemble (opset 5) in double precision
// that sums the trees' leaf values; then Add the base score and Sigmoid.
//
// Every split is the model's own test: a numeric split is BRANCH_LEQ on the raw value against
// the exact raw-scale cut point (see rawThreshold; no standardisation is computed, so none can
// round differently), with NaN following the split's learnt side
// (nodes_missing_value_tracks_true); a categorical split is BRANCH_EQ on the index, its one
// category left and every other right. A tree that is a single leaf is written as a split
// whose two leaves hold its value, since TreeEnsemble roots must be interior nodes.
func ONNXTrees(m *gbdt.Model, schema *dataset.Schema) ([]byte, error) {
	if err := checkTrees(m, schema); err != nil {
		return nil, fmt.Errorf("export onnx: %w", err)
	}
	for _, col := range schema.Columns() {
		if col == ONNXOutput || strings.HasPrefix(col, onnxInternal) {
			return nil, fmt.Errorf("export onnx: %w: column %q clashes with the graph's own names", ErrInvalidModel, col)
		}
	}
	splits, err := treeSplits(m)
	if err != nil {
		return nil, fmt.Errorf("export onnx: %w", err)
	}
	b := &onnxBuilder{}

	features := make([]string, 0, len(m.Features)) // [N, 1] double columns, in feature order
	for _, col := range schema.Numeric {
		b.input(col, "numeric feature "+col+" (raw value; NaN if missing)", onnxDouble)
		features = append(features, col)
	}
	for j, c := range schema.Categorical {
		b.input(c.Column, fmt.Sprintf("categorical feature %s (raw value; one of %d)", c.Column, len(c.Values)), onnxString)
		features = append(features, categoryIndex(b, j, c))
	}
	x := features[0]
	if len(features) > 1 {
		x = b.op("Concat", features, "features", intAttr("axis", 1))
	}
	sum := b.opIn(onnxMLDomain, "TreeEnsemble", []string{x}, "tree_sum", treeEnsembleAttrs(m, splits)...)
	base := b.constDoubles("base_score", []int64{1}, []float64{m.BaseScore})
	margin := b.op("Add", []string{sum, base}, "margin")
	b.nodes = append(b.nodes, node{name: onnxInternal + "sigmoid", opType: "Sigmoid", inputs: []string{margin}, outputs: []string{ONNXOutput}})

	label := schema.Label.Column + "=" + schema.Label.Positive
	names := make([]string, len(m.Features))
	for i, f := range m.Features {
		names[i] = f.Name
	}
	proto := modelProto{
		irVersion:       ONNXTreesIRVersion,
		producerName:    Producer,
		producerVersion: gbdt.ModelFormat,
		domain:          "fedprop",
		doc: fmt.Sprintf("fedprop propensity model %s: %d boosted trees giving P(%s).",
			schema.Name, len(m.Trees), label),
		opsets: []opset{{version: ONNXTreesOpset}, {domain: onnxMLDomain, version: ONNXTreesMLOpset}},
		graph: graph{
			name:         "fedprop_propensity_trees",
			doc:          "Categories to vocabulary indices as fedprop bins them, then the tree ensemble on raw values, the base score and the logistic function.",
			nodes:        b.nodes,
			initializers: b.inits,
			inputs:       b.inputs,
			output:       []valueInfo{{name: ONNXOutput, doc: "P(" + label + ")", elemType: onnxDouble, batch: ONNXBatch, dims: []int64{1}}},
		},
		metadata: []metadata{
			{"fedprop.schema", schema.Name},
			{"fedprop.model", "gbdt"},
			{"fedprop.trees", strconv.Itoa(len(m.Trees))},
			{"fedprop.base_score", formatFloat(m.BaseScore)},
			{"fedprop.target", label},
			{"fedprop.features", strings.Join(names, ",")},
		},
	}
	return proto.encode(), nil
}

// categoryIndex adds the nodes that turn categorical column j (input c.Column, strings of
// shape [N, 1]) into its gbdt bin as a double tensor of shape [N, 1]: the index of the value in
// the vocabulary, or len(c.Values) for a value outside it under "unseen: other". Under
// "unseen: error" OneHotEncoder (zeros=0) fails on such a value instead.
//
// The index is onehot · (k - L) + L over k = 0..L-1: exactly k when the value is category k, L
// when the one-hot row is all zeros. Every product but one is 0 and all are small integers, so
// the double arithmetic is exact.
func categoryIndex(b *onnxBuilder, j int, c dataset.CategoricalSpec) string {
	p := "category_" + strconv.Itoa(j)
	l := len(c.Values)
	zeros := int64(0)
	if c.Policy() == dataset.UnseenOther {
		zeros = 1
	}
	oneHot := b.opIn(onnxMLDomain, "OneHotEncoder", []string{c.Column}, p+"_onehot3d",
		stringsAttr("cats_strings", c.Values), intAttr("zeros", zeros))
	shape := b.constInt64s(p+"_shape", []int64{2}, []int64{-1, int64(l)})
	flat := b.op("Reshape", []string{oneHot, shape}, p+"_onehot_float")
	encoded := b.op("Cast", []string{flat}, p+"_onehot", intAttr("to", onnxDouble))
	offsets := make([]float64, l)
	for k := range offsets {
		offsets[k] = float64(k - l)
	}
	weights := b.constDoubles(p+"_offsets", []int64{int64(l), 1}, offsets)
	shifted := b.op("MatMul", []string{encoded, weights}, p+"_shifted")
	other := b.constDoubles(p+"_other", []int64{1}, []float64{float64(l)})
	return b.op("Add", []string{shifted, other}, p+"_index")
}

// treeEnsembleAttrs returns the attributes of one TreeEnsemble (ai.onnx.ml 5) node computing
// the sum of the leaf values m's trees assign to a row of features in model order. Interior
// nodes and leaves are numbered across all trees, in each tree's node order; a split's true
// branch is fedprop's left child.
func treeEnsembleAttrs(m *gbdt.Model, splits [][]treeSplit) []attribute {
	var (
		roots, featureIDs, missingTrue        []int64
		trueIDs, trueLeafs, falseIDs, falseLf []int64
		modes                                 []byte
		thresholds, weights                   []float64
		targets                               []int64
	)
	leaf := func(v float64) int64 {
		weights = append(weights, v)
		targets = append(targets, 0)
		return int64(len(weights) - 1)
	}
	for t, tree := range m.Trees {
		if len(tree.Nodes) == 1 {
			// A stump on feature 0 whose two leaves hold the one value: whichever way a row
			// goes, the tree adds the same.
			v := tree.Nodes[0].Value
			roots = append(roots, int64(len(modes)))
			modes = append(modes, treeBranchLEQ)
			featureIDs = append(featureIDs, 0)
			thresholds = append(thresholds, 0)
			missingTrue = append(missingTrue, 1)
			trueIDs, trueLeafs = append(trueIDs, leaf(v)), append(trueLeafs, 1)
			falseIDs, falseLf = append(falseIDs, leaf(v)), append(falseLf, 1)
			continue
		}
		// Number the tree's interior nodes and leaves first: children come after parents.
		id := make([]int64, len(tree.Nodes))
		next := int64(len(modes))
		for i, nd := range tree.Nodes {
			if nd.IsLeaf() {
				id[i] = leaf(nd.Value)
			} else {
				id[i] = next
				next++
			}
		}
		roots = append(roots, id[0])
		child := func(c int32) (int64, int64) {
			if tree.Nodes[c].IsLeaf() {
				return id[c], 1
			}
			return id[c], 0
		}
		for i, nd := range tree.Nodes {
			if nd.IsLeaf() {
				continue
			}
			featureIDs = append(featureIDs, int64(nd.Feature))
			if s := splits[t][i]; s.numeric {
				modes = append(modes, treeBranchLEQ)
				thresholds = append(thresholds, s.raw)
				missingTrue = append(missingTrue, boolInt(nd.MissingLeft))
			} else {
				modes = append(modes, treeBranchEQ)
				thresholds = append(thresholds, float64(nd.Bin))
				missingTrue = append(missingTrue, 0) // an index is never NaN
			}
			l, lLeaf := child(nd.Left)
			r, rLeaf := child(nd.Right)
			trueIDs, trueLeafs = append(trueIDs, l), append(trueLeafs, lLeaf)
			falseIDs, falseLf = append(falseIDs, r), append(falseLf, rLeaf)
		}
	}
	ints := func(name string, v []int64) attribute { return attribute{name: name, typ: attrInts, ints: v} }
	tensorAttr := func(name string, t tensor) attribute {
		t.name = name
		return attribute{name: name, typ: attrTensor, t: &t}
	}
	return []attribute{
		intAttr("aggregate_function", treeAggregateSum),
		ints("leaf_targetids", targets),
		tensorAttr("leaf_weights", tensor{dims: []int64{int64(len(weights))}, doubles: weights}),
		intAttr("n_targets", 1),
		ints("nodes_falseleafs", falseLf),
		ints("nodes_falsenodeids", falseIDs),
		ints("nodes_featureids", featureIDs),
		ints("nodes_missing_value_tracks_true", missingTrue),
		tensorAttr("nodes_modes", tensor{dims: []int64{int64(len(modes))}, uint8s: modes}),
		tensorAttr("nodes_splits", tensor{dims: []int64{int64(len(thresholds))}, doubles: thresholds}),
		ints("nodes_trueleafs", trueLeafs),
		ints("nodes_truenodeids", trueIDs),
		intAttr("post_transform", treePostTransform),
		ints("tree_roots", roots),
	}
}

// boolInt is 1 for true and 0 for false.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
