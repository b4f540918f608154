package coordinator

import (
	"fmt"
	"math"
	"slices"

	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/task"
)

// treeTrain is the train round of a gradient-boosted-trees run: one round grows one tree,
// level by level, each level a step whose results are the clients' gradient and hessian
// histograms of the nodes the tree's Grower asks for (package gbdt). The run's first round
// starts with a sketch step: the clients' label sums and quantile sketches, from which the
// coordinator fixes the base score and every numeric feature's bin edges for the whole run.
// The cohort is drawn once per tree: a node's larger child is its parent minus its smaller
// one, which holds only over the same rows.
type treeTrain struct {
	c      *Core
	p      gbdt.Params
	spec   *task.GBDTSpec
	grower *gbdt.Grower
	err    error // a tree that cannot start: the run fails when the round is configured
}

func newTreeTrain(c *Core) *treeTrain {
	r := &treeTrain{c: c, p: c.cfg.TreeParams()}
	if c.trees == nil {
		r.spec = &task.GBDTSpec{Step: task.GBDTSketch, Params: r.p}
		return r
	}
	r.err = r.startTree()
	return r
}

// startTree starts growing the next tree of the run's model.
func (r *treeTrain) startTree() error {
	m := r.c.trees
	layout, err := gbdt.LayoutOf(m.Features)
	if err != nil {
		return err
	}
	if r.grower, err = gbdt.NewGrower(layout, r.p, len(m.Trees)); err != nil {
		return err
	}
	r.spec = &task.GBDTSpec{Step: task.GBDTHistograms, Params: r.p, Model: m, Tree: len(m.Trees), Nodes: r.grower.Pending()}
	return nil
}

func (r *treeTrain) configure(live []string) []string {
	if r.err != nil {
		r.c.fail(fmt.Sprintf("round %d: tree %d: %v", r.c.round, r.c.round, r.err))
		return nil
	}
	return r.c.seededCohort(live)
}

func (r *treeTrain) resultLen() int {
	n, err := task.GBDTResultLen(r.spec, r.c.numeric)
	if err != nil {
		return -1 // refuses every result; the spec is the coordinator's own
	}
	return n
}

func (r *treeTrain) fill(t *task.Task) { t.GBDT = r.spec }

// combine refuses a client's result that no honest client's rows can give, before it enters
// the sum: a negative or fractional count, a positive count above the rows, a gradient sum
// above its rows' count (|p-y| <= 1), a hessian sum outside [0, count/4] (p(1-p) <= 1/4).
// One client's extreme values then move a split or a leaf no more than as many honest rows
// would.
func (r *treeTrain) combine(plain []float64) error {
	const tol = 1e-9
	count := func(x float64) bool { return x >= 0 && x == math.Trunc(x) && x <= 1<<53 }
	if r.spec.Step == task.GBDTSketch {
		rows, pos := plain[0], plain[1]
		if !count(rows) || !count(pos) || pos > rows {
			return fmt.Errorf("label sums: %v positives of %v rows", pos, rows)
		}
		for i, x := range plain[gbdt.LabelSumsLen:] {
			if !count(x) || x > rows {
				return fmt.Errorf("sketch cell %d: count %v of %v rows", i, x, rows)
			}
		}
		return nil
	}
	for j := 0; j+2 < len(plain); j += 3 {
		g, h, n := plain[j], plain[j+1], plain[j+2]
		if !count(n) || math.Abs(g) > n*(1+tol)+tol || h < -tol || h > n/4*(1+tol)+tol {
			return fmt.Errorf("histogram bin %d: gradient %v, hessian %v over %v rows", j/3, g, h, n)
		}
	}
	return nil
}

// finalize fixes the run's bins after the sketch, or applies a level's histograms to the tree:
// more steps while it grows, the model with the tree added when it is done.
func (r *treeTrain) finalize(sum []float64, _ int) (trainOutcome, error) {
	c := r.c
	if r.spec.Step == task.GBDTSketch {
		base, err := gbdt.BaseScore(sum[:gbdt.LabelSumsLen])
		if err != nil {
			return trainOutcome{}, fmt.Errorf("base score: %w", err)
		}
		edges, err := gbdt.Edges(sum[gbdt.LabelSumsLen:], c.numeric, r.p.Bins)
		if err != nil {
			return trainOutcome{}, fmt.Errorf("bin edges: %w", err)
		}
		layout, err := gbdt.NewBinner(c.schema, *c.run.Standardization, edges)
		if err != nil {
			return trainOutcome{}, fmt.Errorf("bins: %w", err)
		}
		c.trees = &gbdt.Model{Format: gbdt.ModelFormat, Params: r.p, BaseScore: base, Features: layout.Features()}
		if err := r.startTree(); err != nil {
			return trainOutcome{}, err
		}
		return trainOutcome{more: true}, nil
	}
	if err := r.grower.Apply(sum); err != nil {
		return trainOutcome{}, fmt.Errorf("tree %d: %w", r.spec.Tree, err)
	}
	if !r.grower.Done() {
		next := *r.spec
		next.Levels = append(slices.Clone(r.spec.Levels), r.grower.Splits())
		next.Nodes = r.grower.Pending()
		r.spec = &next
		return trainOutcome{more: true}, nil
	}
	tree, err := r.grower.Tree()
	if err != nil {
		return trainOutcome{}, err
	}
	m := *c.trees
	m.Trees = append(slices.Clone(c.trees.Trees), tree)
	return trainOutcome{trees: &m}, nil
}

// examples is the rows the tree was grown from: its root's count.
func treeExamples(m *gbdt.Model) float64 {
	if len(m.Trees) == 0 || len(m.Trees[len(m.Trees)-1].Nodes) == 0 {
		return 0
	}
	return m.Trees[len(m.Trees)-1].Nodes[0].Count
}
