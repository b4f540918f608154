package client

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/privacy"
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
	// digests names model (see gbdt.Digester): every level of a tree names the model by its
	// digest, and hashing a hundred trees' JSON at every level would cost more than growing
	// them.
	digests gbdt.Digester
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
		out := append(labels, sketch...)
		if t.DP != nil {
			if out, err = s.treeRelease(t, out, task.GBDTSensitivity(spec.Step, len(s.train.Schema.Numeric), 0)); err != nil {
				return nil, 0, err
			}
		}
		return out, s.train.Len(), nil
	case task.GBDTHistograms:
	default:
		return nil, 0, fmt.Errorf("%w: tree step %d", task.ErrInvalid, spec.Step)
	}
	model, err := s.treeModel(t)
	if err != nil {
		return nil, 0, err
	}
	if spec.Tree != len(model.Trees) {
		return nil, 0, fmt.Errorf("%w: tree %d of a model of %d trees", task.ErrInvalid, spec.Tree, len(model.Trees))
	}
	local, err := s.treeLocal(t, model)
	if err != nil {
		return nil, 0, err
	}
	out, err := local.Histograms(spec.Nodes)
	if err != nil {
		return nil, 0, err
	}
	if t.DP != nil {
		// The features are the model's, which this client's rows were just binned by: a
		// coordinator cannot shrink the bound by naming fewer.
		if out, err = s.treeRelease(t, out, task.GBDTSensitivity(spec.Step, len(s.train.Schema.Numeric), len(model.Features))); err != nil {
			return nil, 0, err
		}
	}
	return out, s.train.Len(), nil
}

// treeRelease makes a differentially private tree step: Gaussian noise of standard deviation
// z times sensitivity (what one record can change the values by, in L2) on every value, from
// the client's private source, admitted by the client's own ledger before anything is
// computed from it. A repeat of the run's latest step gets the same release: fresh noise on
// the same values would average away.
func (s *Session) treeRelease(t task.Task, values []float64, sensitivity float64) ([]float64, error) {
	d := t.DP
	if !(sensitivity > 0) {
		return nil, fmt.Errorf("%w: a tree step's sensitivity %v: no noise could be scaled to it", privacy.ErrBelowFloor, sensitivity)
	}
	if d.Mechanism != task.DPRecord || d.SamplingRate != 1 || d.Steps != 1 {
		return nil, fmt.Errorf("%w: a tree step is one release of every record (record level, sampling rate 1, 1 step), the task says %s, %v, %d",
			ErrDeclined, d.Mechanism, d.SamplingRate, d.Steps)
	}
	// In he mode the coordinator decrypts only the sum: each of the m clients the round
	// expects adds 1/sqrt(m) of the noise, as at client level (m capped by this client's
	// floor, which only adds noise). A plaintext task names no m: the coordinator reads this
	// client's histograms alone, so they carry all of it.
	m := 1
	switch {
	case t.PublicKey == nil && d.ExpectedContributors != 0:
		return nil, fmt.Errorf("%w: expected contributors %d in a plaintext tree step: the coordinator would read this client's noise share alone",
			privacy.ErrBelowFloor, d.ExpectedContributors)
	case t.PublicKey != nil && d.ExpectedContributors != 0:
		var err error
		if m, err = s.floor.CapContributors(d.ExpectedContributors); err != nil {
			return nil, err
		}
	}
	digest := treeReleaseDigest(t)
	if prev := s.released[t.RunID]; prev != nil && prev.digest == digest {
		return slices.Clone(prev.values), nil
	}
	next := s.ledger.Clone()
	if _, err := next.Admit(1, d.NoiseMultiplier, 1); err != nil {
		return nil, err
	}
	out := slices.Clone(values)
	if err := privacy.AddGaussianNoise(out, d.NoiseMultiplier*sensitivity/math.Sqrt(float64(m)), s.noise); err != nil {
		return nil, fmt.Errorf("dp noise: %w", err)
	}
	if err := s.commitRelease(t.RunID, &release{version: t.ModelVersion, digest: digest, values: slices.Clone(out)}, next); err != nil {
		return nil, err
	}
	return out, nil
}

// treeReleaseDigest identifies what a DP tree step asks: the run, the DP parameters, the
// encoding and the step (which tree of which model, its levels so far and the nodes asked).
func treeReleaseDigest(t task.Task) [sha256.Size]byte {
	h := sha256.New()
	d, g := t.DP, t.GBDT
	fmt.Fprintf(h, "tree|%s|%q|%v|%v|%v|%d|%d|%v|%d|", t.RunID, d.Mechanism, d.NoiseMultiplier, d.SamplingRate, d.Delta, d.Steps, d.ExpectedContributors,
		t.Encoding, t.ModelVersion)
	// The spec is the coordinator's JSON: model, tree, levels and nodes, in a fixed order.
	if b, err := json.Marshal(g); err == nil {
		h.Write(b)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// treeModel is the model a histogram step grows from: the one it carries (a tree's first
// level), or the one this client kept from that level, which the step names by digest. A
// client that does not hold it (it restarted mid-tree, or the coordinator names another)
// declines: the level then lacks it, and the round starts the tree again with the model.
func (s *Session) treeModel(t task.Task) (*gbdt.Model, error) {
	spec := t.GBDT
	if spec.Model != nil {
		if err := spec.Model.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", task.ErrInvalid, err)
		}
		return spec.Model, nil
	}
	st := s.trees
	if spec.ModelDigest == "" || st == nil || st.run != t.RunID || st.tree != spec.Tree || st.digests.Of(st.model) != spec.ModelDigest {
		return nil, fmt.Errorf("%w: tree %d, level %d names model sha256 %.12s, which this client does not hold (a restart mid-tree): the tree starts again",
			ErrDeclined, spec.Tree, len(spec.Levels), spec.ModelDigest)
	}
	return st.model, nil
}

// treeLocal brings the cached state to model (the task's), the task's tree and its levels, or
// rebuilds it.
func (s *Session) treeLocal(t task.Task, model *gbdt.Model) (*gbdt.Local, error) {
	spec := t.GBDT
	st := s.trees
	// The trees already folded in must be the task's own first trees.
	if st == nil || st.run != t.RunID || !model.Extends(st.model) {
		layout, err := gbdt.LayoutOf(model.Features)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", task.ErrInvalid, err)
		}
		x, err := layout.Bin(s.train)
		if err != nil {
			return nil, err
		}
		local, err := gbdt.NewLocal(x, s.train.Label, model.BaseScore)
		if err != nil {
			return nil, err
		}
		st = &treeState{run: t.RunID, model: &gbdt.Model{BaseScore: model.BaseScore, Features: model.Features}, tree: -1, local: local}
		s.trees = st
	}
	// Trees finished since: their leaves go into the margins.
	for i := len(st.model.Trees); i < len(model.Trees); i++ {
		if err := st.local.FinishTree(model.Trees[i]); err != nil {
			s.trees = nil
			return nil, err
		}
		st.model.Trees = append(st.model.Trees, model.Trees[i])
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

// hashID is FNV-1a of a client id.
func hashID(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}
