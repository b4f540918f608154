package model_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
)

const schemaYAML = `name: kinds
label: {column: y, positive: "1", negative: ["0"]}
numeric: [income, age]
categorical: [{column: segment, values: [retail, private], unseen: other}]
consent: {tracked: false}
`

var std = dataset.Standardization{Mean: []float64{45000, 40}, Std: []float64{20000, 12}}

// rows returns n rows of the schema whose label depends on every feature, with a missing age
// now and then and every segment, the "other" bucket included.
func rows(t testing.TB, s *dataset.Schema, n int) *dataset.Dataset {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	b := dataset.NewBuilder(s, "rows", n)
	for i := range n {
		income, age := 45000+20000*rng.NormFloat64(), 40+12*rng.NormFloat64()
		seg := int32(rng.IntN(3))
		z := (income-45000)/20000 - 0.5*(age-40)/12 + []float64{-1, 1, 0}[seg]
		if i%17 == 0 {
			age = math.NaN()
		}
		label := 0.0
		if rng.Float64() < model.Sigmoid(z) {
			label = 1
		}
		b.Append([]float64{income, age}, []int32{seg}, nil, label, i+2)
	}
	return b.Finish()
}

type kind struct {
	name  string
	model model.Model
	// broken is the model with one value no scoring may use, and is the error it gives.
	broken func(t *testing.T) model.Model
	is     error
	algo   string
}

// kinds returns one model of every kind over the schema, fitted (trees) or set (logistic).
func kinds(t *testing.T, s *dataset.Schema, train *dataset.Dataset) []kind {
	t.Helper()
	enc, err := dataset.NewEncoder(s, std)
	require.NoError(t, err)
	w := []float64{-0.5, 1, -0.5, -1, 1, 0.25}
	lr, err := logreg.NewModel(w, enc)
	require.NoError(t, err)

	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth, p.Bins = 8, 3, 16
	trees, err := gbdt.Fit(train, std, p)
	require.NoError(t, err)

	return []kind{
		{name: "logistic", model: lr, algo: "logistic regression", is: logreg.ErrNonFinite, broken: func(t *testing.T) model.Model {
			bad := append([]float64{}, w...)
			bad[2] = math.Inf(1)
			m, err := logreg.NewModel(bad, enc)
			require.NoError(t, err, "NewModel checks dimensions only")
			return m
		}},
		{name: "gbdt", model: trees, algo: "gradient-boosted trees (8 trees of depth at most 3", is: gbdt.ErrModel, broken: func(t *testing.T) model.Model {
			bad := *trees
			bad.Trees = append([]gbdt.Tree{}, trees.Trees...)
			bad.Trees[0] = gbdt.Tree{Nodes: append([]gbdt.Node{}, trees.Trees[0].Nodes...)}
			bad.Trees[0].Nodes[len(bad.Trees[0].Nodes)-1].Value = math.NaN()
			return &bad
		}},
	}
}

// TestEveryKindIsAModel runs the same checks on every model kind through model.Model.
func TestEveryKindIsAModel(t *testing.T) {
	s, err := dataset.ParseSchema("kinds.yaml", []byte(schemaYAML))
	require.NoError(t, err)
	train, test := rows(t, s, 600), rows(t, s, 50)
	// Rows of another layout: one numeric column fewer.
	otherSchema, err := dataset.ParseSchema("other.yaml", []byte(strings.Replace(schemaYAML, "[income, age]", "[income]", 1)))
	require.NoError(t, err)
	ob := dataset.NewBuilder(otherSchema, "other", 1)
	ob.Append([]float64{1}, []int32{0}, nil, 0, 2)
	other := ob.Finish()

	for _, k := range kinds(t, s, train) {
		t.Run(k.name, func(t *testing.T) {
			m := k.model
			assert.Equal(t, model.Kind(k.name), m.Kind())
			require.NoError(t, m.Validate())
			assert.Equal(t, []model.Column{{Name: "income", Kind: model.Numeric}, {Name: "age", Kind: model.Numeric},
				{Name: "segment", Kind: model.Categorical}}, m.Columns())

			require.NoError(t, m.Check(test))
			assert.Error(t, m.Check(other), "another vocabulary")
			_, err := m.Predict(other)
			assert.Error(t, err, "Predict checks the rows")
			_, err = m.ExplainAll(other)
			assert.Error(t, err, "ExplainAll checks the rows")

			scores, err := m.Predict(test)
			require.NoError(t, err)
			require.Len(t, scores, test.Len())
			xs, err := m.ExplainAll(test)
			require.NoError(t, err)
			require.Len(t, xs, test.Len())
			desc := m.Describe()
			for i, x := range xs {
				margin := m.Margin(test, i)
				assert.InDelta(t, model.Sigmoid(margin), scores[i], 1e-12, "row %d: the score is the margin's probability", i)
				assert.InDelta(t, margin, x.Margin, 1e-9, "row %d: the explanation's margin is the row's", i)
				sum := x.Expected
				for _, v := range x.Values {
					sum += v
				}
				assert.InDelta(t, x.Margin, sum, 1e-9, "row %d: the values add up to the margin", i)
				assert.Len(t, x.Values, len(m.Columns()))
				assert.Equal(t, desc.Expected, x.Expected, "row %d: measured from the kind's reference", i)
			}

			imp, err := m.Importance(xs)
			require.NoError(t, err)
			require.Len(t, imp, len(m.Columns()))
			for f, v := range imp {
				assert.True(t, v > 0 && !math.IsInf(v, 0), "column %d moves scores: %v", f, v)
			}
			_, err = m.Importance(nil)
			require.ErrorIs(t, err, model.ErrExplanations, "no rows")
			_, err = m.Importance([]model.Explanation{{Values: []float64{1}}})
			require.ErrorIs(t, err, model.ErrExplanations, "values for another model")

			assert.True(t, strings.HasPrefix(desc.Algorithm, k.algo), desc.Algorithm)
			assert.NotEmpty(t, desc.Attribution)
			assert.NotEmpty(t, desc.Reference)
			assert.Positive(t, desc.Inputs)

			empty, err := m.Predict(dataset.NewBuilder(s, "none", 0).Finish())
			require.NoError(t, err)
			assert.Empty(t, empty)

			assert.ErrorIs(t, k.broken(t).Validate(), k.is)
		})
	}
}

func TestRelative(t *testing.T) {
	e := model.Explanation{Expected: -1, Values: []float64{2, -0.5}, Margin: 0.5}
	cases := []struct {
		name     string
		expected []float64
		want     model.Explanation
		err      error
	}{
		{"against zero, the same", []float64{0, 0}, e, nil},
		{"against a population", []float64{1, -1}, model.Explanation{Expected: -1, Values: []float64{1, 0.5}, Margin: 0.5}, nil},
		{"a value short", []float64{1}, model.Explanation{}, model.ErrReference},
		{"not finite", []float64{math.NaN(), 0}, model.Explanation{}, model.ErrReference},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.Relative(tc.expected)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, []float64{2, -0.5}, e.Values, "e is unchanged")
		})
	}
}
