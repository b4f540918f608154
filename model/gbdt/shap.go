package gbdt

import (
	"fmt"
	"math"
	"slices"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model"
)

// Explanation is a row's exact path-dependent TreeSHAP values (Lundberg, Erion and Lee 2018,
// "Consistent Individualized Feature Attribution for Tree Ensembles", Algorithm 2):
// Expected plus the sum of Values is the row's margin. Expected is the margin of a row whose
// features are all unknown: BaseScore plus each tree's leaf values averaged by cover, the
// model's expectation over its training rows; Values are in Model.Features order. It is
// model.Explanation, what every model kind explains with.
type Explanation = model.Explanation

// ExpectedValue returns the margin of a row about which nothing is known: in every tree, a
// split sends it down both branches weighted by their covers.
func (m *Model) ExpectedValue() float64 {
	e := m.BaseScore
	for t := range m.Trees {
		e += expected(&m.Trees[t], 0)
	}
	return e
}

// expected is node j's cover-weighted mean leaf value, with the branch weights TreeSHAP uses
// (child cover over parent cover), so that the values of a row add up to its margin minus
// it even when rounding makes the children's covers differ from their parent's.
func expected(t *Tree, j int32) float64 {
	n := &t.Nodes[j]
	if n.IsLeaf() {
		return n.Value
	}
	l, r := &t.Nodes[n.Left], &t.Nodes[n.Right]
	return l.Cover/n.Cover*expected(t, n.Left) + r.Cover/n.Cover*expected(t, n.Right)
}

// Explain returns the TreeSHAP values of row i of d; d must pass Check.
func (m *Model) Explain(d *dataset.Dataset, i int) Explanation {
	s := newShap(m, false)
	s.scorer.load(d, i)
	return s.explain()
}

// ExplainAll explains every row of d, after checking d against the model. Rows that take the
// same side at every split of a tree get the same values from it, so it computes each tree's
// values once per such pattern (up to maxCachedPatterns per tree); the results are those of
// Explain to the bit.
func (m *Model) ExplainAll(d *dataset.Dataset) ([]Explanation, error) {
	if err := m.Check(d); err != nil {
		return nil, err
	}
	s := newShap(m, true)
	out := make([]Explanation, d.Len())
	for i := range out {
		s.scorer.load(d, i)
		out[i] = s.explain()
	}
	return out, nil
}

// maxCachedPatterns bounds the memory ExplainAll spends per tree.
const maxCachedPatterns = 1 << 14

// pathElem is one feature on the unique path from the root to a node: the fraction of
// "feature unknown" paths (zero) and of "feature known" paths (one) that flow through, and
// the weight of the path's subsets of each size.
type pathElem struct {
	feature      int
	zero, one, w float64
}

// shap holds the buffers of explanations by one model.
type shap struct {
	*scorer
	expected float64
	tree     []float64  // the current tree's values, by feature
	scratch  []float64  // the current tree's values, by s.used[t], when not caching
	path     []pathElem // stack of the unique paths of the recursion, one segment per depth
	used     [][]int    // per tree, the features it splits on, in order
	cache    []map[string][]float64
	key      []byte
}

func newShap(m *Model, cache bool) *shap {
	s := &shap{
		scorer:   m.scorer(),
		expected: m.ExpectedValue(),
		tree:     make([]float64, len(m.Features)),
		scratch:  make([]float64, len(m.Features)),
		// A node at depth d copies a path of at most d+1 elements; the segments along
		// one recursion add up to (D+1)(D+2)/2 for depth D <= MaxDepthCap.
		path: make([]pathElem, (MaxDepthCap+2)*(MaxDepthCap+3)/2),
		used: make([][]int, len(m.Trees)),
	}
	for t, tr := range m.Trees {
		seen := make([]bool, len(m.Features))
		for _, n := range tr.Nodes {
			if !n.IsLeaf() {
				seen[n.Feature] = true
			}
		}
		for f, ok := range seen {
			if ok {
				s.used[t] = append(s.used[t], f)
			}
		}
	}
	if cache {
		s.cache = make([]map[string][]float64, len(m.Trees))
	}
	return s
}

// explain explains the loaded row.
func (s *shap) explain() Explanation {
	phi := make([]float64, len(s.m.Features))
	for t := range s.m.Trees {
		for k, v := range s.treeValues(t) {
			phi[s.used[t][k]] += v
		}
	}
	return Explanation{Expected: s.expected, Values: phi, Margin: s.margin()}
}

// treeValues returns tree t's values of the loaded row for the features in s.used[t].
func (s *shap) treeValues(t int) []float64 {
	tr := &s.m.Trees[t]
	var key []byte
	if s.cache != nil {
		// The row's side at every split, one bit each.
		key = s.key[:0]
		bit := 0
		for j := range tr.Nodes {
			if n := &tr.Nodes[j]; !n.IsLeaf() {
				if bit%8 == 0 {
					key = append(key, 0)
				}
				if s.goesLeft(n) {
					key[len(key)-1] |= 1 << (bit % 8)
				}
				bit++
			}
		}
		s.key = key
		if v, ok := s.cache[t][string(key)]; ok {
			return v
		}
	}
	for _, f := range s.used[t] {
		s.tree[f] = 0
	}
	s.recurse(tr, 0, s.path[:0], 0, 1, 1, -1)
	v := s.scratch[:len(s.used[t])]
	if s.cache != nil {
		v = make([]float64, len(s.used[t]))
	}
	for k, f := range s.used[t] {
		v[k] = s.tree[f]
	}
	if s.cache != nil && len(s.cache[t]) < maxCachedPatterns {
		if s.cache[t] == nil {
			s.cache[t] = map[string][]float64{}
		}
		s.cache[t][string(key)] = v
	}
	return v
}

// recurse is Algorithm 2's RECURSE at node j: parent is the unique path so far, and
// (zero, one, feature) the fraction entering j by the parent's split on feature. top is
// where j's own segment of s.path starts.
func (s *shap) recurse(t *Tree, j int32, parent []pathElem, top int, zero, one float64, feature int) {
	u := len(parent)
	path := s.path[top : top+u+1]
	copy(path, parent)
	extend(path, zero, one, feature)
	n := &t.Nodes[j]
	if n.IsLeaf() {
		s.leaf(path, n.Value)
		return
	}
	hot, cold := n.Right, n.Left
	if s.goesLeft(n) {
		hot, cold = n.Left, n.Right
	}
	inZero, inOne := 1.0, 1.0
	for k := 1; k <= u; k++ {
		if path[k].feature == n.Feature {
			// The feature was split on above: undo that split and redo it here.
			inZero, inOne = path[k].zero, path[k].one
			unwind(path, k)
			path = path[:u]
			break
		}
	}
	next := top + u + 1
	s.recurse(t, hot, path, next, inZero*t.Nodes[hot].Cover/n.Cover, inOne, n.Feature)
	s.recurse(t, cold, path, next, inZero*t.Nodes[cold].Cover/n.Cover, 0, n.Feature)
}

// extend is Algorithm 2's EXTEND: it adds the last element of path (whose room is there) and
// updates the subset-size weights.
func extend(path []pathElem, zero, one float64, feature int) {
	u := len(path) - 1
	path[u] = pathElem{feature: feature, zero: zero, one: one}
	if u == 0 {
		path[u].w = 1
	}
	for i := u - 1; i >= 0; i-- {
		path[i+1].w += one * path[i].w * float64(i+1) / float64(u+1)
		path[i].w = zero * path[i].w * float64(u-i) / float64(u+1)
	}
}

// unwind is Algorithm 2's UNWIND: it removes element k from path, whose last element then
// is garbage (the caller shortens the slice).
func unwind(path []pathElem, k int) {
	u := len(path) - 1
	one, zero := path[k].one, path[k].zero
	next := path[u].w
	n := float64(u + 1)
	for i := u - 1; i >= 0; i-- {
		if one != 0 {
			tmp := path[i].w
			path[i].w = next * n / (float64(i+1) * one)
			next = tmp - path[i].w*zero*float64(u-i)/n
		} else {
			path[i].w = path[i].w * n / (zero * float64(u-i))
		}
	}
	for i := k; i < u; i++ {
		path[i].feature, path[i].zero, path[i].one = path[i+1].feature, path[i+1].zero, path[i+1].one
	}
}

// leaf adds a leaf's part to the tree's values: for every feature on the path, the total
// weight of the path without it (Algorithm 2's sum of UNWIND's weights, without modifying the
// path) times (one - zero) times the leaf value. It is where TreeSHAP spends its time (depth²
// per leaf), so the divisions are hoisted out of the inner loop or looked up.
func (s *shap) leaf(p []pathElem, value float64) {
	u := len(p) - 1
	n := float64(u + 1)
	for k := 1; k <= u; k++ {
		one, zero := p[k].one, p[k].zero
		next, total := p[u].w, 0.0
		if one != 0 {
			nOverOne, zeroOverN := n/one, zero/n
			for i := u - 1; i >= 0; i-- {
				tmp := next * nOverOne * reciprocal[i+1]
				total += tmp
				next = p[i].w - tmp*zeroOverN*float64(u-i)
			}
		} else {
			nOverZero := n / zero
			for i := u - 1; i >= 0; i-- {
				total += p[i].w * nOverZero * reciprocal[u-i]
			}
		}
		s.tree[p[k].feature] += total * (one - zero) * value
	}
}

// reciprocal[i] is 1/i for the path lengths a tree of depth MaxDepthCap can have.
var reciprocal = func() (r [MaxDepthCap + 3]float64) {
	for i := 1; i < len(r); i++ {
		r[i] = 1 / float64(i)
	}
	return r
}()

// GainImportance returns each feature's total split gain over all trees, in Features order.
func (m *Model) GainImportance() []float64 {
	out := make([]float64, len(m.Features))
	for _, t := range m.Trees {
		for _, n := range t.Nodes {
			if !n.IsLeaf() {
				out[n.Feature] += n.Gain
			}
		}
	}
	return out
}

// MaxAbsSHAP returns, per feature in Features order, the largest |SHAP value| any row can
// have: the sum, over the trees that split on the feature, of the spread of the tree's leaf
// values (largest minus smallest). A tree's part of a value is a weighted mean, with weights
// that add up to 1, of differences between two of its conditional expectations, and each of
// those is a cover-weighted mean of its leaf values; a tree that never splits on a feature
// gives it nothing. It bounds what AbsSHAPSums can hold: at most rows times this per feature.
func (m *Model) MaxAbsSHAP() []float64 {
	out := make([]float64, len(m.Features))
	for _, t := range m.Trees {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, n := range t.Nodes {
			if n.IsLeaf() {
				lo, hi = min(lo, n.Value), max(hi, n.Value)
			}
		}
		seen := make([]bool, len(m.Features))
		for _, n := range t.Nodes {
			if !n.IsLeaf() && !seen[n.Feature] {
				seen[n.Feature] = true
				out[n.Feature] += hi - lo
			}
		}
	}
	return out
}

// AbsSHAPLen returns the length of an AbsSHAPSums vector for the given number of features.
func AbsSHAPLen(features int) int { return 1 + features }

// AbsSHAPSums returns a client's [rows, sum over its rows of |SHAP value| of each feature],
// the sums behind MeanAbsSHAP, so that global SHAP importance is computed like every other
// federated quantity.
func (m *Model) AbsSHAPSums(d *dataset.Dataset) ([]float64, error) {
	return m.AbsSHAPSumsWith(d, nil)
}

// SHAPMemo remembers the TreeSHAP values of one dataset's rows under the trees of the last
// model it served, so that the next round of boosting (the same features, the same trees and
// new ones after them) costs only its new trees: a client evaluating a 100-tree run would
// otherwise explain 1 + 2 + ... + 100 trees per row. The values are those of ExplainAll to the
// bit, since a row's values are added up tree by tree in the same order. The zero SHAPMemo is
// empty; one memo serves one dataset.
type SHAPMemo struct {
	// last is the model last served (its features and trees shared with it: a model does not
	// change once made), and phi its values of the dataset's rows.
	last Model
	phi  [][]float64
}

// AbsSHAPSumsWith is AbsSHAPSums through memo (nil for none): it reuses memo's values when m
// extends the model memo last served (Model.Extends), starts over otherwise, and leaves memo
// holding m's values of d.
func (m *Model) AbsSHAPSumsWith(d *dataset.Dataset, memo *SHAPMemo) ([]float64, error) {
	if err := m.Check(d); err != nil {
		return nil, err
	}
	if memo == nil {
		memo = &SHAPMemo{}
	}
	from := 0
	if len(memo.phi) == d.Len() && m.Extends(&memo.last) {
		from = len(memo.last.Trees)
	} else {
		memo.phi = make([][]float64, d.Len())
		for i := range memo.phi {
			memo.phi[i] = make([]float64, len(m.Features))
		}
	}
	s := newShap(m, true)
	out := make([]float64, AbsSHAPLen(len(m.Features)))
	out[0] = float64(d.Len())
	for i, phi := range memo.phi {
		s.scorer.load(d, i)
		for t := from; t < len(m.Trees); t++ {
			for k, v := range s.treeValues(t) {
				phi[s.used[t][k]] += v
			}
		}
		for f, v := range phi {
			out[1+f] += math.Abs(v)
		}
	}
	memo.last = Model{BaseScore: m.BaseScore, Features: m.Features, Trees: slices.Clone(m.Trees)}
	return out, nil
}

// MeanAbsSHAP returns each feature's mean |SHAP value| from summed AbsSHAPSums.
func MeanAbsSHAP(sum []float64, features int) ([]float64, error) {
	if features < 0 || len(sum) != AbsSHAPLen(features) {
		return nil, fmt.Errorf("%w: |SHAP| sums of length %d, want %d", ErrVector, len(sum), AbsSHAPLen(max(features, 0)))
	}
	if i, ok := finite(sum); !ok {
		return nil, fmt.Errorf("%w: |SHAP| sum %d is %v", ErrVector, i, sum[i])
	}
	if !(sum[0] > 0) {
		return nil, fmt.Errorf("%w: no rows (count %v)", ErrVector, sum[0])
	}
	out := make([]float64, features)
	for f := range out {
		out[f] = sum[1+f] / sum[0]
	}
	return out, nil
}
