package gbdt_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/model/gbdt"
)

// prefix returns m with only its first k trees, sharing the rest.
func prefix(m *gbdt.Model, k int) *gbdt.Model {
	p := *m
	p.Trees = m.Trees[:k:k]
	return &p
}

// TestDigesterIsTheDigestOfTheModelsJSON: the Digester, handed the models of a boosting run
// one tree longer each time, and then models that do not continue the last (an earlier tree
// changed, other features, another base score, fewer trees, no trees), always answers the
// SHA-256 of the model's JSON that defines Digest, so a client and a coordinator that hash
// incrementally still agree with one that does not.
func TestDigesterIsTheDigestOfTheModelsJSON(t *testing.T) {
	m, _ := toyModel(t, 6, 3)
	want := func(m *gbdt.Model) string {
		b, err := json.Marshal(struct {
			BaseScore float64        `json:"base_score"`
			Features  []gbdt.Feature `json:"features"`
			Trees     []gbdt.Tree    `json:"trees"`
		}{m.BaseScore, m.Features, m.Trees})
		require.NoError(t, err)
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	var d gbdt.Digester
	for k := 0; k <= len(m.Trees); k++ {
		p := prefix(m, k)
		assert.Equal(t, want(p), d.Of(p), "%d trees", k)
		assert.Equal(t, want(p), p.Digest(), "%d trees", k)
	}

	changed := prefix(m, len(m.Trees))
	changed.Trees = slices.Clone(changed.Trees)
	changed.Trees[1].Nodes = slices.Clone(changed.Trees[1].Nodes)
	changed.Trees[1].Nodes[len(changed.Trees[1].Nodes)-1].Value += 0.5
	otherBase := *m
	otherBase.BaseScore += 1
	otherFeatures := *m
	otherFeatures.Features = slices.Clone(m.Features)
	otherFeatures.Features[0].Name += "x"
	noTrees := *m
	noTrees.Trees = nil
	for _, c := range []struct {
		name string
		m    *gbdt.Model
	}{
		{"an earlier tree changed", changed}, {"another base score", &otherBase},
		{"other features", &otherFeatures}, {"fewer trees", prefix(m, 2)}, {"no trees", &noTrees},
	} {
		assert.Equal(t, want(c.m), d.Of(c.m), c.name)
		assert.NotEqual(t, m.Digest(), d.Of(c.m), c.name)
	}
	assert.Equal(t, m.Digest(), d.Of(m), "back to the run")

	bad := *m
	bad.BaseScore = math.NaN()
	assert.Empty(t, d.Of(&bad), "a model that does not encode matches no digest")
}

// TestSHAPMemoIsAbsSHAPSumsToTheBit: a memo carried through a boosting run's evaluations (one
// tree more each time), and through a model that does not continue the last, gives every
// time AbsSHAPSums of the model to the bit.
func TestSHAPMemoIsAbsSHAPSumsToTheBit(t *testing.T) {
	m, d := toyModel(t, 8, 4)
	changed := prefix(m, 5)
	changed.Trees = slices.Clone(changed.Trees)
	changed.Trees[0].Nodes = slices.Clone(changed.Trees[0].Nodes)
	changed.Trees[0].Nodes[len(changed.Trees[0].Nodes)-1].Value -= 0.25
	models := []*gbdt.Model{}
	for k := 1; k <= len(m.Trees); k++ {
		models = append(models, prefix(m, k))
	}
	models = append(models, prefix(m, 3), changed, m, m)

	var memo gbdt.SHAPMemo
	for i, x := range models {
		want, err := x.AbsSHAPSums(d)
		require.NoError(t, err)
		got, err := x.AbsSHAPSumsWith(d, &memo)
		require.NoError(t, err)
		assert.Equal(t, want, got, "model %d (%d trees)", i, len(x.Trees))
	}

	// A memo of a dataset with other rows starts over.
	fewer := d.Subset([]int{0, 1, 2})
	want, err := m.AbsSHAPSums(fewer)
	require.NoError(t, err)
	got, err := m.AbsSHAPSumsWith(fewer, &memo)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}
