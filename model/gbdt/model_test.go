package gbdt_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
)

// toyModel fits a small model on toy data.
func toyModel(t testing.TB, trees, depth int) (*gbdt.Model, *dataset.Dataset) {
	d := gbdt.ToyDataset(t, 41, 1500)
	p := gbdt.DefaultParams()
	p.Trees, p.MaxDepth = trees, depth
	m, err := gbdt.Fit(d, gbdt.ToyStandardization(t, d), p)
	require.NoError(t, err)
	return m, d
}

func TestModelJSONRoundTrip(t *testing.T) {
	m, d := toyModel(t, 5, 4)
	data, err := json.Marshal(m)
	require.NoError(t, err)
	back, err := gbdt.DecodeModel(data)
	require.NoError(t, err)
	require.Equal(t, m, back)
	for i := range d.Len() {
		require.Equal(t, m.Margin(d, i), back.Margin(d, i))
	}
}

func TestPredictIsProbability(t *testing.T) {
	m, d := toyModel(t, 5, 3)
	got, err := m.Predict(d)
	require.NoError(t, err)
	for i := range d.Len() {
		require.Equal(t, m.Probability(d, i), got[i])
		require.InDelta(t, sigmoid(m.Margin(d, i)), got[i], 1e-15)
	}
}

func TestRawThreshold(t *testing.T) {
	m, _ := toyModel(t, 5, 3)
	numeric, categorical := 0, 0
	for _, tr := range m.Trees {
		for _, n := range tr.Nodes {
			raw, ok := m.RawThreshold(n)
			switch {
			case n.IsLeaf():
				assert.False(t, ok)
			case m.Features[n.Feature].Kind == gbdt.Numeric:
				numeric++
				require.True(t, ok)
				f := m.Features[n.Feature]
				assert.InDelta(t, n.Threshold, (raw-f.Mean)/f.Std, 1e-12)
			default:
				categorical++
				assert.False(t, ok)
			}
		}
	}
	assert.Positive(t, numeric)
	assert.Positive(t, categorical)
}

func TestValidateRejects(t *testing.T) {
	// Find a numeric split and a categorical one to break.
	m0, _ := toyModel(t, 3, 3)
	var numTree, numNode, catTree, catNode int = -1, -1, -1, -1
	for i, tr := range m0.Trees {
		for j, n := range tr.Nodes {
			if !n.IsLeaf() && m0.Features[n.Feature].Kind == gbdt.Numeric && numTree < 0 {
				numTree, numNode = i, j
			}
			if !n.IsLeaf() && m0.Features[n.Feature].Kind == gbdt.Categorical && catTree < 0 {
				catTree, catNode = i, j
			}
		}
	}
	require.True(t, numTree >= 0 && catTree >= 0)
	tests := []struct {
		name   string
		mutate func(m *gbdt.Model)
	}{
		{"another format", func(m *gbdt.Model) { m.Format = "xgboost" }},
		{"invalid params", func(m *gbdt.Model) { m.Params.MaxDepth = 0 }},
		{"infinite base score", func(m *gbdt.Model) { m.BaseScore = math.Inf(1) }},
		{"no features", func(m *gbdt.Model) { m.Features = nil }},
		{"unknown kind", func(m *gbdt.Model) { m.Features[0].Kind = "ordinal" }},
		{"zero std", func(m *gbdt.Model) { m.Features[1].Std = 0 }},
		{"unsorted edges", func(m *gbdt.Model) { e := m.Features[0].Edges; e[0], e[1] = e[1], e[0] }},
		{"a categorical feature before a numeric one", func(m *gbdt.Model) { m.Features[0], m.Features[3] = m.Features[3], m.Features[0] }},
		{"an empty tree", func(m *gbdt.Model) { m.Trees[0].Nodes = nil }},
		{"a child before its parent", func(m *gbdt.Model) { m.Trees[0].Nodes[0].Left = 0 }},
		{"a child out of range", func(m *gbdt.Model) { m.Trees[0].Nodes[0].Right = 999 }},
		{"both children the same", func(m *gbdt.Model) { m.Trees[0].Nodes[0].Right = m.Trees[0].Nodes[0].Left }},
		{"an orphan", func(m *gbdt.Model) { m.Trees[0].Nodes = append(m.Trees[0].Nodes, m.Trees[0].Nodes[1]) }},
		{"a feature out of range", func(m *gbdt.Model) { m.Trees[numTree].Nodes[numNode].Feature = 99 }},
		{"a numeric bin without an edge", func(m *gbdt.Model) {
			n := &m.Trees[numTree].Nodes[numNode]
			n.Bin = len(m.Features[n.Feature].Edges)
		}},
		{"a threshold that is not its bin's edge", func(m *gbdt.Model) { m.Trees[numTree].Nodes[numNode].Threshold += 1e-9 }},
		{"a category out of range", func(m *gbdt.Model) { m.Trees[catTree].Nodes[catNode].Bin = 99 }},
		{"a categorical split with a threshold", func(m *gbdt.Model) { m.Trees[catTree].Nodes[catNode].Threshold = 0.5 }},
		{"a zero cover", func(m *gbdt.Model) { m.Trees[0].Nodes[1].Cover = 0 }},
		{"a NaN value", func(m *gbdt.Model) { m.Trees[0].Nodes[2].Value = math.NaN() }},
		{"a leaf with a feature", func(m *gbdt.Model) {
			for i, n := range m.Trees[0].Nodes {
				if n.IsLeaf() {
					m.Trees[0].Nodes[i].Feature = 0
					return
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := toyModel(t, 3, 3)
			tt.mutate(m)
			require.ErrorIs(t, m.Validate(), gbdt.ErrModel)
		})
	}
}

func TestDecodeModelRejects(t *testing.T) {
	m, _ := toyModel(t, 2, 2)
	good, err := json.Marshal(m)
	require.NoError(t, err)
	tests := []struct {
		name string
		data string
	}{
		{"not JSON", "{"},
		{"an unknown field", strings.Replace(string(good), `"format"`, `"colour":1,"format"`, 1)},
		{"data after the model", string(good) + "{}"},
		{"a string for a number", strings.Replace(string(good), `"base_score":`, `"base_score":"1",`, 1)},
		{"a model that does not validate", strings.Replace(string(good), gbdt.ModelFormat, "other/1", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := gbdt.DecodeModel([]byte(tt.data))
			require.ErrorIs(t, err, gbdt.ErrModel)
		})
	}
}

func TestPredictChecksTheSchema(t *testing.T) {
	m, d := toyModel(t, 2, 2)
	renamed := *d.Schema
	renamed.Numeric = []string{"a", "b", "z"}
	_, err := m.Predict(&dataset.Dataset{Schema: &renamed})
	require.ErrorIs(t, err, gbdt.ErrData)
}
