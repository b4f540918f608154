package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"

	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/release/modelfile"
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
	// wire is the current step as later levels' tasks carry it: spec without the model,
	// named by its digest.
	wire *task.GBDTSpec
	// contributors is how many clients the tree's last step summed: every later step must sum
	// the same clients (see errStepIncomplete).
	contributors int
	// dp is the DP part of the round's tasks (nil without differential privacy): every client
	// noises its own sketch and histograms (task.GBDTSensitivity), and every step is composed
	// into the run's accountant when its sum arrives (account).
	dp *task.DPSpec
}

// errStepIncomplete marks a tree level summed over fewer clients than the level before: its
// larger children, derived as parent minus smaller child, would mix two sets of rows. The
// round starts again (a new attempt, a new tree) rather than grow a tree from them.
var errStepIncomplete = errors.New("tree level summed over fewer clients than the level before")

func newTreeTrain(c *Core) *treeTrain {
	r := &treeTrain{c: c, p: c.cfg.TreeParams()}
	if ps := c.run.Privacy; ps != nil && ps.Mechanism == DPRecord {
		r.dp = &task.DPSpec{Mechanism: DPRecord, ClipNorm: 1, NoiseMultiplier: ps.NoiseMultiplier, SamplingRate: 1, Steps: 1, Delta: ps.Delta}
	}
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
	cohort := r.c.seededCohort(live)
	if r.dp != nil {
		// The round's evaluation asks the clients that trained from the model.
		r.c.run.Privacy.trainCohort = cohort
		if r.c.he() {
			// The coordinator decrypts only sums: each client adds its 1/sqrt(m) share of
			// the noise, m fixed before anyone answers (see account for fewer).
			r.dp.ExpectedContributors = len(cohort)
		}
	}
	return cohort
}

func (r *treeTrain) resultLen() int {
	n, err := task.GBDTResultLen(r.spec, r.c.numeric)
	if err != nil {
		return -1 // refuses every result; the spec is the coordinator's own
	}
	return n
}

// fill gives a task the step: after a tree's first level without the model, which the
// clients kept from it, named by its digest instead (see task.GBDTSpec.Model).
func (r *treeTrain) fill(t *task.Task) {
	t.GBDT, t.DP = r.spec, r.dp
	if r.spec.Step == task.GBDTHistograms && len(r.spec.Levels) > 0 {
		if r.wire == nil || r.wire.Tree != r.spec.Tree || len(r.wire.Levels) != len(r.spec.Levels) {
			wire := *r.spec
			wire.Model, wire.ModelDigest = nil, r.c.treeDigests.Of(r.spec.Model)
			r.wire = &wire
		}
		t.GBDT = r.wire
	}
}

// combine refuses a client's result that no honest client's rows can give, before it enters
// the sum: a negative or fractional count, a positive count above the rows, rows above the
// records the client announced, a gradient sum above its rows' count (|p-y| <= 1), a hessian
// sum outside [0, count/4] (p(1-p) <= 1/4). One client's extreme values then move a split or a
// leaf no more than its announced rows would.
func (r *treeTrain) combine(plain []float64, records int) error {
	return r.check(plain, r.noiseSlack(1), float64(records))
}

// plausible applies the same bounds to a decrypted he-mode sum, whose values come back on the
// decoding grid (about 1e-9 off per contribution, see treeSlack) rather than exact, and whose
// rows cannot exceed the records the contributors announced.
func (r *treeTrain) plausible(sum []float64, contributors, records int) error {
	return r.check(sum, treeSlack*float64(max(contributors, 1))+r.noiseSlack(contributors), float64(records))
}

// noiseSlack is, under differential privacy, how far the noise of contributors clients may
// take a value past what rows can give: 10 standard deviations of their summed noise (a
// chance of about 1e-23 per value), 0 without DP. A client can then move a value by no more
// than that beyond its rows, which the noise already hides.
func (r *treeTrain) noiseSlack(contributors int) float64 {
	if r.dp == nil {
		return 0
	}
	features := 0
	if r.spec.Model != nil {
		features = len(r.spec.Model.Features)
	}
	sigma := r.dp.NoiseMultiplier * task.GBDTSensitivity(r.spec.Step, r.c.numeric, features)
	return 10 * sigma * math.Sqrt(float64(max(contributors, 1)))
}

// treeSlack is how far one contribution's value may come back from an integer count after
// encryption, summing and threshold decryption: the decoding grid is 2^-30 (secagg's
// LogDecodePrecision; 2^-20 for the key-recovery set), so a count 1e-3 away from an integer
// is not a count, and rounding one within it restores the exact integer.
const treeSlack = 1e-3

// check is combine's and plausible's test of a step's values: counts within slack of a
// non-negative integer (and, with records > 0, no more rows than records), gradient and
// hessian sums within their rows' bounds.
func (r *treeTrain) check(plain []float64, slack, records float64) error {
	const tol = 1e-9
	noised := r.dp != nil
	count := func(x float64) bool {
		return x >= -slack && (noised || math.Abs(x-math.Round(x)) <= slack) && x <= 1<<53
	}
	if r.spec.Step == task.GBDTSketch {
		rows, pos := plain[0], plain[1]
		if !count(rows) || !count(pos) || pos > rows+slack || records > 0 && rows > records+slack {
			return fmt.Errorf("label sums: %v positives of %v rows (records announced: %v)", pos, rows, records)
		}
		for i, x := range plain[gbdt.LabelSumsLen:] {
			if !count(x) || x > rows+slack {
				return fmt.Errorf("sketch cell %d: count %v of %v rows", i, x, rows)
			}
		}
		return nil
	}
	// The requested nodes hold disjoint rows, and each row appears once among every
	// feature's bins of its node: the counts add up to the rows times the features.
	var total float64
	for j := 0; j+2 < len(plain); j += 3 {
		g, h, n := plain[j], plain[j+1], plain[j+2]
		if !count(n) || math.Abs(g) > n*(1+tol)+tol+slack || h < -tol-slack || h > n/4*(1+tol)+tol+slack {
			return fmt.Errorf("histogram bin %d: gradient %v, hessian %v over %v rows", j/3, g, h, n)
		}
		total += n
	}
	if features := len(r.spec.Model.Features); records > 0 && features > 0 {
		if rows := total / float64(features); rows > records+slack*float64(len(plain)) {
			return fmt.Errorf("histograms of %v rows, above the %v records the contributors announced", rows, records)
		}
	}
	return nil
}

// finalize fixes the run's bins after the sketch, or applies a level's histograms to the tree:
// more steps while it grows, the model with the tree added when it is done.
func (r *treeTrain) finalize(sum []float64, contributors int) (trainOutcome, error) {
	c := r.c
	if r.dp != nil {
		if err := r.account(contributors); err != nil {
			return trainOutcome{}, fmt.Errorf("differential privacy: %w", err)
		}
	}
	sum = exactCounts(sum, r.spec.Step)
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
	if len(r.spec.Levels) > 0 && contributors != r.contributors {
		return trainOutcome{}, fmt.Errorf("tree %d, level %d: %w (%d of %d)", r.spec.Tree, len(r.spec.Levels), errStepIncomplete, contributors, r.contributors)
	}
	r.contributors = contributors
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
	if r.dp != nil {
		ps := c.run.Privacy
		err := c.recordRelease(modelfile.Release{Kind: modelfile.ReleaseTrain, Round: c.round, Mechanism: modelfile.MechanismTreeHistograms,
			NoiseMultiplier: ps.TreeMinNoise, SamplingRate: 1, Steps: ps.TreeSteps})
		if err != nil {
			return trainOutcome{}, fmt.Errorf("differential privacy: %w", err)
		}
		ps.TreeSteps = 0
	}
	m := *c.trees
	m.Trees = append(slices.Clone(c.trees.Trees), tree)
	return trainOutcome{trees: &m}, nil
}

// account composes the step whose sum has arrived into the run's accountant, before anything
// is read from it, and keeps the run's record of it: a step is spent once its noised values
// left the clients, whether or not its tree is ever committed (a level that lost a client
// restarts the round, and the levels before it stay spent).
func (r *treeTrain) account(contributors int) error {
	c := r.c
	ps := c.run.Privacy
	z := ps.NoiseMultiplier
	if m := r.dp.ExpectedContributors; m > 0 && contributors < m {
		// Fewer noise shares arrived than the round expected: account with the noise
		// present, rounded down to the grid the client-level rounds use.
		achieved, err := privacy.AchievedNoiseMultiplier(z, m, contributors)
		if err != nil {
			return err
		}
		z = privacy.NoiseGridFloor(achieved)
		c.note(slog.LevelWarn, "fewer contributors than expected: the noise present was lower; accounting with it",
			slog.Int("round", c.round), slog.Int("expected", m), slog.Int("arrived", contributors), slog.Float64("achieved_z", z))
	}
	if !(z > 0) {
		return errors.New("no noise was present in this step: it cannot be accounted")
	}
	if err := ps.Accountant.Compose(1, z, 1); err != nil {
		return err
	}
	if ps.TreeSteps == 0 || z < ps.TreeMinNoise {
		ps.TreeMinNoise = z
	}
	ps.Steps++
	ps.TreeSteps++
	eps, err := c.composedEpsilon()
	if err != nil {
		return err
	}
	ps.Epsilon = eps
	c.pending.Run = c.snapshot()
	return nil
}

// exactCounts returns sum with its counts rounded to the integers they are: every value of a
// sketch, every third of a histogram. A plaintext sum of counts is exact already; a decrypted
// one comes back within treeSlack of it (plausible checked), and rounding gives the plaintext
// run's counts, so that both grow the same trees.
func exactCounts(sum []float64, step task.GBDTStep) []float64 {
	out := slices.Clone(sum)
	for i := range out {
		if step == task.GBDTSketch || i%3 == 2 {
			out[i] = math.Round(out[i])
		}
	}
	return out
}

// examples is the rows the tree was grown from: its root's count.
func treeExamples(m *gbdt.Model) float64 {
	if len(m.Trees) == 0 || len(m.Trees[len(m.Trees)-1].Nodes) == 0 {
		return 0
	}
	return m.Trees[len(m.Trees)-1].Nodes[0].Count
}
