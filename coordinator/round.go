package coordinator

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/floats"

	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/task"
)

// trainRound is one train phase in Flower's shape: configure draws the cohort from the live
// clients and fixes what the phase's tasks carry, fill completes each task, combine sees each
// accepted plaintext result, finalize turns the phase's sum (decrypted, in he mode) into the
// mean update the server strategy applies. The plain round is the weighted mean (or a robust
// aggregator) over a seeded cohort; differential privacy is a decorator around it (dpTrain),
// so that the mean, the cohort and the bounds are written once whatever the mechanism.
//
// A round may take several steps (a tree grows level by level, each level a collection of
// histograms): finalize then reports more, and the core collects the next step from the same
// cohort before the round's model is made.
type trainRound interface {
	configure(live []string) []string
	// resultLen is the length of the results of the current step.
	resultLen() int
	fill(t *task.Task)
	// combine checks and takes one client's accepted plaintext result; records are the
	// training records the client announced (0: unknown).
	combine(plain []float64, records int) error
	// plausible checks a decrypted he-mode sum of the step against the bounds times its
	// contributors (and the records they announced; 0: unknown), before finalize reads it.
	plausible(sum []float64, contributors, records int) error
	finalize(sum []float64, contributors int) (trainOutcome, error)
}

// trainOutcome is what a finalized step gives: the mean update of a logistic round, the trees
// of a tree round's last step, or more: the round needs another step.
type trainOutcome struct {
	mean  []float64
	trees *gbdt.Model
	more  bool
}

// newTrainRound starts the round strategy of a train phase: a fresh aggregator, decorated
// with the run's differential privacy when it has one; a tree round for a tree run.
func (c *Core) newTrainRound() trainRound {
	if c.cfg.Trees() {
		return newTreeTrain(c)
	}
	base := &meanTrain{c: c, agg: strategy.NewAggregator(c.cfg.Robust)}
	if c.dp() == DPNone {
		return base
	}
	return &dpTrain{meanTrain: base}
}

// meanTrain is the round without differential privacy: a seeded cohort, tasks bounded by
// run.max_update_norm, and the example-weighted mean (or the robust aggregate) of the updates.
type meanTrain struct {
	c   *Core
	agg strategy.Aggregator
}

// configure picks a seeded random CohortFraction (at least MinCohort) of the live clients.
func (r *meanTrain) configure(live []string) []string { return r.c.seededCohort(live) }

// seededCohort picks a random CohortFraction (at least MinCohort) of the live clients, seeded
// by the run, the round and the attempt.
func (c *Core) seededCohort(live []string) []string {
	rng := rand.New(rand.NewPCG(c.cfg.Seed, mixSeed(uint64(c.round), uint64(c.attempt))))
	n := int(math.Ceil(c.cfg.CohortFraction * float64(len(live))))
	n = min(len(live), max(n, c.cfg.MinCohort))
	if n == len(live) {
		return live
	}
	rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	cohort := live[:n]
	slices.Sort(cohort)
	return cohort
}

func (r *meanTrain) resultLen() int { return task.TrainVectorLen(len(r.c.global)) }

func (r *meanTrain) fill(t *task.Task) { t.MaxUpdateNorm = r.c.maxUpdateNorm() }

// combine hands a robust aggregator the client's unweighted update; the mean needs only the
// running sum, which the phase's accumulator keeps.
func (r *meanTrain) combine(plain []float64, _ int) error {
	if !r.agg.Individual() {
		return nil
	}
	n := plain[task.TrainCountIndex]
	u := make([]float64, len(r.c.global))
	for i := range u {
		u[i] = plain[task.TrainDeltaStart+i] / n
	}
	return r.agg.Combine(u, n)
}

func (r *meanTrain) plausible(sum []float64, contributors, records int) error {
	c := r.c
	n := sum[task.TrainCountIndex]
	if c.dp() != DPNone {
		// Every contribution counts once; the update carries noise, so only the count is
		// checked.
		if math.Abs(n-float64(contributors)) > 0.5 {
			return contentError("%v counted for %d contributions that count once each", n, contributors)
		}
		return nil
	}
	switch {
	case n < float64(contributors)-0.5:
		return contentError("example count %v for %d contributions of at least 1", n, contributors)
	case records > 0 && !within(n, float64(records)):
		return contentError("example count %v above the %d records its contributors announced", n, records)
	}
	if norm := floats.Norm(sum[task.TrainDeltaStart:len(sum)-1], 2); !within(norm, c.maxUpdateNorm()*n) {
		return contentError("weighted update norm %v above run.max_update_norm %v times %v examples", norm, c.maxUpdateNorm(), n)
	}
	return nil
}

func (r *meanTrain) finalize(sum []float64, _ int) (trainOutcome, error) {
	dim := len(r.c.global)
	mean, err := r.agg.Finalize(sum[task.TrainDeltaStart:task.TrainDeltaStart+dim], sum[task.TrainCountIndex])
	if err != nil && r.agg.Individual() {
		return trainOutcome{}, fmt.Errorf("robust aggregation %s: %w", r.c.cfg.Robust.Name, err)
	}
	return trainOutcome{mean: mean}, err
}

// dpTrain decorates the mean round with the run's differential privacy: client-level runs
// sample the cohort by Poisson sampling from the coordinator's private source (the accountant
// assumes it, and a sample anyone could recompute from the run's seed would not amplify
// privacy); every task carries the phase's noise parameters instead of the plaintext bound; and
// finalize noises (plaintext client level), divides by the expected contributors and accounts
// the round before the mean reaches the strategy.
type dpTrain struct {
	*meanTrain
	// spec is the DP part of the phase's tasks, fixed before anyone answers.
	spec *task.DPSpec
}

func (r *dpTrain) configure(live []string) []string {
	c := r.c
	var cohort []string
	if c.dp() == DPClient {
		picked, err := privacy.PoissonSample(len(live), c.run.Privacy.SamplingRate, c.noise)
		if err != nil {
			c.note(slog.LevelError, "client sampling failed; the round gets no cohort", slog.Int("round", c.round), slog.String("err", err.Error()))
		} else {
			cohort = make([]string, len(picked))
			for i, k := range picked {
				cohort[i] = live[k]
			}
		}
	} else {
		cohort = r.meanTrain.configure(live)
	}
	// m and the noise shares are fixed before anyone answers, once for the phase.
	c.expected = c.expectedContributors()
	spec, err := c.dpSpec()
	if err != nil {
		c.fail(fmt.Sprintf("round %d: differential privacy: %v; no task was issued without its noise", c.round, err))
		return nil
	}
	r.spec = spec
	c.run.Privacy.trainCohort = cohort
	return cohort
}

func (r *dpTrain) fill(t *task.Task) { t.DP = r.spec }

func (r *dpTrain) finalize(sum []float64, contributors int) (trainOutcome, error) {
	delta, weight, err := r.c.privatize(sum, contributors, r.c.submitters)
	if err != nil {
		return trainOutcome{}, fmt.Errorf("differential privacy: %w", err)
	}
	mean, err := r.agg.Finalize(delta, weight)
	return trainOutcome{mean: mean}, err
}

// trainDPSpec is the DP part of the current train phase's tasks (nil without DP), which the
// committee's decrypt tasks repeat so that members check the noise against their floors.
func (c *Core) trainDPSpec() *task.DPSpec {
	switch r := c.train.(type) {
	case *dpTrain:
		return r.spec
	case *treeTrain:
		return r.dp
	}
	return nil
}
