package export_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fedprop/fedprop/internal/banktest"
	"github.com/fedprop/fedprop/release/export"
	"github.com/fedprop/fedprop/release/modelfile"
)

// onnxTolerance is the largest difference between fedprop's and the ONNX runtime's probability
// the issue accepts.
const onnxTolerance = 1e-6

func TestONNXScoresBankFullTestRowsLikeFedprop(t *testing.T) {
	onnxRuntimeDir(t) // skip before the fit when the runtime is absent
	split := banktest.Load(t)
	doc := split.Model(t)
	want, err := doc.Score(split.Test)
	require.NoError(t, err)
	model, err := export.ONNX(doc)
	require.NoError(t, err)

	res, err := scoreONNX(t, model, split.Test, "")
	require.NoError(t, err)
	require.Equal(t, []int{split.Test.Len(), 1}, res.Dims)
	assert.Equal(t, "float64", res.Type)
	assert.Equal(t, "1.30.0", res.Version)
	require.Len(t, res.Probability, len(want))
	worst := maxAbsDiff(want, res.Probability)
	t.Logf("%d bank-full test rows: largest |fedprop - onnxruntime| = %.3g", len(want), worst)
	assert.LessOrEqual(t, worst, onnxTolerance)
}

func TestONNXScoresEveryCategoryAndTheOtherBucketLikeFedprop(t *testing.T) {
	doc, ds := smallModel(t, 300)
	want, err := doc.Score(ds)
	require.NoError(t, err)
	model, err := export.ONNX(doc)
	require.NoError(t, err)

	res, err := scoreONNX(t, model, ds, unseenChannel)
	require.NoError(t, err)
	require.Len(t, res.Probability, len(want))
	worst := maxAbsDiff(want, res.Probability)
	t.Logf("largest |fedprop - onnxruntime| = %.3g", worst)
	assert.LessOrEqual(t, worst, onnxTolerance)
}

func TestONNXRefusesAnUnseenValueUnderTheErrorPolicy(t *testing.T) {
	doc, ds := smallModel(t, 3)
	model, err := export.ONNX(doc)
	require.NoError(t, err)
	// Region has "unseen: error": a value outside its vocabulary must fail, not score.
	bad := ds.Subset([]int{0})
	bad.Category[0][0] = int32(len(doc.Schema.Categorical[0].Values))
	_, err = scoreONNX(t, model, bad, "atlantis")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "OneHotEncoder", "the encoder refuses the value")
}

func TestONNXDeclaresRawInputsAndOneProbabilityOutput(t *testing.T) {
	doc, _ := smallModel(t, 10)
	model, err := export.ONNX(doc)
	require.NoError(t, err)

	m := decodeMessage(t, model)
	assert.Equal(t, []uint64{export.ONNXIRVersion}, m.varints(1), "ir_version")
	opsets := map[string]uint64{}
	for _, raw := range m.messages(8) {
		o := decodeMessage(t, raw)
		domain := ""
		if s := o.strings(1); len(s) > 0 {
			domain = s[0]
		}
		opsets[domain] = o.varints(2)[0]
	}
	assert.Equal(t, map[string]uint64{"": export.ONNXOpset, "ai.onnx.ml": export.ONNXMLOpset}, opsets)

	graphs := m.messages(7)
	require.Len(t, graphs, 1)
	g := decodeMessage(t, graphs[0])
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
	assert.Equal(t, []io{{"income", double}, {"age", double}, {"region", str}, {"channel", str}}, valueInfos(11),
		"one input per feature column, no label, no sensitive-only column")
	assert.Equal(t, []io{{export.ONNXOutput, double}}, valueInfos(12))

	var ops []string
	for _, raw := range g.messages(1) {
		ops = append(ops, decodeMessage(t, raw).strings(4)[0])
	}
	assert.Contains(t, ops, "OneHotEncoder")
	assert.Equal(t, []string{"MatMul", "Add", "Sigmoid"}, ops[len(ops)-3:])
}

func TestONNXRefusesDocumentsItCannotExport(t *testing.T) {
	doc, _ := smallModel(t, 10)
	nanCoef := *doc
	nanCoef.Coefficients = append([]float64{math.NaN()}, doc.Coefficients[1:]...)
	short := *doc
	short.Coefficients = doc.Coefficients[1:]
	clash := *doc
	schema := *doc.Schema
	schema.Numeric = []string{"probability", "age"}
	clash.Schema = &schema
	cases := []struct {
		name string
		doc  *modelfile.Document
	}{
		{"nil", nil},
		{"non-finite coefficient", &nanCoef},
		{"coefficients missing", &short},
		{"a column named like the output", &clash},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := export.ONNX(tc.doc)
			require.ErrorIs(t, err, export.ErrInvalidModel)
			_, err = export.PMML(tc.doc)
			require.ErrorIs(t, err, export.ErrInvalidModel)
		})
	}
}

func BenchmarkONNX(b *testing.B) {
	doc, _ := smallModel(b, 10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := export.ONNX(doc); err != nil {
			b.Fatal(err)
		}
	}
}

func maxAbsDiff(a, b []float64) float64 {
	worst := 0.0
	for i := range a {
		d := math.Abs(a[i] - b[i])
		if !(d <= worst) {
			worst = d
		}
	}
	return worst
}

// message is a decoded protobuf message: the raw values of each field.
type message map[protowire.Number][]any

func decodeMessage(t *testing.T, b []byte) message {
	t.Helper()
	m := message{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		require.GreaterOrEqual(t, n, 0, "tag")
		b = b[n:]
		var v any
		switch typ {
		case protowire.VarintType:
			x, n2 := protowire.ConsumeVarint(b)
			require.GreaterOrEqual(t, n2, 0)
			v, n = x, n2
		case protowire.BytesType:
			x, n2 := protowire.ConsumeBytes(b)
			require.GreaterOrEqual(t, n2, 0)
			v, n = x, n2
		case protowire.Fixed32Type:
			x, n2 := protowire.ConsumeFixed32(b)
			require.GreaterOrEqual(t, n2, 0)
			v, n = x, n2
		case protowire.Fixed64Type:
			x, n2 := protowire.ConsumeFixed64(b)
			require.GreaterOrEqual(t, n2, 0)
			v, n = x, n2
		default:
			t.Fatalf("unexpected wire type %d", typ)
		}
		m[num] = append(m[num], v)
		b = b[n:]
	}
	return m
}

func (m message) varints(f protowire.Number) []uint64 {
	var out []uint64
	for _, v := range m[f] {
		out = append(out, v.(uint64))
	}
	return out
}

func (m message) messages(f protowire.Number) [][]byte {
	var out [][]byte
	for _, v := range m[f] {
		out = append(out, v.([]byte))
	}
	return out
}

func (m message) strings(f protowire.Number) []string {
	var out []string
	for _, v := range m[f] {
		out = append(out, string(v.([]byte)))
	}
	return out
}
