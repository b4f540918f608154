package client

import (
	"fmt"
	"slices"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/task"
)

// treeState is a client's side of the tree being grown (gbdt.Local), kept between the steps
// of a run so that each level costs one pass over the rows, not a replay of every tree. It is
// only a cache: every tree task carries the whole model and the current tree's splits, and a
// task the cache does not fit rebuilds it from them.
type treeState struct {
	run    string
	model  *gbdt.Model // the trees folded into local's margins
	tree   int         // the tree local is growing
	levels int         // the levels of it applied
	local  *gbdt.Local
}

// treeTask answers a train task of a gradient-boosted-trees run: the label sums and quantile
// sketch, or the histograms of the nodes asked for.
func (s *Session) treeTask(t task.Task) ([]float64, int, error) {
	spec := t.GBDT
	std := dataset.Standardization{Mean: t.Encoding.Mean, Std: t.Encoding.Std}
	switch spec.Step {
	case task.GBDTSketch:
		labels, err := gbdt.LabelSums(s.train)
		if err != nil {
			return nil, 0, err
		}
		sketch, err := gbdt.SketchCounts(s.train, std)
		if err != nil {
			return nil, 0, err
		}
		return append(labels, sketch...), s.train.Len(), nil
	case task.GBDTHistograms:
	default:
		return nil, 0, fmt.Errorf("%w: tree step %d", task.ErrInvalid, spec.Step)
	}
	if spec.Model == nil {
		return nil, 0, fmt.Errorf("%w: a histogram step without its model", task.ErrInvalid)
	}
	if err := spec.Model.Validate(); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", task.ErrInvalid, err)
	}
	if spec.Tree != len(spec.Model.Trees) {
		return nil, 0, fmt.Errorf("%w: tree %d of a model of %d trees", task.ErrInvalid, spec.Tree, len(spec.Model.Trees))
	}
	local, err := s.treeLocal(t)
	if err != nil {
		return nil, 0, err
	}
	out, err := local.Histograms(spec.Nodes)
	if err != nil {
		return nil, 0, err
	}
	return out, s.train.Len(), nil
}

// treeLocal brings the cached state to the task's model, tree and levels, or rebuilds it.
func (s *Session) treeLocal(t task.Task) (*gbdt.Local, error) {
	spec := t.GBDT
	st := s.trees
	fits := st != nil && st.run == t.RunID && st.model.BaseScore == spec.Model.BaseScore &&
		len(st.model.Trees) <= len(spec.Model.Trees) && slices.EqualFunc(st.model.Features, spec.Model.Features, sameFeature)
	if fits {
		// The trees already folded in must be the task's own first trees.
		for i := range st.model.Trees {
			if !slices.Equal(st.model.Trees[i].Nodes, spec.Model.Trees[i].Nodes) {
				fits = false
				break
			}
		}
	}
	if !fits {
		layout, err := gbdt.LayoutOf(spec.Model.Features)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", task.ErrInvalid, err)
		}
		x, err := layout.Bin(s.train)
		if err != nil {
			return nil, err
		}
		local, err := gbdt.NewLocal(x, s.train.Label, spec.Model.BaseScore)
		if err != nil {
			return nil, err
		}
		st = &treeState{run: t.RunID, model: &gbdt.Model{BaseScore: spec.Model.BaseScore, Features: spec.Model.Features}, tree: -1, local: local}
		s.trees = st
	}
	// Trees finished since: their leaves go into the margins.
	for i := len(st.model.Trees); i < len(spec.Model.Trees); i++ {
		if err := st.local.FinishTree(spec.Model.Trees[i]); err != nil {
			s.trees = nil
			return nil, err
		}
		st.model.Trees = append(st.model.Trees, spec.Model.Trees[i])
		st.tree = -1
	}
	if st.tree != spec.Tree || st.levels > len(spec.Levels) {
		// The row sample is the client's: a seed the coordinator cannot steer beyond its own
		// run seed, per client.
		st.local.StartTree(spec.Tree, spec.Params.Subsample, gbdt.ClientSeed(spec.Params.Seed, int(hashID(s.id)%(1<<31))))
		st.tree, st.levels = spec.Tree, 0
	}
	for ; st.levels < len(spec.Levels); st.levels++ {
		if err := st.local.ApplySplits(spec.Levels[st.levels]); err != nil {
			s.trees = nil
			return nil, fmt.Errorf("%w: level %d: %w", task.ErrInvalid, st.levels, err)
		}
	}
	return st.local, nil
}

func sameFeature(a, b gbdt.Feature) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.Mean == b.Mean && a.Std == b.Std &&
		slices.Equal(a.Edges, b.Edges) && slices.Equal(a.Levels, b.Levels)
}

// hashID is FNV-1a of a client id.
func hashID(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// treeScores scores the evaluation rows with an evaluate task's tree model.
func (s *Session) treeScores(m *gbdt.Model) ([]float64, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", task.ErrInvalid, err)
	}
	return m.Predict(s.eval)
}
