package gbdt_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/model/gbdt"
)

func TestSubsampleTakesASeededShareOfTheRows(t *testing.T) {
	d := gbdt.ToyDataset(t, 31, 5000)
	b, x := toyBinned(t, d, 16)
	root := func(tree int, seed uint64) int {
		l, err := gbdt.NewLocal(x, d.Label, 0)
		require.NoError(t, err)
		l.StartTree(tree, 0.6, seed)
		return nodeCounts(t, l, b, 0)[0].count
	}
	n := root(0, 1)
	assert.InDelta(t, 3000, n, 150, "about 60%% of 5000 rows")
	assert.Equal(t, n, root(0, 1), "the same seed and tree give the same sample")
	assert.NotEqual(t, n, root(1, 1), "another tree samples again")
	assert.NotEqual(t, n, root(0, 2), "another seed samples again")
}

func TestApplySplitsRejects(t *testing.T) {
	d := gbdt.ToyDataset(t, 32, 40)
	_, x := toyBinned(t, d, 8)
	tests := []struct {
		name   string
		splits []gbdt.Split
	}{
		{"a node the tree does not have", []gbdt.Split{{Node: 1, Feature: 0, Bin: 0, Left: 1, Right: 2}}},
		{"a negative node", []gbdt.Split{{Node: -1, Feature: 0, Bin: 0, Left: 1, Right: 2}}},
		{"a feature out of range", []gbdt.Split{{Node: 0, Feature: 5, Bin: 0, Left: 1, Right: 2}}},
		{"a bin out of range", []gbdt.Split{{Node: 0, Feature: 3, Bin: 4, Left: 1, Right: 2}}},
		{"children out of order", []gbdt.Split{{Node: 0, Feature: 0, Bin: 0, Left: 2, Right: 1}}},
		{"children far away", []gbdt.Split{{Node: 0, Feature: 0, Bin: 0, Left: 1000, Right: 1001}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := gbdt.NewLocal(x, d.Label, 0)
			require.NoError(t, err)
			l.StartTree(0, 1, 0)
			require.ErrorIs(t, l.ApplySplits(tt.splits), gbdt.ErrRequest)
		})
	}
	t.Run("a node split twice", func(t *testing.T) {
		l, err := gbdt.NewLocal(x, d.Label, 0)
		require.NoError(t, err)
		l.StartTree(0, 1, 0)
		require.NoError(t, l.ApplySplits([]gbdt.Split{{Node: 0, Feature: 3, Bin: 0, Left: 1, Right: 2}}))
		require.ErrorIs(t, l.ApplySplits([]gbdt.Split{{Node: 0, Feature: 3, Bin: 0, Left: 3, Right: 4}}), gbdt.ErrRequest)
	})
}

func TestFinishTreeRejectsATreeThatIsNotOne(t *testing.T) {
	d := gbdt.ToyDataset(t, 33, 40)
	_, x := toyBinned(t, d, 8)
	l, err := gbdt.NewLocal(x, d.Label, 0)
	require.NoError(t, err)
	loop := gbdt.Tree{Nodes: []gbdt.Node{{Left: 0, Right: 0, Feature: 3, Cover: 1}}}
	require.ErrorIs(t, l.FinishTree(loop), gbdt.ErrRequest)
	require.ErrorIs(t, l.FinishTree(gbdt.Tree{}), gbdt.ErrRequest)
}

func TestNewLocalRejects(t *testing.T) {
	d := gbdt.ToyDataset(t, 34, 40)
	_, x := toyBinned(t, d, 8)
	_, err := gbdt.NewLocal(x, d.Label[:39], 0)
	require.ErrorIs(t, err, gbdt.ErrData)
	_, err = gbdt.NewLocal(x, d.Label, math.Inf(1))
	require.ErrorIs(t, err, gbdt.ErrRequest)
}
