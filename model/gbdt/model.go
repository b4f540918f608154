package gbdt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/fedprop/fedprop/dataset"
)

// ModelFormat names the JSON layout of a Model; DecodeModel reads no other.
const ModelFormat = "fedprop-gbdt/1"

// MaxModelBytes bounds the JSON a model is decoded from; a thousand trees of depth 8 take
// about 70 MB.
const MaxModelBytes = 256 << 20

// Model is a boosted tree ensemble: a row's margin (log-odds) is BaseScore plus the value of
// the leaf it reaches in every tree. It marshals to JSON with encoding/json; read one back
// with DecodeModel, which validates it.
type Model struct {
	Format string `json:"format"`
	// Params are the parameters the model was fitted with, for its model card.
	Params Params `json:"params"`
	// BaseScore is the margin before any tree: the log-odds of the training positive rate.
	BaseScore float64 `json:"base_score"`
	// Features are the model's features: numeric ones first, then categorical ones, each in
	// schema order. A node's Feature indexes them.
	Features []Feature `json:"features"`
	Trees    []Tree    `json:"trees"`
}

// Digest identifies what scoring depends on (the base score, the features with their bins,
// the trees), not the format or the parameters: the hex SHA-256 of their JSON. A tree step
// after a tree's first level names the model by it instead of carrying it again.
func (m *Model) Digest() string {
	var d Digester
	return d.Of(m)
}

// Extends reports whether m is prev with zero or more trees appended: the same base score and
// features, and prev's trees first. That is the next round of boosting, from which work kept
// per tree (a client's margins, a Digester, a SHAPMemo) carries on; anything else starts over.
// Values compare as numbers (0 and -0 alike), which score alike.
func (m *Model) Extends(prev *Model) bool {
	return prev != nil && m.BaseScore == prev.BaseScore && len(prev.Trees) <= len(m.Trees) &&
		slices.EqualFunc(prev.Features, m.Features, sameFeature) &&
		slices.EqualFunc(prev.Trees, m.Trees[:len(prev.Trees)], func(a, b Tree) bool { return slices.Equal(a.Nodes, b.Nodes) })
}

func sameFeature(a, b Feature) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.Mean == b.Mean && a.Std == b.Std &&
		slices.Equal(a.Edges, b.Edges) && slices.Equal(a.Levels, b.Levels)
}

// Tree is one tree, its nodes in the order the Grower made them: the root first, and every
// node's children after it.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// Node is one tree node: a split when Left >= 0, a leaf otherwise.
type Node struct {
	// Left and Right index the children in Tree.Nodes; both are -1 for a leaf.
	Left  int32 `json:"left"`
	Right int32 `json:"right"`
	// Feature indexes Model.Features; -1 for a leaf.
	Feature int `json:"feature"`
	// Bin is the split's bin: a numeric feature's rows in bins <= Bin go left; for a
	// categorical feature Bin is the category index that goes left (len(Levels) is the
	// unknown or "other" category), every other category goes right.
	Bin int `json:"bin"`
	// Threshold is a numeric split's cut point in standardised space, Edges[Bin]: rows with
	// (x-Mean)/Std <= Threshold go left. See Model.RawThreshold for the raw scale.
	Threshold float64 `json:"threshold"`
	// MissingLeft sends rows missing a numeric split's feature (NaN) left; they go right
	// otherwise. The split learnt the side from the training rows missing it.
	MissingLeft bool `json:"missing_left"`
	// Value is a leaf's contribution to the margin, learning rate included.
	Value float64 `json:"value"`
	// Gain is a split's gain (see Params.Gamma).
	Gain float64 `json:"gain"`
	// Cover is the sum of the hessians of the training rows that reached the node (in the
	// tree's subsample); TreeSHAP weighs the branches by it.
	Cover float64 `json:"cover"`
	// Count is the number of those rows.
	Count float64 `json:"count"`
}

// leafNode returns a node without children.
func leafNode() Node { return Node{Left: -1, Right: -1, Feature: -1} }

// IsLeaf reports whether the node is a leaf.
func (n Node) IsLeaf() bool { return n.Left < 0 }

// RawThreshold returns a numeric split's threshold on the raw scale of its feature, for
// showing and exporting (see Feature.Raw), and false for a leaf or a categorical split.
func (m *Model) RawThreshold(n Node) (float64, bool) {
	if n.IsLeaf() || m.Features[n.Feature].Kind != Numeric {
		return 0, false
	}
	return m.Features[n.Feature].Raw(n.Threshold), true
}

// DecodeModel reads a model from JSON and validates it (see Validate). Unknown fields, trailing
// data and documents over MaxModelBytes are errors.
func DecodeModel(data []byte) (*Model, error) {
	if len(data) > MaxModelBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrModel, len(data), MaxModelBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Model
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModel, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the model", ErrModel)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks everything scoring and explaining rely on: the format, valid parameters,
// a finite base score, valid features (see NewBinner), at most MaxTrees trees, and trees that
// are trees: node 0 is the root, every other node has exactly one parent that comes before
// it, depth at most MaxDepthCap, splits on existing features and bins with a numeric
// threshold equal to its edge, finite values, and positive covers in a tree with a split
// (TreeSHAP divides by them). The error wraps ErrModel.
func (m *Model) Validate() error {
	if m.Format != ModelFormat {
		return fmt.Errorf("%w: format %q, want %q", ErrModel, m.Format, ModelFormat)
	}
	if err := m.Params.Validate(); err != nil {
		return fmt.Errorf("%w: params: %w", ErrModel, err)
	}
	if math.IsNaN(m.BaseScore) || math.IsInf(m.BaseScore, 0) {
		return fmt.Errorf("%w: base score %v", ErrModel, m.BaseScore)
	}
	if err := checkFeatures(m.Features); err != nil {
		return fmt.Errorf("%w: %w", ErrModel, err)
	}
	if len(m.Trees) > MaxTrees {
		return fmt.Errorf("%w: %d trees, at most %d", ErrModel, len(m.Trees), MaxTrees)
	}
	for i, t := range m.Trees {
		if err := checkTree(t, m.Features); err != nil {
			return fmt.Errorf("%w: tree %d: %w", ErrModel, i, err)
		}
	}
	return nil
}

// checkTree validates one tree against features (see Model.Validate).
func checkTree(t Tree, fs []Feature) error {
	n := len(t.Nodes)
	if n == 0 || n >= maxNodes {
		return fmt.Errorf("%d nodes, want 1 to %d", n, maxNodes-1)
	}
	depth := make([]int, n)
	parents := make([]int, n)
	for i, nd := range t.Nodes {
		for _, v := range []float64{nd.Threshold, nd.Value, nd.Gain, nd.Cover, nd.Count} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("node %d has a non-finite value %v", i, v)
			}
		}
		if n > 1 && !(nd.Cover > 0) {
			return fmt.Errorf("node %d has cover %v; a tree with a split needs covers > 0", i, nd.Cover)
		}
		if i > 0 && parents[i] != 1 {
			return fmt.Errorf("node %d has %d parents, want 1", i, parents[i])
		}
		if nd.IsLeaf() {
			if nd.Left != -1 || nd.Right != -1 || nd.Feature != -1 || nd.Bin != 0 || nd.Threshold != 0 || nd.MissingLeft {
				return fmt.Errorf("leaf %d must have left = right = feature = -1, bin = threshold = 0 and no missing side", i)
			}
			continue
		}
		if int(nd.Left) <= i || int(nd.Right) <= i || nd.Left == nd.Right || int(nd.Left) >= n || int(nd.Right) >= n {
			return fmt.Errorf("node %d has children %d and %d; want two distinct nodes after it", i, nd.Left, nd.Right)
		}
		for _, c := range []int32{nd.Left, nd.Right} {
			parents[c]++
			depth[c] = depth[i] + 1
			if depth[c] > MaxDepthCap {
				return fmt.Errorf("node %d is at depth %d, more than %d", c, depth[c], MaxDepthCap)
			}
		}
		if nd.Feature < 0 || nd.Feature >= len(fs) {
			return fmt.Errorf("node %d splits on feature %d of %d", i, nd.Feature, len(fs))
		}
		f := fs[nd.Feature]
		switch {
		case !validSplitBin(f, nd.Bin, nd.MissingLeft):
			return fmt.Errorf("node %d splits %q at bin %d (missing left: %v): no such split", i, f.Name, nd.Bin, nd.MissingLeft)
		case f.Kind == Numeric && nd.Threshold != f.Edges[nd.Bin]:
			return fmt.Errorf("node %d splits %q at threshold %v, but bin %d ends at %v", i, f.Name, nd.Threshold, nd.Bin, f.Edges[nd.Bin])
		case f.Kind == Categorical && nd.Threshold != 0:
			return fmt.Errorf("node %d splits categorical %q with threshold %v", i, f.Name, nd.Threshold)
		}
	}
	return nil
}

// Check reports whether d's columns are the model's features (names, order and
// vocabularies).
func (m *Model) Check(d *dataset.Dataset) error {
	return newBinner(m.Features).Check(d)
}

// scorer evaluates a validated model on rows of one dataset. It holds buffers, so it is not
// safe for concurrent use.
type scorer struct {
	m       *Model
	kinds   []Kind
	numeric int
	x       []float64 // the row: standardised numeric values, then category bins
}

func (m *Model) scorer() *scorer {
	s := &scorer{m: m, kinds: make([]Kind, len(m.Features)), x: make([]float64, len(m.Features))}
	for i, f := range m.Features {
		s.kinds[i] = f.Kind
		if f.Kind == Numeric {
			s.numeric++
		}
	}
	return s
}

// load puts row i of d into s.x.
func (s *scorer) load(d *dataset.Dataset, i int) {
	fs := s.m.Features
	for f, v := range d.Numeric[i] {
		s.x[f] = standardize(v, fs[f].Mean, fs[f].Std)
	}
	for j, idx := range d.Category[i] {
		s.x[s.numeric+j] = float64(fs[s.numeric+j].category(idx))
	}
}

// goesLeft is a split's test on the loaded row: the same as goesLeftBin on its bins.
func (s *scorer) goesLeft(n *Node) bool {
	v := s.x[n.Feature]
	switch {
	case s.kinds[n.Feature] == Categorical:
		return int(v) == n.Bin
	case math.IsNaN(v):
		return n.MissingLeft
	}
	return v <= n.Threshold
}

// leaf returns the index of the leaf the loaded row reaches in t.
func (s *scorer) leaf(t *Tree) int32 {
	j := int32(0)
	for t.Nodes[j].Left >= 0 {
		if n := &t.Nodes[j]; s.goesLeft(n) {
			j = n.Left
		} else {
			j = n.Right
		}
	}
	return j
}

// margin returns the loaded row's margin.
func (s *scorer) margin() float64 {
	z := s.m.BaseScore
	for t := range s.m.Trees {
		tr := &s.m.Trees[t]
		z += tr.Nodes[s.leaf(tr)].Value
	}
	return z
}

// Margin returns row i's margin (log-odds). d must pass Check (a mismatch panics or gives
// nonsense) and the model must be valid (as DecodeModel and Fit return it).
func (m *Model) Margin(d *dataset.Dataset, i int) float64 {
	s := m.scorer()
	s.load(d, i)
	return s.margin()
}

// Probability returns row i's predicted probability of the positive label (see Margin).
func (m *Model) Probability(d *dataset.Dataset, i int) float64 {
	return sigmoid(m.Margin(d, i))
}

// Predict returns every row's predicted probability, after checking d against the model.
func (m *Model) Predict(d *dataset.Dataset) ([]float64, error) {
	if err := m.Check(d); err != nil {
		return nil, err
	}
	s := m.scorer()
	out := make([]float64, d.Len())
	for i := range out {
		s.load(d, i)
		out[i] = sigmoid(s.margin())
	}
	return out, nil
}
