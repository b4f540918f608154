package export_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/release/export"
)

func TestONNXTreesScoreLikeFedprop(t *testing.T) {
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
			onnxRuntimeDir(t) // skip before the fit when the runtime is absent
			m, ds := tc.data(t)
			want, err := m.Predict(ds)
			require.NoError(t, err)
			model, err := export.ONNXTrees(m, ds.Schema)
			require.NoError(t, err)

			res, err := scoreTreesONNX(t, model, treeInputs(ds, unseenValue))
			require.NoError(t, err)
			require.Equal(t, []int{ds.Len(), 1}, res.Dims)
			assert.Equal(t, "float64", res.Type)
			require.Len(t, res.Probability, len(want))
			worst := maxAbsDiff(want, res.Probability)
			t.Logf("%d rows, %d trees: largest |fedprop - onnxruntime| = %.3g", len(want), len(m.Trees), worst)
			assert.LessOrEqual(t, worst, treeTolerance)
		})
	}
}

func TestONNXTreesRefuseAnUnseenValueUnderTheErrorPolicy(t *testing.T) {
	m, ds := treesModel(t)
	model, err := export.ONNXTrees(m, ds.Schema)
	require.NoError(t, err)
	// Region has "unseen: error": a value outside its vocabulary must fail, not score.
	bad := ds.Subset([]int{0})
	bad.Category[0][0] = int32(len(ds.Schema.Categorical[0].Values))
	_, err = scoreTreesONNX(t, model, treeInputs(bad, "atlantis"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "OneHotEncoder", "the encoder refuses the value")
}

func TestONNXTreesDeclareRawInputsAndOneProbabilityOutput(t *testing.T) {
	m, ds := treesModel(t)
	model, err := export.ONNXTrees(m, ds.Schema)
	require.NoError(t, err)

	msg := decodeMessage(t, model)
	assert.Equal(t, []uint64{export.ONNXTreesIRVersion}, msg.varints(1), "ir_version")
	opsets := map[string]uint64{}
	for _, raw := range msg.messages(8) {
		o := decodeMessage(t, raw)
		domain := ""
		if s := o.strings(1); len(s) > 0 {
			domain = s[0]
		}
		opsets[domain] = o.varints(2)[0]
	}
	assert.Equal(t, map[string]uint64{"": export.ONNXTreesOpset, "ai.onnx.ml": export.ONNXTreesMLOpset}, opsets)

	g := decodeMessage(t, msg.messages(7)[0])
	type io struct {
		name string
		elem uint64
	}
	valueInfos := func(field protowire.Number) []io {
		var out []io
		for _, raw := range g.messages(field) {
			vi := decodeMessage(t, raw)
			typ := decodeMessage(t, vi.messages(2)[0])
			tt := decodeMessage(t, typ.messages(1)[0])
			out = append(out, io{vi.strings(1)[0], tt.varints(1)[0]})
		}
		return out
	}
	const double, str = 11, 8
	assert.Equal(t, []io{{"income", double}, {"age", double}, {"score", double}, {"region", str}, {"channel", str}, {"segment", str}},
		valueInfos(11), "one input per feature column, no label")
	assert.Equal(t, []io{{export.ONNXOutput, double}}, valueInfos(12))

	var ops []string
	ensembles := 0
	for _, raw := range g.messages(1) {
		n := decodeMessage(t, raw)
		ops = append(ops, n.strings(4)[0])
		if n.strings(4)[0] == "TreeEnsemble" {
			ensembles++
			assert.Equal(t, []string{"ai.onnx.ml"}, n.strings(7))
			roots := 0
			for _, a := range n.messages(5) {
				attr := decodeMessage(t, a)
				if attr.strings(1)[0] == "tree_roots" {
					for b := attr.messages(8)[0]; len(b) > 0; roots++ {
						_, k := protowire.ConsumeVarint(b)
						b = b[k:]
					}
				}
			}
			assert.Equal(t, len(m.Trees), roots, "one root per tree, the single-leaf tree included")
		}
	}
	assert.Equal(t, 1, ensembles)
	assert.Equal(t, []string{"TreeEnsemble", "Add", "Sigmoid"}, ops[len(ops)-3:])
}

func TestTreeExportsRefuseWhatTheyCannotExport(t *testing.T) {
	m, ds := treesModel(t)
	schema := ds.Schema

	nanLeaf := cloneModel(m)
	nanLeaf.Trees[0].Nodes[len(nanLeaf.Trees[0].Nodes)-1].Value = math.NaN()
	otherLevels := *schema
	otherLevels.Categorical = append([]dataset.CategoricalSpec(nil), schema.Categorical...)
	otherLevels.Categorical[0].Values = []string{"north", "south", "west"}
	clash := *schema
	clash.Numeric = []string{"income", "age", "probability"}
	clashModel := cloneModel(m)
	clashModel.Features[2].Name = "probability"
	cases := []struct {
		name   string
		m      *gbdt.Model
		schema *dataset.Schema
	}{
		{"no model", nil, schema},
		{"no schema", m, nil},
		{"an invalid model", nanLeaf, schema},
		{"another vocabulary", m, &otherLevels},
		{"a column named like the output", clashModel, &clash},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := export.ONNXTrees(tc.m, tc.schema)
			require.ErrorIs(t, err, export.ErrInvalidModel)
			_, err = export.PMMLTrees(tc.m, tc.schema)
			require.ErrorIs(t, err, export.ErrInvalidModel)
		})
	}
}

func BenchmarkONNXTrees(b *testing.B) {
	m, ds := treesModel(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := export.ONNXTrees(m, ds.Schema); err != nil {
			b.Fatal(err)
		}
	}
}

// cloneModel returns a deep copy of m's features and trees, to change one without the other.
func cloneModel(m *gbdt.Model) *gbdt.Model {
	c := *m
	c.Features = append([]gbdt.Feature(nil), m.Features...)
	c.Trees = make([]gbdt.Tree, len(m.Trees))
	for i, t := range m.Trees {
		c.Trees[i].Nodes = append([]gbdt.Node(nil), t.Nodes...)
	}
	return &c
}
