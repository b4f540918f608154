package export_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/banktest"
	"github.com/fedprop/fedprop/internal/sharedtest"
	"github.com/fedprop/fedprop/release/export"
	"github.com/fedprop/fedprop/release/modelfile"
)

func TestPMMLValidatesAgainstTheSchema(t *testing.T) {
	cases := []struct {
		name string
		doc  func(t *testing.T) *modelfile.Document
	}{
		{"small model with an other bucket", func(t *testing.T) *modelfile.Document { d, _ := smallModel(t, 50); return d }},
		{"bank-full reference model", func(t *testing.T) *modelfile.Document { return banktest.Load(t).Model(t) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := export.PMML(tc.doc(t))
			require.NoError(t, err)
			xmllintValidate(t, raw)
		})
	}
}

func TestXmllintRejectsAnInvalidDocument(t *testing.T) {
	doc, _ := smallModel(t, 10)
	raw, err := export.PMML(doc)
	require.NoError(t, err)
	// A RegressionModel without its required functionName must not validate: the check can fail.
	broken := bytes.Replace(raw, []byte(`functionName="classification" `), nil, 1)
	require.NotEqual(t, raw, broken)
	out, err := xmllint(t, broken)
	require.Error(t, err, "xmllint accepted an invalid document: %s", out)
}

func TestPMMLScoresLikeFedprop(t *testing.T) {
	check := func(t *testing.T, doc *modelfile.Document, ds *dataset.Dataset, unseen string) {
		raw, err := export.PMML(doc)
		require.NoError(t, err)
		want, err := doc.Score(ds)
		require.NoError(t, err)
		got := evalPMML(t, raw, ds, unseen)
		require.Len(t, got, len(want))
		for i := range want {
			require.InDelta(t, want[i], got[i], 1e-12, "row %d", i)
		}
	}
	t.Run("small", func(t *testing.T) {
		doc, ds := smallModel(t, 300)
		check(t, doc, ds, unseenChannel)
	})
	t.Run("bank", func(t *testing.T) {
		split := banktest.Load(t)
		check(t, split.Model(t), split.Test, "")
	})
}

func TestPMMLDeclaresTheLogisticModelAndItsPolicies(t *testing.T) {
	doc, _ := smallModel(t, 10)
	raw, err := export.PMML(doc)
	require.NoError(t, err)
	root := parseXML(t, raw)
	assert.Equal(t, export.PMMLNamespace, root.XMLName.Space)
	model := root.child("RegressionModel")
	require.NotNil(t, model)
	assert.Equal(t, "classification", model.attr("functionName"))
	assert.Equal(t, "logit", model.attr("normalizationMethod"))
	invalid := map[string]string{}
	for _, mf := range model.child("MiningSchema").children("MiningField") {
		invalid[mf.attr("name")] = mf.attr("invalidValueTreatment")
	}
	assert.Equal(t, map[string]string{"income": "", "age": "", "region": "", "channel": "asIs", "y": ""}, invalid,
		"only channel (unseen: other) accepts values outside its vocabulary; gender is no input")
	var derived []string
	for _, df := range root.child("TransformationDictionary").children("DerivedField") {
		derived = append(derived, df.attr("name"))
	}
	assert.Equal(t, []string{"std(income)", "std(age)", "region=north", "region=south", "region=east",
		"channel=app", "channel=branch", "channel=<other>"}, derived)
}

func TestPMMLRefusesClashingFieldNames(t *testing.T) {
	doc, _ := smallModel(t, 10)
	clash := *doc
	schema := *doc.Schema
	schema.Numeric = []string{"income", "std(income)"}
	clash.Schema = &schema
	_, err := export.PMML(&clash)
	require.ErrorIs(t, err, export.ErrInvalidModel)
	assert.Contains(t, err.Error(), `"std(income)"`)
}

func BenchmarkPMML(b *testing.B) {
	doc, _ := smallModel(b, 10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := export.PMML(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// xmllintValidate validates a PMML document with xmllint against the PMML 4.4 schema in
// ../shared/schemas, skipping t when xmllint or the schema is absent (failing under CI=true).
func xmllintValidate(t *testing.T, doc []byte) {
	t.Helper()
	out, err := xmllint(t, doc)
	require.NoError(t, err, "xmllint: %s", out)
}

func xmllint(t *testing.T, doc []byte) (string, error) {
	t.Helper()
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	xsd := filepath.Join(root, "..", "shared", "schemas", "pmml-4-4.xsd")
	_, lintErr := exec.LookPath("xmllint")
	_, xsdErr := os.Stat(xsd)
	if lintErr != nil || xsdErr != nil {
		msg := fmt.Sprintf("cannot validate PMML: xmllint (Debian's libxml2-utils): %v; schema %s: %v", lintErr, xsd, xsdErr)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("skipping: " + msg)
	}
	path := filepath.Join(t.TempDir(), "model.pmml")
	require.NoError(t, os.WriteFile(path, doc, 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "xmllint", "--noout", "--schema", xsd, path).CombinedOutput()
	return string(out), err
}

// xnode is a parsed XML element.
type xnode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Kids    []*xnode   `xml:",any"`
}

func parseXML(t *testing.T, raw []byte) *xnode {
	t.Helper()
	var root xnode
	require.NoError(t, xml.Unmarshal(raw, &root))
	return &root
}

func (n *xnode) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (n *xnode) children(name string) []*xnode {
	var out []*xnode
	for _, k := range n.Kids {
		if k.XMLName.Local == name {
			out = append(out, k)
		}
	}
	return out
}

func (n *xnode) child(name string) *xnode {
	if c := n.children(name); len(c) > 0 {
		return c[0]
	}
	return nil
}

// evalPMML scores ds with a PMML regression model, implementing the PMML semantics of the
// elements the export uses (an independent reading of the document, not the export's code).
func evalPMML(t *testing.T, raw []byte, ds *dataset.Dataset, unseen string) []float64 {
	t.Helper()
	root := parseXML(t, raw)
	derived := map[string]*xnode{}
	for _, df := range root.child("TransformationDictionary").children("DerivedField") {
		derived[df.attr("name")] = df.Kids[0]
	}
	model := root.child("RegressionModel")
	require.Equal(t, "logit", model.attr("normalizationMethod"))
	tables := model.children("RegressionTable")
	require.Len(t, tables, 2)
	require.Equal(t, ds.Schema.Label.Positive, tables[0].attr("targetCategory"))
	require.Equal(t, "0", tables[1].attr("intercept"))
	require.Empty(t, tables[1].Kids)

	numeric, categorical := rawColumns(ds, unseen)
	out := make([]float64, ds.Len())
	for r := range ds.Len() {
		record := map[string]string{}
		for i, col := range ds.Schema.Numeric {
			record[col] = formatNumber(numeric[i][r])
		}
		for j, c := range ds.Schema.Categorical {
			record[c.Column] = categorical[j][r]
		}
		var eval func(n *xnode) string
		num := func(n *xnode) float64 {
			v, err := strconv.ParseFloat(eval(n), 64)
			require.NoError(t, err)
			return v
		}
		eval = func(n *xnode) string {
			switch n.XMLName.Local {
			case "Constant":
				return n.Text
			case "FieldRef":
				if e, ok := derived[n.attr("field")]; ok {
					return eval(e)
				}
				v, ok := record[n.attr("field")]
				require.True(t, ok, "field %s", n.attr("field"))
				return v
			case "NormDiscrete":
				if record[n.attr("field")] == n.attr("value") {
					return "1"
				}
				return "0"
			case "Apply":
				switch f := n.attr("function"); f {
				case "-":
					return formatNumber(num(n.Kids[0]) - num(n.Kids[1]))
				case "/":
					return formatNumber(num(n.Kids[0]) / num(n.Kids[1]))
				case "isIn":
					v := eval(n.Kids[0])
					for _, k := range n.Kids[1:] {
						if eval(k) == v {
							return "true"
						}
					}
					return "false"
				case "if":
					if eval(n.Kids[0]) == "true" {
						return eval(n.Kids[1])
					}
					return eval(n.Kids[2])
				default:
					t.Fatalf("function %q not implemented", f)
				}
			}
			t.Fatalf("element %s not implemented", n.XMLName.Local)
			return ""
		}
		y, err := strconv.ParseFloat(tables[0].attr("intercept"), 64)
		require.NoError(t, err)
		for _, p := range tables[0].children("NumericPredictor") {
			coef, err := strconv.ParseFloat(p.attr("coefficient"), 64)
			require.NoError(t, err)
			e, ok := derived[p.attr("name")]
			require.True(t, ok, "predictor %s", p.attr("name"))
			y += coef * num(e)
		}
		out[r] = 1 / (1 + math.Exp(-y))
	}
	return out
}

func formatNumber(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
