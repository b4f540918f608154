package export_test

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/release/export"
)

func TestPMMLTreesValidateAndScoreLikeFedprop(t *testing.T) {
	cases := []struct {
		name string
		data func(t *testing.T) (*gbdt.Model, *dataset.Dataset)
	}{
		{"bank-full test rows", func(t *testing.T) (*gbdt.Model, *dataset.Dataset) {
			split, m := bankTrees(t)
			return m, split.Test
		}},
		{"rows at the bank-full model's cut points", func(t *testing.T) (*gbdt.Model, *dataset.Dataset) {
			split, m := bankTrees(t)
			return m, withCutPoints(m, split.Test.Subset(seq(50)))
		}},
		{"missing values, other bucket and missing category", func(t *testing.T) (*gbdt.Model, *dataset.Dataset) {
			return treesModel(t)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, ds := tc.data(t)
			raw, err := export.PMMLTrees(m, ds.Schema)
			require.NoError(t, err)
			want, err := m.Predict(ds)
			require.NoError(t, err)

			got := evalTreesPMML(t, raw, treeRecords(ds, unseenValue))
			require.Len(t, got, len(want))
			worst := maxAbsDiff(want, got)
			t.Logf("%d rows, %d trees: largest |fedprop - PMML| = %.3g", len(want), len(m.Trees), worst)
			assert.LessOrEqual(t, worst, treeTolerance)

			xmllintValidate(t, raw)
		})
	}
}

func TestPMMLTreesDeclareTheChainAndThePolicies(t *testing.T) {
	m, ds := treesModel(t)
	raw, err := export.PMMLTrees(m, ds.Schema)
	require.NoError(t, err)
	root := parseXML(t, raw)
	model := root.child("MiningModel")
	require.NotNil(t, model)
	assert.Equal(t, "classification", model.attr("functionName"))
	type treatment struct{ missing, replacement, invalid string }
	fields := map[string]treatment{}
	for _, mf := range model.child("MiningSchema").children("MiningField") {
		fields[mf.attr("name")] = treatment{mf.attr("missingValueTreatment"), mf.attr("missingValueReplacement"), mf.attr("invalidValueTreatment")}
	}
	assert.Equal(t, map[string]treatment{
		"income":  {"asIs", "", ""},
		"age":     {"returnInvalid", "", ""},
		"score":   {"asIs", "", ""},
		"region":  {"returnInvalid", "", ""},
		"channel": {"returnInvalid", "", "asIs"},
		"segment": {"asValue", dataset.MissingCategory, ""},
		"y":       {"", "", ""},
	}, fields, "missing values imputed as missing, or read as their category, or refused; unseen values kept only under unseen: other")

	chain := model.child("Segmentation")
	assert.Equal(t, "modelChain", chain.attr("multipleModelMethod"))
	segments := chain.children("Segment")
	require.Len(t, segments, 2)
	sum := segments[0].child("MiningModel").child("Segmentation")
	assert.Equal(t, "sum", sum.attr("multipleModelMethod"))
	assert.Len(t, sum.children("Segment"), len(m.Trees), "one TreeModel per tree")
	logistic := segments[1].child("RegressionModel")
	assert.Equal(t, "logit", logistic.attr("normalizationMethod"))
	assert.Equal(t, formatNumber(m.BaseScore), logistic.child("RegressionTable").attr("intercept"))
}

func TestPMMLTreesReturnInvalidForAnUnseenValueUnderTheErrorPolicy(t *testing.T) {
	m, ds := treesModel(t)
	raw, err := export.PMMLTrees(m, ds.Schema)
	require.NoError(t, err)
	records := treeRecords(ds.Subset([]int{0, 1}), unseenValue)
	records[0]["region"] = "atlantis" // unseen: error
	delete(records[1], "age")         // missing, and age rejects missing values
	got := evalTreesPMML(t, raw, records)
	assert.True(t, math.IsNaN(got[0]), "an unseen region is invalid")
	assert.True(t, math.IsNaN(got[1]), "a missing age is invalid")
}

func TestPMMLTreesQuoteTheOtherBucketsVocabulary(t *testing.T) {
	m, ds := treesModel(t)
	// Levels with a space and a double quote: an Array holds them quoted and escaped.
	schema := *ds.Schema
	schema.Categorical = append([]dataset.CategoricalSpec(nil), ds.Schema.Categorical...)
	levels := []string{`mobile app`, `the "branch"`}
	schema.Categorical[1].Values = levels
	quoted := cloneModel(m)
	quoted.Features[4].Levels = levels
	raw, err := export.PMMLTrees(quoted, &schema)
	require.NoError(t, err)
	xmllintValidate(t, raw)

	renamed := ds.Subset(seq(ds.Len()))
	renamed.Schema = &schema
	want, err := quoted.Predict(renamed)
	require.NoError(t, err)
	got := evalTreesPMML(t, raw, treeRecords(renamed, unseenValue))
	assert.LessOrEqual(t, maxAbsDiff(want, got), treeTolerance)
	assert.Contains(t, string(raw), `&#34;mobile app&#34; &#34;the \&#34;branch\&#34;&#34;`)
}

func TestPMMLTreesRefuseClashingFieldNames(t *testing.T) {
	m, ds := treesModel(t)
	schema := *ds.Schema
	schema.Numeric = []string{"income", "age", "margin(y)"}
	clash := cloneModel(m)
	clash.Features[2].Name = "margin(y)"
	_, err := export.PMMLTrees(clash, &schema)
	require.ErrorIs(t, err, export.ErrInvalidModel)
	assert.Contains(t, err.Error(), `"margin(y)"`)
}

func BenchmarkPMMLTrees(b *testing.B) {
	m, ds := treesModel(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := export.PMMLTrees(m, ds.Schema); err != nil {
			b.Fatal(err)
		}
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// evalTreesPMML scores records with a PMML model chain of a tree sum and a logistic regression,
// implementing the PMML 4.4 semantics of the elements the export uses: an independent reading of
// the document, not the export's code. A record the model returns invalid for scores NaN.
func evalTreesPMML(t *testing.T, raw []byte, records []map[string]string) []float64 {
	t.Helper()
	root := parseXML(t, raw)
	dict := map[string]*xnode{}
	for _, f := range root.child("DataDictionary").children("DataField") {
		dict[f.attr("name")] = f
	}
	top := root.child("MiningModel")
	require.NotNil(t, top)
	require.Equal(t, "classification", top.attr("functionName"))
	chain := top.child("Segmentation")
	require.Equal(t, "modelChain", chain.attr("multipleModelMethod"))
	segments := chain.children("Segment")
	require.Len(t, segments, 2)
	for _, s := range segments {
		require.NotNil(t, s.child("True"), "segment %s always applies", s.attr("id"))
	}
	sumModel := segments[0].child("MiningModel")
	require.Equal(t, "regression", sumModel.attr("functionName"))
	sum := sumModel.child("Segmentation")
	require.Equal(t, "sum", sum.attr("multipleModelMethod"))
	marginField := sumModel.child("Output").child("OutputField")
	require.Equal(t, "predictedValue", marginField.attr("feature"))
	logistic := segments[1].child("RegressionModel")
	require.Equal(t, "logit", logistic.attr("normalizationMethod"))
	tables := logistic.children("RegressionTable")
	require.Len(t, tables, 2)
	require.Equal(t, "0", tables[1].attr("intercept"))
	require.Empty(t, tables[1].Kids)
	output := top.child("Output").child("OutputField")
	require.Equal(t, "probability", output.attr("feature"))
	require.Equal(t, tables[0].attr("targetCategory"), output.attr("value"))

	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err, "number %q", s)
		return v
	}
	// prepare applies the outer MiningSchema to a record: the values the models see (a
	// missing field absent), or false when the model returns invalid.
	prepare := func(rec map[string]string) (map[string]string, bool) {
		out := map[string]string{}
		for _, mf := range top.child("MiningSchema").children("MiningField") {
			name := mf.attr("name")
			if mf.attr("usageType") == "target" {
				continue
			}
			v, ok := rec[name]
			if !ok {
				if r := mf.attr("missingValueReplacement"); r != "" {
					out[name] = r
					continue
				}
				if mf.attr("missingValueTreatment") == "returnInvalid" {
					return nil, false
				}
				continue
			}
			if field := dict[name]; field.attr("optype") == "categorical" {
				valid := false
				for _, value := range field.children("Value") {
					valid = valid || value.attr("value") == v
				}
				if !valid && mf.attr("invalidValueTreatment") != "asIs" { // returnInvalid by default
					return nil, false
				}
			}
			out[name] = v
		}
		return out, true
	}

	// The three-valued logic of PMML predicates.
	const (
		unknown = iota
		isFalse
		isTrue
	)
	truth := func(b bool) int {
		if b {
			return isTrue
		}
		return isFalse
	}
	var predicate func(p *xnode, rec map[string]string) int
	predicate = func(p *xnode, rec map[string]string) int {
		switch p.XMLName.Local {
		case "True":
			return isTrue
		case "False":
			return isFalse
		case "SimplePredicate":
			v, ok := rec[p.attr("field")]
			switch p.attr("operator") {
			case "isMissing":
				return truth(!ok)
			case "isNotMissing":
				return truth(ok)
			}
			if !ok {
				return unknown
			}
			if dict[p.attr("field")].attr("dataType") == "string" {
				switch p.attr("operator") {
				case "equal":
					return truth(v == p.attr("value"))
				case "notEqual":
					return truth(v != p.attr("value"))
				}
				t.Fatalf("string operator %q not implemented", p.attr("operator"))
			}
			x, ref := num(v), num(p.attr("value"))
			switch p.attr("operator") {
			case "lessOrEqual":
				return truth(x <= ref)
			case "greaterThan":
				return truth(x > ref)
			}
			t.Fatalf("numeric operator %q not implemented", p.attr("operator"))
		case "SimpleSetPredicate":
			v, ok := rec[p.attr("field")]
			if !ok {
				return unknown
			}
			arr := p.child("Array")
			require.Equal(t, "string", arr.attr("type"))
			set := parseStringArray(t, arr.Text)
			require.Equal(t, arr.attr("n"), strconv.Itoa(len(set)))
			in := false
			for _, s := range set {
				in = in || s == v
			}
			switch p.attr("booleanOperator") {
			case "isIn":
				return truth(in)
			case "isNotIn":
				return truth(!in)
			}
		case "CompoundPredicate":
			var vals []int
			for _, k := range p.Kids {
				vals = append(vals, predicate(k, rec))
			}
			switch p.attr("booleanOperator") {
			case "and": // false wins, then unknown
				out := isTrue
				for _, v := range vals {
					if v == isFalse {
						return isFalse
					}
					if v == unknown {
						out = unknown
					}
				}
				return out
			case "or": // true wins, then unknown
				out := isFalse
				for _, v := range vals {
					if v == isTrue {
						return isTrue
					}
					if v == unknown {
						out = unknown
					}
				}
				return out
			}
		}
		t.Fatalf("predicate %s %v not implemented", p.XMLName.Local, p.Attrs)
		return unknown
	}
	// tree returns the score of the leaf a record reaches: at each node, the first child whose
	// predicate is true (missingValueStrategy "none": unknown counts as false).
	tree := func(tm *xnode, rec map[string]string) float64 {
		require.Equal(t, "none", tm.attr("missingValueStrategy"))
		n := tm.child("Node")
		require.Equal(t, isTrue, predicate(n.Kids[0], rec))
		for {
			children := n.children("Node")
			if len(children) == 0 {
				return num(n.attr("score"))
			}
			var next *xnode
			for _, c := range children {
				if predicate(c.Kids[0], rec) == isTrue {
					next = c
					break
				}
			}
			require.NotNil(t, next, "node %s: no child's predicate is true", n.attr("id"))
			n = next
		}
	}

	out := make([]float64, len(records))
	for r, rec := range records {
		values, ok := prepare(rec)
		if !ok {
			out[r] = math.NaN()
			continue
		}
		margin := 0.0
		for _, s := range sum.children("Segment") {
			require.NotNil(t, s.child("True"))
			margin += tree(s.child("TreeModel"), values)
		}
		values[marginField.attr("name")] = formatNumber(margin)
		y := num(tables[0].attr("intercept"))
		for _, p := range tables[0].children("NumericPredictor") {
			y += num(p.attr("coefficient")) * num(values[p.attr("name")])
		}
		out[r] = 1 / (1 + math.Exp(-y))
	}
	return out
}

// parseStringArray splits the content of a PMML string Array: values separated by white space,
// a value in double quotes may hold spaces and, escaped by a backslash, double quotes.
func parseStringArray(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	for i := 0; i < len(s); {
		switch {
		case s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r':
			i++
		case s[i] == '"':
			var sb strings.Builder
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && s[i+1] == '"' {
					i++
				}
				sb.WriteByte(s[i])
			}
			require.Less(t, i, len(s), "unterminated quoted value in %q", s)
			out = append(out, sb.String())
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r", rune(s[j])) {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}
