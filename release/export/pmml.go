package export

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/release/modelfile"
)

// PMML constants.
const (
	// PMMLNamespace is the XML namespace of PMML 4.4 documents.
	PMMLNamespace = "http://www.dmg.org/PMML-4_4"
	// PMMLVersion is the PMML version exported documents declare.
	PMMLVersion = "4.4"
	// PMMLOutput is the name of the output field holding the probability of the positive label.
	PMMLOutput = "probability"
)

// PMML returns doc as a PMML 4.4 document: a RegressionModel with functionName
// "classification", modelType "logisticRegression" and normalizationMethod "logit", over
// derived fields of a TransformationDictionary that encode a record as fedprop does.
//
//   - The DataDictionary has one field per feature column and the label; a categorical field
//     lists its vocabulary as valid values.
//   - A numeric column x becomes the derived field "std(x)" = (x - mean) / std with the pinned
//     standardisation (the Apply functions "-" and "/", so no rounding is added).
//   - A categorical column c becomes one derived field per value v, named "c=v" as fedprop's
//     feature names, a NormDiscrete that is 1 when c equals v and 0 otherwise. Under
//     "unseen: other" the MiningField accepts values outside the vocabulary (invalidValueTreatment
//     "asIs") and the derived field "c=<other>" is 1 for them; under "unseen: error" such a value
//     makes the model return invalid, as fedprop refuses it. A missing value makes it return
//     invalid too (missingValueTreatment "returnInvalid"): fedprop never scores one.
//   - The regression table of the positive label holds the intercept and one NumericPredictor per
//     derived field; the table of the (first) negative label is zero, so the positive label's
//     probability is 1/(1+exp(-(intercept + sum of coefficient x derived field))).
//   - The output field PMMLOutput is that probability.
//
// Sensitive attributes that are not model inputs do not appear. Only the positive label and the
// first negative label value get a regression table; every other negative value has probability
// 0, their total being 1 minus the positive probability.
//
// A document of a tree model is exported by PMMLTrees.
func PMML(doc *modelfile.Document) ([]byte, error) {
	w, m, err := exporterOf(doc)
	if err != nil {
		return nil, fmt.Errorf("export pmml: %w", err)
	}
	return w.pmml(doc, m)
}

// pmmlTrees is PMMLTrees for a document's tree model.
func pmmlTrees(doc *modelfile.Document, m *gbdt.Model) ([]byte, error) {
	return PMMLTrees(m, doc.Schema)
}

// pmmlLogistic is PMML for a document's logistic regression (see PMML).
func pmmlLogistic(doc *modelfile.Document, lr *logreg.Model) ([]byte, error) {
	weights := lr.Weights()
	coefficients := weights[1:]
	s := doc.Schema
	names := map[string]string{} // field name -> what defines it, to refuse clashes
	claim := func(name, what string) error {
		if prev, ok := names[name]; ok {
			return fmt.Errorf("export pmml: %w: field name %q is both %s and %s", ErrInvalidModel, name, prev, what)
		}
		names[name] = what
		return nil
	}

	dict := &element{name: "DataDictionary"}
	mining := &element{name: "MiningSchema"}
	trans := &element{name: "TransformationDictionary"}
	table := &element{name: "RegressionTable", attrs: attrs("intercept", formatFloat(weights[0]), "targetCategory", s.Label.Positive)}
	predictor := func(field string, coef float64) {
		table.add(&element{name: "NumericPredictor", attrs: attrs("name", field, "coefficient", formatFloat(coef))})
	}

	next := 0 // index into coefficients, in the encoder's input order
	for i, col := range s.Numeric {
		derived := "std(" + col + ")"
		if err := errorsOf(claim(col, "a numeric column"), claim(derived, "a standardised input")); err != nil {
			return nil, err
		}
		dict.add(&element{name: "DataField", attrs: attrs("name", col, "optype", "continuous", "dataType", "double")})
		mining.add(&element{name: "MiningField", attrs: attrs("name", col, "usageType", "active", "missingValueTreatment", "returnInvalid")})
		diff := apply("-", fieldRef(col), constant(doc.Standardization.Mean[i]))
		trans.add(derivedField(derived, apply("/", diff, constant(doc.Standardization.Std[i]))))
		predictor(derived, coefficients[next])
		next++
	}
	for _, c := range s.Categorical {
		if err := claim(c.Column, "a categorical column"); err != nil {
			return nil, err
		}
		field := &element{name: "DataField", attrs: attrs("name", c.Column, "optype", "categorical", "dataType", "string")}
		for _, v := range c.Values {
			field.add(&element{name: "Value", attrs: attrs("value", v)})
		}
		dict.add(field)
		mf := &element{name: "MiningField", attrs: attrs("name", c.Column, "usageType", "active", "missingValueTreatment", "returnInvalid")}
		if c.Policy() == dataset.UnseenOther {
			mf.attrs = append(mf.attrs, [2]string{"invalidValueTreatment", "asIs"})
		}
		mining.add(mf)
		for _, v := range c.Values {
			derived := c.Column + "=" + v
			if err := claim(derived, "a one-hot input"); err != nil {
				return nil, err
			}
			trans.add(derivedField(derived, &element{name: "NormDiscrete", attrs: attrs("field", c.Column, "value", v)}))
			predictor(derived, coefficients[next])
			next++
		}
		if c.Policy() == dataset.UnseenOther {
			derived := c.Column + "=" + dataset.OtherCategory
			if err := claim(derived, "an other-bucket input"); err != nil {
				return nil, err
			}
			known := &element{name: "Apply", attrs: attrs("function", "isIn"), kids: []*element{fieldRef(c.Column)}}
			for _, v := range c.Values {
				known.add(&element{name: "Constant", attrs: attrs("dataType", "string"), text: v})
			}
			trans.add(derivedField(derived, apply("if", known, constant(0), constant(1))))
			predictor(derived, coefficients[next])
			next++
		}
	}

	label := s.Label.Column
	if err := errorsOf(claim(label, "the label"), claim(PMMLOutput, "the output")); err != nil {
		return nil, err
	}
	target := &element{name: "DataField", attrs: attrs("name", label, "optype", "categorical", "dataType", "string")}
	target.add(&element{name: "Value", attrs: attrs("value", s.Label.Positive)})
	for _, v := range s.Label.Negative {
		target.add(&element{name: "Value", attrs: attrs("value", v)})
	}
	dict.add(target)
	dict.attrs = attrs("numberOfFields", strconv.Itoa(len(dict.kids)))
	mining.add(&element{name: "MiningField", attrs: attrs("name", label, "usageType", "target")})

	output := &element{name: "Output", kids: []*element{{name: "OutputField", attrs: attrs(
		"name", PMMLOutput, "displayName", "P("+label+"="+s.Label.Positive+")", "optype", "continuous", "dataType", "double",
		"targetField", label, "feature", "probability", "value", s.Label.Positive)}}}

	regression := &element{name: "RegressionModel", attrs: attrs(
		"modelName", fmt.Sprintf("%s v%d", s.Name, doc.Version), "functionName", "classification",
		"algorithmName", "federated logistic regression", "modelType", "logisticRegression",
		"targetFieldName", label, "normalizationMethod", "logit"),
		kids: []*element{mining, output, table,
			{name: "RegressionTable", attrs: attrs("intercept", "0", "targetCategory", s.Label.Negative[0])}}}

	header := &element{name: "Header", attrs: attrs(
		"description", fmt.Sprintf("fedprop propensity model: P(%s=%s) by logistic regression", label, s.Label.Positive),
		"modelVersion", strconv.FormatUint(doc.Version, 10)),
		kids: []*element{
			{name: "Application", attrs: attrs("name", Producer, "version", modelfile.Format)},
			{name: "Annotation", text: fmt.Sprintf("schema %s, run %s, version %d, round %d", s.Name, doc.RunID, doc.Version, doc.Round)},
			{name: "Timestamp", text: doc.Created.UTC().Format(time.RFC3339)},
		}}

	root := &element{name: "PMML", attrs: attrs("xmlns", PMMLNamespace, "version", PMMLVersion),
		kids: []*element{header, dict, trans, regression}}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	root.write(&buf, 0)
	return buf.Bytes(), nil
}

// errorsOf returns the first non-nil error.
func errorsOf(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// element is an XML element with attributes in a fixed order.
type element struct {
	name  string
	attrs [][2]string
	text  string
	kids  []*element
}

func (e *element) add(kid *element) { e.kids = append(e.kids, kid) }

func attrs(kv ...string) [][2]string {
	out := make([][2]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, [2]string{kv[i], kv[i+1]})
	}
	return out
}

func apply(function string, args ...*element) *element {
	return &element{name: "Apply", attrs: attrs("function", function), kids: args}
}

func fieldRef(field string) *element {
	return &element{name: "FieldRef", attrs: attrs("field", field)}
}

func constant(v float64) *element {
	return &element{name: "Constant", attrs: attrs("dataType", "double"), text: formatFloat(v)}
}

func derivedField(name string, expr *element) *element {
	return &element{name: "DerivedField", attrs: attrs("name", name, "optype", "continuous", "dataType", "double"), kids: []*element{expr}}
}

// write writes e indented by depth levels of two spaces.
func (e *element) write(buf *bytes.Buffer, depth int) {
	indent := strings.Repeat("  ", depth)
	buf.WriteString(indent + "<" + e.name)
	for _, a := range e.attrs {
		buf.WriteString(" " + a[0] + `="`)
		escape(buf, a[1])
		buf.WriteString(`"`)
	}
	switch {
	case len(e.kids) == 0 && e.text == "":
		buf.WriteString("/>\n")
	case len(e.kids) == 0:
		buf.WriteString(">")
		escape(buf, e.text)
		buf.WriteString("</" + e.name + ">\n")
	default:
		buf.WriteString(">\n")
		for _, k := range e.kids {
			k.write(buf, depth+1)
		}
		buf.WriteString(indent + "</" + e.name + ">\n")
	}
}

// escape writes s escaped for XML text and attribute values.
func escape(buf *bytes.Buffer, s string) {
	// EscapeText only fails when the writer does, and a bytes.Buffer does not.
	_ = xml.EscapeText(buf, []byte(s))
}
