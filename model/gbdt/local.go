package gbdt

import (
	"fmt"
	"math"
	"slices"
)

// minHessian keeps a row's hessian p(1-p) positive when its margin is so large that p rounds
// to 0 or 1 (XGBoost uses the same floor).
const minHessian = 1e-16

// Local is one client's side of a fit: its binned rows, labels and margins, and for the tree
// being grown each row's gradient, hessian and node. It is a pure state machine driven by
// the coordinator's messages: StartTree, then Histograms and ApplySplits per level, then
// FinishTree. It is not safe for concurrent use.
type Local struct {
	x      *Binned
	label  []float64
	margin []float64
	grad   []float64
	hess   []float64
	node   []int32 // the row's node in the current tree; -1 outside the tree's subsample
	split  []bool  // per node of the current tree: split already (the splits applied say)
}

// NewLocal starts a client's boosting state: every margin at baseScore. Labels must be 0 or 1,
// one per binned row.
func NewLocal(x *Binned, labels []float64, baseScore float64) (*Local, error) {
	if len(labels) != x.Len() {
		return nil, fmt.Errorf("%w: %d labels for %d rows", ErrData, len(labels), x.Len())
	}
	if err := checkLabels(labels); err != nil {
		return nil, err
	}
	if math.IsNaN(baseScore) || math.IsInf(baseScore, 0) {
		return nil, fmt.Errorf("%w: base score %v", ErrRequest, baseScore)
	}
	n := x.Len()
	l := &Local{
		x: x, label: slices.Clone(labels), margin: make([]float64, n),
		grad: make([]float64, n), hess: make([]float64, n), node: make([]int32, n),
	}
	for i := range l.margin {
		l.margin[i] = baseScore
	}
	return l, nil
}

// Margins returns the rows' current margins (log-odds).
func (l *Local) Margins() []float64 { return slices.Clone(l.margin) }

// StartTree computes the log-loss gradient p-y and hessian p(1-p) of every row at its
// margin, and puts the rows of the tree's subsample in the root: row i is in it when a hash
// of (seed, tree, i) falls below subsample (Params.Subsample, validated), so the same seed
// gives the same sample.
func (l *Local) StartTree(tree int, subsample float64, seed uint64) {
	for i, m := range l.margin {
		p := sigmoid(m)
		l.grad[i] = p - l.label[i]
		l.hess[i] = max(p*(1-p), minHessian)
		l.node[i] = 0
		if subsample < 1 && uniform(domainSubsample, seed, uint64(tree), uint64(i)) >= subsample {
			l.node[i] = -1
		}
	}
	l.split = append(l.split[:0], false)
}

// Histograms returns the client's histograms of the given nodes (see BuildHistograms).
func (l *Local) Histograms(nodes []int32) ([]float64, error) {
	return BuildHistograms(l.x, l.grad, l.hess, l.node, nodes)
}

// ApplySplits moves the rows of every split node to its children. The splits must name
// existing leaves of the current tree, a feature and bin of the layout, and the next node ids
// in order, as Grower.Splits gives them.
func (l *Local) ApplySplits(splits []Split) error {
	layout := l.x.layout
	nodes := len(l.split)
	byNode := make([]*Split, nodes)
	for k := range splits {
		s := &splits[k]
		left := nodes + 2*k
		switch {
		case s.Node < 0 || int(s.Node) >= nodes || l.split[s.Node] || byNode[s.Node] != nil:
			return fmt.Errorf("%w: split of node %d, which is not a leaf of the tree's %d nodes or is split twice", ErrRequest, s.Node, nodes)
		case s.Feature < 0 || s.Feature >= len(layout.features):
			return fmt.Errorf("%w: split of node %d on feature %d of %d", ErrRequest, s.Node, s.Feature, len(layout.features))
		case !validSplitBin(layout.features[s.Feature], s.Bin, s.MissingLeft):
			return fmt.Errorf("%w: split of node %d at bin %d of feature %q (missing left: %v)", ErrRequest, s.Node, s.Bin, layout.features[s.Feature].Name, s.MissingLeft)
		case int(s.Left) != left || int(s.Right) != left+1 || left+2 > maxNodes:
			return fmt.Errorf("%w: split of node %d into %d and %d, want %d and %d", ErrRequest, s.Node, s.Left, s.Right, left, left+1)
		}
		byNode[s.Node] = s
	}
	if len(splits) == 0 {
		return nil
	}
	for _, s := range splits {
		l.split[s.Node] = true
	}
	l.split = append(l.split, make([]bool, 2*len(splits))...)
	for i, n := range l.node {
		if n < 0 || byNode[n] == nil {
			continue
		}
		s := byNode[n]
		if goesLeftBin(&layout.features[s.Feature], int(l.x.Row(i)[s.Feature]), s.Bin, s.MissingLeft) {
			l.node[i] = s.Left
		} else {
			l.node[i] = s.Right
		}
	}
	return nil
}

// FinishTree adds the finished tree's leaf value to every row's margin, rows outside the
// tree's subsample included (they are routed through the tree by their bins).
func (l *Local) FinishTree(t Tree) error {
	if err := checkTree(t, l.x.layout.features); err != nil {
		return fmt.Errorf("%w: %w", ErrRequest, err)
	}
	fs := l.x.layout.features
	for i := range l.margin {
		row := l.x.Row(i)
		j := int32(0)
		for t.Nodes[j].Left >= 0 {
			n := &t.Nodes[j]
			if goesLeftBin(&fs[n.Feature], int(row[n.Feature]), n.Bin, n.MissingLeft) {
				j = n.Left
			} else {
				j = n.Right
			}
		}
		l.margin[i] += t.Nodes[j].Value
	}
	return nil
}

// goesLeftBin is a split's test on a bin index.
func goesLeftBin(f *Feature, bin, splitBin int, missingLeft bool) bool {
	switch {
	case f.Kind == Categorical:
		return bin == splitBin
	case bin == f.missingBin():
		return missingLeft
	}
	return bin <= splitBin
}

// validSplitBin reports whether a split of f at bin can be made: a numeric split needs an
// edge to cut at, a categorical one a category and no missing side.
func validSplitBin(f Feature, bin int, missingLeft bool) bool {
	if f.Kind == Categorical {
		return bin >= 0 && bin <= len(f.Levels) && !missingLeft
	}
	return bin >= 0 && bin < len(f.Edges)
}
