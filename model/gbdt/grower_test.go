package gbdt_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
)

// grow drives one tree between a Grower and the clients, as a coordinator would.
func grow(t *testing.T, b *gbdt.Binner, p gbdt.Params, tree int, clients ...*gbdt.Local) gbdt.Tree {
	t.Helper()
	g, err := gbdt.NewGrower(b, p, tree)
	require.NoError(t, err)
	for k, c := range clients {
		c.StartTree(tree, p.Subsample, gbdt.ClientSeed(p.Seed, k))
	}
	for !g.Done() {
		nodes := g.Pending()
		sum := make([]float64, b.HistogramLen(len(nodes)))
		for _, c := range clients {
			h, err := c.Histograms(nodes)
			require.NoError(t, err)
			for i, v := range h {
				sum[i] += v
			}
		}
		require.NoError(t, g.Apply(sum))
		for _, c := range clients {
			require.NoError(t, c.ApplySplits(g.Splits()))
		}
	}
	tr, err := g.Tree()
	require.NoError(t, err)
	for _, c := range clients {
		require.NoError(t, c.FinishTree(tr))
	}
	return tr
}

// rowGradients returns the log-loss gradient and hessian of every row at margin m.
func rowGradients(d *dataset.Dataset, m float64) (g, h []float64) {
	p := 1 / (1 + math.Exp(-m))
	for _, y := range d.Label {
		g = append(g, p-y)
		h = append(h, p*(1-p))
	}
	return g, h
}

func TestGrowerFindsTheBestSplit(t *testing.T) {
	d := gbdt.ToyDataset(t, 5, 500)
	b, x := toyBinned(t, d, 8)
	base := 0.3
	local, err := gbdt.NewLocal(x, d.Label, base)
	require.NoError(t, err)
	p := gbdt.DefaultParams()
	p.MaxDepth = 1
	tree := grow(t, b, p, 0, local)
	require.Len(t, tree.Nodes, 3)
	root := tree.Nodes[0]

	// Every candidate's gain, straight from the rows.
	g, h := rowGradients(d, base)
	score := func(G, H float64) float64 { return G * G / (H + p.Lambda) }
	var G, H float64
	for i := range g {
		G, H = G+g[i], H+h[i]
	}
	bestGain, bestF, bestBin := math.Inf(-1), -1, -1
	var bestLeft [2]float64
	for f, ft := range b.Features() {
		for bin := range ft.Bins() {
			if ft.Kind == gbdt.Numeric && bin == ft.Bins()-1 {
				continue
			}
			var GL, HL float64
			for i := range g {
				xb := int(x.Row(i)[f])
				if (ft.Kind == gbdt.Numeric && xb <= bin) || (ft.Kind == gbdt.Categorical && xb == bin) {
					GL, HL = GL+g[i], HL+h[i]
				}
			}
			if HL < p.MinChildWeight || H-HL < p.MinChildWeight {
				continue
			}
			if gain := score(GL, HL) + score(G-GL, H-HL) - score(G, H); gain > bestGain+1e-9 {
				bestGain, bestF, bestBin, bestLeft = gain, f, bin, [2]float64{GL, HL}
			}
		}
	}
	assert.Equal(t, bestF, root.Feature)
	assert.Equal(t, bestBin, root.Bin)
	assert.InDelta(t, bestGain, root.Gain, 1e-9)
	assert.InDelta(t, H, root.Cover, 1e-9)
	assert.Equal(t, 500.0, root.Count)
	left, right := tree.Nodes[root.Left], tree.Nodes[root.Right]
	assert.InDelta(t, -p.LearningRate*bestLeft[0]/(bestLeft[1]+p.Lambda), left.Value, 1e-12)
	assert.InDelta(t, -p.LearningRate*(G-bestLeft[0])/(H-bestLeft[1]+p.Lambda), right.Value, 1e-12)
	assert.InDelta(t, bestLeft[1], left.Cover, 1e-9)
	assert.Equal(t, 500.0, left.Count+right.Count)
	if ft := b.Features()[root.Feature]; ft.Kind == gbdt.Numeric {
		assert.Equal(t, ft.Edges[root.Bin], root.Threshold)
	}
}

func TestGrowerConstraints(t *testing.T) {
	d := gbdt.ToyDataset(t, 6, 400)
	b, x := toyBinned(t, d, 16)
	tests := []struct {
		name   string
		mutate func(*gbdt.Params)
		check  func(*testing.T, gbdt.Tree)
	}{
		{"gamma above every gain leaves a stump", func(p *gbdt.Params) { p.Gamma = 1e6 }, func(t *testing.T, tr gbdt.Tree) {
			require.Len(t, tr.Nodes, 1)
		}},
		{"min_child_weight above half the hessian leaves a stump", func(p *gbdt.Params) { p.MinChildWeight = 60 }, func(t *testing.T, tr gbdt.Tree) {
			require.Len(t, tr.Nodes, 1) // 400 rows * p(1-p) < 100
		}},
		{"every child respects min_child_weight", func(p *gbdt.Params) { p.MinChildWeight = 5 }, func(t *testing.T, tr gbdt.Tree) {
			require.Greater(t, len(tr.Nodes), 1)
			for _, n := range tr.Nodes {
				assert.GreaterOrEqual(t, n.Cover, 5.0)
			}
		}},
		{"every split beats gamma", func(p *gbdt.Params) { p.Gamma = 2 }, func(t *testing.T, tr gbdt.Tree) {
			for _, n := range tr.Nodes {
				if !n.IsLeaf() {
					assert.Greater(t, n.Gain, 2.0)
				}
			}
		}},
		{"depth is bounded", func(p *gbdt.Params) { p.MaxDepth = 3; p.MinChildWeight = 0; p.Lambda = 0 }, func(t *testing.T, tr gbdt.Tree) {
			assert.LessOrEqual(t, len(tr.Nodes), 15)
			assert.Greater(t, len(tr.Nodes), 7)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := gbdt.DefaultParams()
			tt.mutate(&p)
			local, err := gbdt.NewLocal(x, d.Label, -0.5)
			require.NoError(t, err)
			tt.check(t, grow(t, b, p, 0, local))
		})
	}
}

func TestColsampleSplitsOnSampledFeaturesOnly(t *testing.T) {
	d := gbdt.ToyDataset(t, 6, 400)
	b, x := toyBinned(t, d, 16)
	p := gbdt.DefaultParams()
	p.Colsample, p.Seed = 0.4, 99
	seen := map[[5]bool]bool{}
	for tree := range 8 {
		g, err := gbdt.NewGrower(b, p, tree)
		require.NoError(t, err)
		allowed := g.SampledFeatures()
		n := 0
		for _, a := range allowed {
			if a {
				n++
			}
		}
		require.Equal(t, 2, n, "round(0.4 * 5) features")
		seen[[5]bool(allowed)] = true
		again, err := gbdt.NewGrower(b, p, tree)
		require.NoError(t, err)
		require.Equal(t, allowed, again.SampledFeatures(), "the sample is a function of seed and tree")

		local, err := gbdt.NewLocal(x, d.Label, 0)
		require.NoError(t, err)
		for _, node := range grow(t, b, p, tree, local).Nodes {
			if !node.IsLeaf() {
				assert.True(t, allowed[node.Feature])
			}
		}
	}
	assert.Greater(t, len(seen), 1, "trees sample different features")
}

// copiesData has three copies of one numeric column and a yes/no flag; with flagOnly the
// numeric columns are constant and only the flag carries the label.
func copiesData(t *testing.T, flagOnly bool) *dataset.Dataset {
	schema := gbdt.ToySchema(t)
	b := dataset.NewBuilder(schema, "copies", 200)
	for i := range 200 {
		v := float64(i % 7)
		if flagOnly {
			v = 1
		}
		flag := int32(i % 2)
		y := 0.0
		if (flagOnly && flag == 1 && i%3 != 0) || (!flagOnly && v >= 4 && i%3 != 0) {
			y = 1
		}
		b.Append([]float64{v, v, v}, []int32{0, flag}, nil, y, 0)
	}
	return b.Finish()
}

func TestGrowerBreaksTiesByFeatureThenBin(t *testing.T) {
	tests := []struct {
		name        string
		flagOnly    bool
		wantFeature int
		wantBin     int
	}{
		// a, b and c are copies: a wins. The cut between 3 and 4 is bin 3.
		{"identical numeric features", false, 0, 3},
		// flag == yes and flag == no cut the rows the same way: the first category wins.
		{"the two sides of a yes/no feature", true, 4, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := copiesData(t, tt.flagOnly)
			_, x := toyBinned(t, d, 16)
			local, err := gbdt.NewLocal(x, d.Label, 0)
			require.NoError(t, err)
			p := gbdt.DefaultParams()
			p.MaxDepth = 1
			root := grow(t, x.Layout(), p, 0, local).Nodes[0]
			assert.Equal(t, tt.wantFeature, root.Feature)
			assert.Equal(t, tt.wantBin, root.Bin)
		})
	}
}

func TestGrowerRequestsOnlyTheSmallerChild(t *testing.T) {
	d := gbdt.ToyDataset(t, 7, 1000)
	b, x := toyBinned(t, d, 32)
	local, err := gbdt.NewLocal(x, d.Label, 0)
	require.NoError(t, err)
	p := gbdt.DefaultParams()
	g, err := gbdt.NewGrower(b, p, 0)
	require.NoError(t, err)
	local.StartTree(0, 1, 0)
	for level := 0; !g.Done(); level++ {
		nodes := g.Pending()
		if level == 0 {
			assert.Equal(t, []int32{0}, nodes)
		}
		h, err := local.Histograms(nodes)
		require.NoError(t, err)
		require.NoError(t, g.Apply(h))
		if g.Done() {
			break
		}
		pending := g.Pending()
		require.NoError(t, local.ApplySplits(g.Splits()))
		// One node per split, the child with fewer rows.
		var want []int32
		for _, s := range g.Splits() {
			counts := map[int32]int{}
			for _, n := range nodeCounts(t, local, b, s.Left, s.Right) {
				counts[n.node] = n.count
			}
			if counts[s.Right] < counts[s.Left] {
				want = append(want, s.Right)
			} else {
				want = append(want, s.Left)
			}
		}
		assert.Equal(t, want, pending, "level %d", level)
	}
}

type nodeCount struct {
	node  int32
	count int
}

// nodeCounts reads the rows per node off a client's histograms of those nodes.
func nodeCounts(t *testing.T, l *gbdt.Local, b *gbdt.Binner, nodes ...int32) []nodeCount {
	h, err := l.Histograms(nodes)
	require.NoError(t, err)
	var out []nodeCount
	for k, n := range nodes {
		c := 0.0
		for bin := range b.Features()[0].Bins() {
			c += h[b.Index(k, 0, bin)+2]
		}
		out = append(out, nodeCount{n, int(c)})
	}
	return out
}

func TestGrowerApplyRejects(t *testing.T) {
	d := gbdt.ToyDataset(t, 8, 50)
	b, _ := toyBinned(t, d, 8)
	newGrower := func() *gbdt.Grower {
		g, err := gbdt.NewGrower(b, gbdt.DefaultParams(), 0)
		require.NoError(t, err)
		return g
	}
	good := make([]float64, b.HistogramLen(1))
	nan := make([]float64, b.HistogramLen(1))
	nan[5] = math.NaN()
	tests := []struct {
		name string
		sum  []float64
		want error
	}{
		{"short", good[:3], gbdt.ErrVector},
		{"for two nodes", make([]float64, b.HistogramLen(2)), gbdt.ErrVector},
		{"NaN", nan, gbdt.ErrVector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, newGrower().Apply(tt.sum), tt.want)
		})
	}
	t.Run("out of turn", func(t *testing.T) {
		g := newGrower()
		_, err := g.Tree()
		require.ErrorIs(t, err, gbdt.ErrState)
		require.NoError(t, g.Apply(good)) // an empty root: a leaf of value 0
		require.True(t, g.Done())
		require.ErrorIs(t, g.Apply(good), gbdt.ErrState)
		tr, err := g.Tree()
		require.NoError(t, err)
		assert.Equal(t, []gbdt.Node{{Left: -1, Right: -1, Feature: -1}}, tr.Nodes)
	})
	t.Run("invalid params", func(t *testing.T) {
		_, err := gbdt.NewGrower(b, gbdt.Params{}, 0)
		require.ErrorIs(t, err, gbdt.ErrInvalidParams)
	})
}
