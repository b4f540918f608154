package gbdt

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Split is one split the coordinator broadcasts: the rows of node Node whose bin of Feature
// satisfies the test (bin <= Bin for a numeric feature, bin == Bin for a categorical one) move
// to node Left, the others to node Right; rows missing a numeric feature go left when
// MissingLeft.
type Split struct {
	Node        int32 `json:"node"`
	Feature     int   `json:"feature"`
	Bin         int   `json:"bin"`
	MissingLeft bool  `json:"missing_left"`
	Left        int32 `json:"left"`
	Right       int32 `json:"right"`
}

// Gains closer than this, relative to the size of the terms they are computed from, count as
// equal and go to the first candidate in (feature, bin) order; a split must beat Gamma by as
// much. Summing the same histograms in another order (clients in another order, or pooled)
// changes a gain by rounding, about 1e-16 of those terms; without the margin two candidates
// that cut the rows identically (pdays <= -1 and previous <= 0 do on bank data) would be
// chosen by rounding, and a split of zero true gain could be made by it.
const gainTolerance = 1e-9

// Grower grows one tree level by level from summed histograms. It is a pure state machine:
// Pending names the nodes whose histograms it needs, Apply takes their sum and decides the
// splits of a whole level, Splits returns them for the clients, and when Done, Tree returns
// the tree. Only the smaller child of each split (by row count) is requested: the larger
// child's histogram is its parent's minus its sibling's (LightGBM's subtraction trick), so a
// Grower keeps the histograms of the nodes it has just split. A Grower is not safe for
// concurrent use.
type Grower struct {
	layout  *Binner
	p       Params
	allowed []bool // features this tree may split on (Colsample)

	nodes   []Node
	sumGrad []float64 // each node's sum of gradients, for its leaf value
	depth   []int
	hist    map[int32][]float64 // histograms of the current level, and of parents still needed

	pending  []int32    // nodes whose histograms the next Apply carries
	derive   [][3]int32 // {larger child, parent, smaller child}: histograms to subtract
	frontier []int32    // nodes the next Apply may split
	splits   []Split    // the splits decided by the last Apply
	done     bool
}

// NewGrower starts tree number tree (0-based; with Params.Seed it fixes the tree's feature
// sample) of a run with the given layout and parameters.
func NewGrower(layout *Binner, p Params, tree int) (*Grower, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if tree < 0 {
		return nil, fmt.Errorf("%w: tree %d", ErrState, tree)
	}
	g := &Grower{
		layout:   layout,
		p:        p,
		allowed:  sampleFeatures(len(layout.features), p.Colsample, p.Seed, tree),
		nodes:    []Node{leafNode()},
		sumGrad:  []float64{0},
		depth:    []int{0},
		hist:     map[int32][]float64{},
		pending:  []int32{0},
		frontier: []int32{0},
	}
	return g, nil
}

// sampleFeatures returns which of n features a tree may use: the round(fraction*n) (at least
// one) with the smallest hash of (seed, tree, feature), ties to the lower index.
func sampleFeatures(n int, fraction float64, seed uint64, tree int) []bool {
	allowed := make([]bool, n)
	k := max(1, int(math.Round(fraction*float64(n))))
	if k >= n {
		for i := range allowed {
			allowed[i] = true
		}
		return allowed
	}
	order := make([]int, n)
	key := make([]float64, n)
	for f := range n {
		order[f] = f
		key[f] = uniform(domainColsample, seed, uint64(tree), uint64(f))
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(key[a], key[b]) })
	for _, f := range order[:k] {
		allowed[f] = true
	}
	return allowed
}

// SampledFeatures reports which features this tree may split on (Colsample).
func (g *Grower) SampledFeatures() []bool { return slices.Clone(g.allowed) }

// Pending returns the nodes whose summed histograms the next Apply takes, in the order of
// the vector; nil when the tree is done.
func (g *Grower) Pending() []int32 {
	if g.done {
		return nil
	}
	return slices.Clone(g.pending)
}

// Splits returns the splits the last Apply decided, for the clients to apply before they
// build the next histograms.
func (g *Grower) Splits() []Split { return slices.Clone(g.splits) }

// Done reports whether the tree is complete.
func (g *Grower) Done() bool { return g.done }

// Tree returns the finished tree.
func (g *Grower) Tree() (Tree, error) {
	if !g.done {
		return Tree{}, fmt.Errorf("%w: the tree is not finished", ErrState)
	}
	return Tree{Nodes: slices.Clone(g.nodes)}, nil
}

// Apply takes the summed histograms of the Pending nodes (length
// layout.HistogramLen(len(Pending()))), derives the larger siblings by subtraction, and
// decides the best split of every node of the level. Nodes without a split worth making
// become leaves; when no node is left to grow, the tree is done and every leaf gets its value.
func (g *Grower) Apply(sum []float64) error {
	if err := g.receive(sum); err != nil {
		return err
	}
	g.decide()
	return nil
}

// receive stores the histograms of the pending nodes and derives their larger siblings'.
func (g *Grower) receive(sum []float64) error {
	if g.done {
		return fmt.Errorf("%w: the tree is finished", ErrState)
	}
	block := g.layout.HistogramLen(1)
	if want := block * len(g.pending); len(sum) != want {
		return fmt.Errorf("%w: histograms of length %d for %d nodes, want %d", ErrVector, len(sum), len(g.pending), want)
	}
	if i, ok := finite(sum); !ok {
		return fmt.Errorf("%w: histogram value %d is %v", ErrVector, i, sum[i])
	}
	for k, n := range g.pending {
		g.hist[n] = slices.Clone(sum[k*block : (k+1)*block])
	}
	for _, d := range g.derive {
		larger, parent, smaller := d[0], d[1], d[2]
		h := slices.Clone(g.hist[parent])
		for i, v := range g.hist[smaller] {
			h[i] -= v
		}
		g.hist[larger] = h
		delete(g.hist, parent)
	}
	if len(g.nodes) == 1 {
		// The root's totals: every row is in exactly one bin of feature 0. (A split
		// replaces them with its own feature's, see decide.)
		st := g.totals(g.hist[0], 0)
		if !st.finite() {
			return fmt.Errorf("%w: the root's sums overflow", ErrVector)
		}
		g.nodes[0].Cover, g.nodes[0].Count, g.sumGrad[0] = st.h, st.n, st.g
	}
	return nil
}

// decide splits the nodes of the level and names the histograms the next level needs.
func (g *Grower) decide() {
	g.splits, g.pending, g.derive = nil, nil, nil
	var next []int32
	for _, n := range g.frontier {
		c, ok := g.bestSplit(g.hist[n])
		if !ok {
			delete(g.hist, n)
			continue
		}
		left, right := int32(len(g.nodes)), int32(len(g.nodes)+1)
		node := &g.nodes[n]
		node.Left, node.Right, node.Feature, node.Bin, node.MissingLeft, node.Gain = left, right, c.feature, c.bin, c.missingLeft, c.gain
		// A split node's cover is its children's, so that TreeSHAP's branch weights add up
		// to 1 even when noise makes the features' totals differ.
		node.Cover, node.Count = c.left.h+c.right.h, c.left.n+c.right.n
		if f := g.layout.features[c.feature]; f.Kind == Numeric {
			node.Threshold = f.Edges[c.bin]
		}
		for _, st := range []stats{c.left, c.right} {
			child := leafNode()
			child.Cover, child.Count = st.h, st.n
			g.nodes = append(g.nodes, child)
			g.sumGrad = append(g.sumGrad, st.g)
			g.depth = append(g.depth, g.depth[n]+1)
		}
		g.splits = append(g.splits, Split{Node: n, Feature: c.feature, Bin: c.bin, MissingLeft: c.missingLeft, Left: left, Right: right})

		if g.depth[n]+1 >= g.p.MaxDepth || !(g.splittable(c.left) || g.splittable(c.right)) {
			delete(g.hist, n)
			continue
		}
		smaller, larger := left, right
		if c.right.n < c.left.n {
			smaller, larger = right, left
		}
		g.pending = append(g.pending, smaller)
		g.derive = append(g.derive, [3]int32{larger, n, smaller})
		next = append(next, left, right)
	}
	g.frontier = next
	if len(g.pending) == 0 {
		g.finish()
	}
}

// finish gives every leaf its value and drops the histograms.
func (g *Grower) finish() {
	for i := range g.nodes {
		n := &g.nodes[i]
		if n.Left < 0 {
			n.Value = g.p.LearningRate * leafWeight(g.sumGrad[i], n.Cover, g.p.Lambda)
		}
	}
	g.done, g.hist, g.frontier = true, nil, nil
}

// leafWeight is the Newton step -G/(H+lambda), or 0 where the denominator is not positive or
// the step not finite (sums an honest client cannot produce, but noise or a forged sum can).
func leafWeight(sumGrad, sumHess, lambda float64) float64 {
	w := -sumGrad / (sumHess + lambda)
	if !(sumHess+lambda > 0) || math.IsInf(w, 0) || math.IsNaN(w) {
		return 0
	}
	return w
}

// stats are the sums of gradient, hessian and rows of a set of rows.
type stats struct{ g, h, n float64 }

func (s stats) finite() bool {
	_, ok := finite([]float64{s.g, s.h, s.n})
	return ok
}

// totals sums feature f's bins of a node's histogram.
func (g *Grower) totals(hist []float64, f int) stats {
	var st stats
	lo := 3 * g.layout.offset[f]
	for j := lo; j < lo+3*g.layout.features[f].Bins(); j += 3 {
		st.g += hist[j]
		st.h += hist[j+1]
		st.n += hist[j+2]
	}
	return st
}

// splittable reports whether a node could have a split that respects MinChildWeight.
func (g *Grower) splittable(st stats) bool {
	return st.n >= 2 && st.h >= 2*g.p.MinChildWeight && st.h > 0
}

// candidate is a split under evaluation.
type candidate struct {
	feature, bin int
	missingLeft  bool
	gain, scale  float64 // scale: the sum of the terms the gain is computed from
	left, right  stats
}

// bestSplit returns the split of a node with the largest gain, over the allowed features in
// order and their bins in order, for a numeric feature with missing values first sending them
// right, then left (XGBoost's sparsity-aware split finding); gains within gainTolerance go to
// the earlier candidate. It reports false when no split respects MinChildWeight or beats
// Gamma.
func (g *Grower) bestSplit(hist []float64) (candidate, bool) {
	lambda, mcw := g.p.Lambda, g.p.MinChildWeight
	score := func(st stats) float64 { return st.g * st.g / (st.h + lambda) }
	var best candidate
	found := false
	consider := func(f, bin int, missingLeft bool, total, left stats) {
		right := stats{total.g - left.g, total.h - left.h, total.n - left.n}
		if !(left.n > 0 && right.n > 0 && left.h > 0 && right.h > 0 && left.h >= mcw && right.h >= mcw) {
			return
		}
		sl, sr, sp := score(left), score(right), score(total)
		c := candidate{feature: f, bin: bin, missingLeft: missingLeft, gain: sl + sr - sp, scale: sl + sr + sp, left: left, right: right}
		if !left.finite() || !right.finite() || math.IsNaN(c.gain) || math.IsInf(c.scale, 0) || math.IsNaN(c.scale) {
			return // sums that overflow, or a node with H+lambda <= 0: no split to trust
		}
		if !found || c.gain > best.gain+gainTolerance*max(c.scale, best.scale) {
			best, found = c, true
		}
	}
	for f, ft := range g.layout.features {
		if !g.allowed[f] {
			continue
		}
		total := g.totals(hist, f)
		lo := 3 * g.layout.offset[f]
		if ft.Kind == Categorical {
			for b := range ft.Bins() {
				j := lo + 3*b
				consider(f, b, false, total, stats{hist[j], hist[j+1], hist[j+2]})
			}
			continue
		}
		j := lo + 3*ft.missingBin()
		missing := stats{hist[j], hist[j+1], hist[j+2]}
		var cum stats
		for b := range len(ft.Edges) {
			j := lo + 3*b
			cum.g, cum.h, cum.n = cum.g+hist[j], cum.h+hist[j+1], cum.n+hist[j+2]
			consider(f, b, false, total, cum)
			if missing.n != 0 {
				consider(f, b, true, total, stats{cum.g + missing.g, cum.h + missing.h, cum.n + missing.n})
			}
		}
	}
	if !found || !(best.gain-g.p.Gamma > gainTolerance*best.scale) {
		return candidate{}, false
	}
	return best, true
}
