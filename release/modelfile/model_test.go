package modelfile_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/release/modelfile"
)

// treeDocument is document(t) holding a small tree model instead of coefficients, as a
// coordinator writes the document of a tree run.
func treeDocument(t *testing.T) *modelfile.Document {
	t.Helper()
	d := document(t)
	rng := rand.New(rand.NewPCG(5, 6))
	b := dataset.NewBuilder(d.Schema, "train", 200)
	for i := range 200 {
		income, seg := 45000+20000*rng.NormFloat64(), int32(rng.IntN(3))
		label := 0.0
		if income > 50000 || seg == 1 {
			label = 1
		}
		b.Append([]float64{income, 20 + float64(rng.IntN(50))}, []int32{seg}, nil, label, i+2)
	}
	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth, p.Bins = 3, 2, 8
	trees, err := gbdt.Fit(b.Finish(), d.Standardization, p)
	require.NoError(t, err)
	d.Trees, d.Intercept, d.Coefficients, d.Features = trees, 0, nil, nil
	require.NoError(t, d.Validate())
	return d
}

// TestModelOfEveryKind: a document gives its model through one interface, and SetModel puts
// a model back exactly where the document's JSON has always kept it.
func TestModelOfEveryKind(t *testing.T) {
	cases := []struct {
		name string
		doc  func(t *testing.T) *modelfile.Document
		kind model.Kind
	}{
		{"logistic", func(t *testing.T) *modelfile.Document { return document(t) }, model.Logistic},
		{"gbdt", treeDocument, model.GBDT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := tc.doc(t)
			m, err := doc.Model()
			require.NoError(t, err)
			assert.Equal(t, tc.kind, m.Kind())

			var want bytes.Buffer
			require.NoError(t, doc.Write(&want))
			back := *doc
			back.Trees, back.Intercept, back.Coefficients, back.Features = nil, 99, []float64{1}, []string{"x"}
			require.NoError(t, back.SetModel(m))
			var got bytes.Buffer
			require.NoError(t, back.Write(&got))
			assert.Equal(t, want.String(), got.String(), "SetModel(Model()) writes the same document")

			b := dataset.NewBuilder(doc.Schema, "score", 2)
			b.Append([]float64{65000, 28}, []int32{1}, nil, 0, 2)
			b.Append([]float64{30000, 55}, []int32{2}, nil, 0, 3)
			ds := b.Finish()
			scores, err := doc.Score(ds)
			require.NoError(t, err)
			direct, err := m.Predict(ds)
			require.NoError(t, err)
			assert.Equal(t, direct, scores, "Score is the model's Predict")
		})
	}
}

func TestModelRefusesDocumentsWhosePartsDisagree(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T) *modelfile.Document
		msg  string
	}{
		{"trees and coefficients", func(t *testing.T) *modelfile.Document {
			d := treeDocument(t)
			d.Coefficients = []float64{1}
			return d
		}, "both trees and 1 coefficients"},
		{"a coefficient short", func(t *testing.T) *modelfile.Document {
			d := document(t)
			d.Coefficients = d.Coefficients[1:]
			return d
		}, "4 coefficients for 5 features"},
		{"no schema", func(t *testing.T) *modelfile.Document {
			d := document(t)
			d.Schema = nil
			return d
		}, "no schema"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.edit(t).Model()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestSetModelRefusesKindsWithoutAPlace(t *testing.T) {
	d := document(t)
	var none *logreg.Model
	for name, m := range map[string]model.Model{"nil": nil, "a nil logistic model": none, "another kind": otherKind{}} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, d.SetModel(m), modelfile.ErrModelKind)
		})
	}
}

// otherKind is a model kind the document has no fields for.
type otherKind struct{ model.Model }
