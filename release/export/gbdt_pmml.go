package export

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
)

// PMMLTrees returns a boosted tree model as a PMML 4.4 document that scores raw records of
// schema as fedprop's gbdt.Model.Probability does. It is PMML's form for boosted trees, a model
// chain:
//
//   - The DataDictionary is the logistic export's (see PMML): one field per feature column, a
//     categorical one listing its vocabulary, and the label.
//   - The outer MiningModel (functionName "classification") declares how each input is taken.
//     A numeric column whose schema imputes missing values keeps them as missing
//     (missingValueTreatment "asIs"); a categorical column whose schema makes them a category
//     replaces them by dataset.MissingCategory (missingValueReplacement), as fedprop reads
//     them; any other missing value makes the model return invalid, as fedprop refuses it. A
//     categorical value outside the vocabulary is kept under "unseen: other"
//     (invalidValueTreatment "asIs") and makes the model return invalid under "unseen: error".
//     Its output field PMMLOutput is the probability of the positive label.
//   - Its Segmentation (multipleModelMethod "modelChain") has two segments. The first is a
//     MiningModel (functionName "regression") whose Segmentation (multipleModelMethod "sum")
//     holds one TreeModel per tree, in order, each segment's id the tree's 1-based number; its
//     output field "margin(<label>)" is their sum. The second is a RegressionModel
//     (normalizationMethod "logit") whose positive table has the base score as intercept and
//     the margin with coefficient 1, and whose negative table is zero: the probability is
//     1/(1+exp(-(base score + sum of the trees))).
//   - A TreeModel (splitCharacteristic "binarySplit", missingValueStrategy "none") is the tree
//     as fedprop grew it, each Node's id its index in gbdt.Tree.Nodes and each leaf's score its
//     value. Of a split's two children the left comes first with the split's test, the right
//     second with True: a row that does not pass the test goes right, as in fedprop.
//   - A numeric test is SimplePredicate lessOrEqual on the raw value against the exact
//     raw-scale cut point (see rawThreshold), so no standardisation is needed; where the column
//     may be missing, it is a CompoundPredicate with isMissing ("or", the split sends missing
//     values left) or isNotMissing ("and", it sends them right), so that the side does not
//     depend on how an evaluator treats an unknown predicate. A categorical test is
//     SimplePredicate equal on the category that goes left, or, for the "other" bucket,
//     SimpleSetPredicate isNotIn the vocabulary.
func PMMLTrees(m *gbdt.Model, schema *dataset.Schema) ([]byte, error) {
	if err := checkTrees(m, schema); err != nil {
		return nil, fmt.Errorf("export pmml: %w", err)
	}
	label := schema.Label.Column
	margin := "margin(" + label + ")"
	names := map[string]string{} // field name -> what defines it, to refuse clashes
	for _, f := range m.Features {
		names[f.Name] = "a feature column"
	}
	for _, own := range [][2]string{{label, "the label"}, {margin, "the margin"}, {PMMLOutput, "the output"}} {
		if prev, ok := names[own[0]]; ok {
			return nil, fmt.Errorf("export pmml: %w: field name %q is both %s and %s", ErrInvalidModel, own[0], prev, own[1])
		}
		names[own[0]] = own[1]
	}
	splits, err := treeSplits(m)
	if err != nil {
		return nil, fmt.Errorf("export pmml: %w", err)
	}

	dict := &element{name: "DataDictionary"}
	mining := &element{name: "MiningSchema"} // the outer model's: how each input is taken
	active := &element{name: "MiningSchema"} // the tree sum's: the same fields, as they are
	for _, f := range m.Features {
		var field *element
		if f.Kind == gbdt.Numeric {
			field = &element{name: "DataField", attrs: attrs("name", f.Name, "optype", "continuous", "dataType", "double")}
		} else {
			field = &element{name: "DataField", attrs: attrs("name", f.Name, "optype", "categorical", "dataType", "string")}
			for _, v := range f.Levels {
				field.add(&element{name: "Value", attrs: attrs("value", v)})
			}
		}
		mf := &element{name: "MiningField", attrs: attrs("name", f.Name, "usageType", "active")}
		switch policy := schema.MissingPolicyOf(f.Name); {
		case f.Kind == gbdt.Numeric && policy == dataset.MissingImpute:
			mf.attrs = append(mf.attrs, [2]string{"missingValueTreatment", "asIs"})
		case f.Kind == gbdt.Categorical && policy == dataset.MissingAsCategory:
			mf.attrs = append(mf.attrs, [2]string{"missingValueReplacement", dataset.MissingCategory}, [2]string{"missingValueTreatment", "asValue"})
		default:
			mf.attrs = append(mf.attrs, [2]string{"missingValueTreatment", "returnInvalid"})
		}
		if f.Kind == gbdt.Categorical && categoricalSpec(schema, f.Name).Policy() == dataset.UnseenOther {
			mf.attrs = append(mf.attrs, [2]string{"invalidValueTreatment", "asIs"})
		}
		dict.add(field)
		mining.add(mf)
		active.add(&element{name: "MiningField", attrs: attrs("name", f.Name)})
	}
	target := &element{name: "DataField", attrs: attrs("name", label, "optype", "categorical", "dataType", "string")}
	target.add(&element{name: "Value", attrs: attrs("value", schema.Label.Positive)})
	for _, v := range schema.Label.Negative {
		target.add(&element{name: "Value", attrs: attrs("value", v)})
	}
	dict.add(target)
	dict.attrs = attrs("numberOfFields", strconv.Itoa(len(dict.kids)))
	mining.add(&element{name: "MiningField", attrs: attrs("name", label, "usageType", "target")})

	w := pmmlTreeWriter{m: m, schema: schema}
	sum := &element{name: "Segmentation", attrs: attrs("multipleModelMethod", "sum")}
	for t := range m.Trees {
		sum.add(&element{name: "Segment", attrs: attrs("id", strconv.Itoa(t+1)), kids: []*element{
			{name: "True"}, w.tree(t, splits[t]),
		}})
	}
	trees := &element{name: "MiningModel", attrs: attrs("functionName", "regression", "algorithmName", "sum of boosted trees"),
		kids: []*element{active,
			{name: "Output", kids: []*element{{name: "OutputField", attrs: attrs(
				"name", margin, "displayName", "sum of the trees' leaf values (log-odds, without the base score)",
				"optype", "continuous", "dataType", "double", "feature", "predictedValue", "isFinalResult", "false")}}},
			sum}}

	logistic := &element{name: "RegressionModel", attrs: attrs(
		"functionName", "classification", "algorithmName", "logistic link", "normalizationMethod", "logit"),
		kids: []*element{
			{name: "MiningSchema", kids: []*element{
				{name: "MiningField", attrs: attrs("name", margin)},
				{name: "MiningField", attrs: attrs("name", label, "usageType", "target")},
			}},
			{name: "RegressionTable", attrs: attrs("intercept", formatFloat(m.BaseScore), "targetCategory", schema.Label.Positive),
				kids: []*element{{name: "NumericPredictor", attrs: attrs("name", margin, "coefficient", "1")}}},
			{name: "RegressionTable", attrs: attrs("intercept", "0", "targetCategory", schema.Label.Negative[0])},
		}}

	output := &element{name: "Output", kids: []*element{{name: "OutputField", attrs: attrs(
		"name", PMMLOutput, "displayName", "P("+label+"="+schema.Label.Positive+")", "optype", "continuous", "dataType", "double",
		"targetField", label, "feature", "probability", "value", schema.Label.Positive)}}}
	model := &element{name: "MiningModel", attrs: attrs(
		"modelName", fmt.Sprintf("%s gbdt", schema.Name), "functionName", "classification",
		"algorithmName", "federated gradient-boosted trees"),
		kids: []*element{mining, output, {name: "Segmentation", attrs: attrs("multipleModelMethod", "modelChain"), kids: []*element{
			{name: "Segment", attrs: attrs("id", "trees"), kids: []*element{{name: "True"}, trees}},
			{name: "Segment", attrs: attrs("id", "probability"), kids: []*element{{name: "True"}, logistic}},
		}}}}

	p := m.Params
	header := &element{name: "Header", attrs: attrs(
		"description", fmt.Sprintf("fedprop propensity model: P(%s=%s) by %d gradient-boosted trees", label, schema.Label.Positive, len(m.Trees))),
		kids: []*element{
			{name: "Application", attrs: attrs("name", Producer, "version", gbdt.ModelFormat)},
			{name: "Annotation", text: fmt.Sprintf("schema %s; %d trees of depth at most %d, learning rate %v, lambda %v, gamma %v, %d bins",
				schema.Name, len(m.Trees), p.MaxDepth, p.LearningRate, p.Lambda, p.Gamma, p.Bins)},
		}}

	root := &element{name: "PMML", attrs: attrs("xmlns", PMMLNamespace, "version", PMMLVersion),
		kids: []*element{header, dict, model}}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	root.write(&buf, 0)
	return buf.Bytes(), nil
}

// categoricalSpec returns the schema's spec of a categorical column (checkTrees made sure it
// exists).
func categoricalSpec(s *dataset.Schema, column string) dataset.CategoricalSpec {
	for _, c := range s.Categorical {
		if c.Column == column {
			return c
		}
	}
	return dataset.CategoricalSpec{}
}

// pmmlTreeWriter writes the TreeModels of one model.
type pmmlTreeWriter struct {
	m      *gbdt.Model
	schema *dataset.Schema
}

// tree returns tree t as a TreeModel.
func (w pmmlTreeWriter) tree(t int, splits []treeSplit) *element {
	tree := w.m.Trees[t]
	// The fields the tree splits on, in feature order. MiningSchema needs at least one field,
	// so a tree that is a single leaf names the first feature, which it does not read.
	used := make([]bool, len(w.m.Features))
	for _, nd := range tree.Nodes {
		if !nd.IsLeaf() {
			used[nd.Feature] = true
		}
	}
	mining := &element{name: "MiningSchema"}
	for f, u := range used {
		if u {
			mining.add(&element{name: "MiningField", attrs: attrs("name", w.m.Features[f].Name)})
		}
	}
	if len(mining.kids) == 0 {
		mining.add(&element{name: "MiningField", attrs: attrs("name", w.m.Features[0].Name)})
	}
	return &element{name: "TreeModel", attrs: attrs(
		"modelName", "tree "+strconv.Itoa(t+1), "functionName", "regression",
		"missingValueStrategy", "none", "noTrueChildStrategy", "returnNullPrediction", "splitCharacteristic", "binarySplit"),
		kids: []*element{mining, w.node(tree, splits, 0, &element{name: "True"})}}
}

// node returns node i of tree and its subtree, entered when predicate holds.
func (w pmmlTreeWriter) node(tree gbdt.Tree, splits []treeSplit, i int32, predicate *element) *element {
	nd := tree.Nodes[i]
	out := &element{name: "Node", attrs: attrs("id", strconv.Itoa(int(i))), kids: []*element{predicate}}
	if nd.IsLeaf() {
		out.attrs = append(out.attrs, [2]string{"score", formatFloat(nd.Value)})
		return out
	}
	out.add(w.node(tree, splits, nd.Left, w.leftTest(nd, splits[i])))
	out.add(w.node(tree, splits, nd.Right, &element{name: "True"}))
	return out
}

// leftTest returns the predicate of the rows a split sends left.
func (w pmmlTreeWriter) leftTest(nd gbdt.Node, s treeSplit) *element {
	f := w.m.Features[nd.Feature]
	simple := func(op, value string) *element {
		e := &element{name: "SimplePredicate", attrs: attrs("field", f.Name, "operator", op)}
		if value != "" {
			e.attrs = append(e.attrs, [2]string{"value", value})
		}
		return e
	}
	if s.numeric {
		le := simple("lessOrEqual", formatFloat(s.raw))
		if w.schema.MissingPolicyOf(f.Name) != dataset.MissingImpute {
			return le // a missing value never reaches the tree: the model returns invalid
		}
		if nd.MissingLeft {
			return &element{name: "CompoundPredicate", attrs: attrs("booleanOperator", "or"), kids: []*element{simple("isMissing", ""), le}}
		}
		return &element{name: "CompoundPredicate", attrs: attrs("booleanOperator", "and"), kids: []*element{simple("isNotMissing", ""), le}}
	}
	if nd.Bin < len(f.Levels) {
		return simple("equal", f.Levels[nd.Bin])
	}
	// The "other" bucket: every value outside the vocabulary.
	if arr, ok := pmmlStringArray(f.Levels); ok {
		return &element{name: "SimpleSetPredicate", attrs: attrs("field", f.Name, "booleanOperator", "isNotIn"), kids: []*element{arr}}
	}
	// A level an Array cannot quote unambiguously: the same set, one notEqual per level.
	if len(f.Levels) == 1 {
		return simple("notEqual", f.Levels[0])
	}
	all := &element{name: "CompoundPredicate", attrs: attrs("booleanOperator", "and")}
	for _, v := range f.Levels {
		all.add(simple("notEqual", v))
	}
	return all
}

// pmmlStringArray returns values as a PMML string Array: each quoted, an inner double quote
// escaped with a backslash. PMML defines no escape for a backslash itself, so a value holding
// one could end in what reads as an escaped quote; it reports false for such values.
func pmmlStringArray(values []string) (*element, bool) {
	var sb strings.Builder
	for i, v := range values {
		if strings.Contains(v, `\`) {
			return nil, false
		}
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(`"` + strings.ReplaceAll(v, `"`, `\"`) + `"`)
	}
	return &element{name: "Array", attrs: attrs("type", "string", "n", strconv.Itoa(len(values))), text: sb.String()}, true
}
