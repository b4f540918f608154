package coordinator

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"

	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/task"
)

// DefaultMaxUpdateNorm is run.max_update_norm when unset: the L2 norm an honest client clips
// its (unweighted) update to in a run without differential privacy. Weights live in the
// standardised feature space, where one round's honest update is far below it; it exists so
// that one client's finite but extreme update (1e300) cannot move the model further than this
// times its share of the examples.
const DefaultMaxUpdateNorm = 10

// boundsTolerance absorbs rounding in sums of up to about 2^24 values (and, in he mode, the
// decoding grid): relative, plus an absolute part for sums near zero.
const boundsTolerance = 1e-6

func within(x, limit float64) bool { return x <= limit+boundsTolerance*(1+math.Abs(limit)) }

// contentError names the bound a result breaks, for the INVALID_ARGUMENT the client receives.
func contentError(format string, args ...any) error {
	return fmt.Errorf("outside the run's bounds: "+format, args...)
}

// checkContent rejects a plaintext result no honest client of this run can produce: a count
// beyond the client's registered records or below zero, an update longer than the run's bound,
// a sum of squares inconsistent with its sum, evaluation counts that do not add up. The round
// goes on without it.
func (c *Core) checkContent(clientID string, t task.Task, v []float64) error {
	records := float64(c.records[clientID])
	switch t.Kind {
	case task.KindStats:
		return checkStats(v, c.numeric, records, 1, 0)
	case task.KindTrain:
		if c.cfg.Trees() {
			return nil // the tree round checks its histograms (treeTrain.combine)
		}
		return c.checkTrain(t, v, records)
	case task.KindEvaluate:
		// Under DP a client weighs its records (1 each, or 1/n at client level) and the
		// coordinator adds the noise afterwards: the counts add up all the same.
		n := metrics.VectorLen(c.evalBins())
		if err := checkEvalCounts(v[:n], 0); err != nil {
			return err
		}
		if t.SHAPSums && t.Trees != nil {
			return checkSHAPSums(v, v[0], t.Trees)
		}
	}
	return nil
}

// checkSHAPSums checks the |TreeSHAP| sums of m (gbdt.AbsSHAPSums) at the end of evaluation
// result v, summed over the rows of an evaluation of records records: their row count is the
// evaluation's, and each feature's sum lies in [0, rows x m.MaxAbsSHAP()], the most rows can
// add (a |SHAP value| never exceeds the spread of the leaf values of the trees that split on
// the feature). In he mode the sums are encrypted with the rest of the vector, so this bound
// is all that keeps a client from moving the card's importance at will.
func checkSHAPSums(v []float64, records float64, m *gbdt.Model) error {
	k := gbdt.AbsSHAPLen(len(m.Features))
	if len(v) < k {
		return contentError("%d values hold no |SHAP| sums of %d features", len(v), len(m.Features))
	}
	sums := v[len(v)-k:]
	rows := sums[0]
	if math.Abs(rows-records) > boundsTolerance*(1+math.Abs(records)) {
		return contentError("|SHAP| sums over %v rows, the evaluation counts %v records", rows, records)
	}
	for f, reach := range m.MaxAbsSHAP() {
		if x := sums[1+f]; x < -boundsTolerance || !within(x, rows*reach) {
			return contentError("|SHAP| sum %v of feature %q outside [0, %v rows x %.6g, the most one row's |SHAP value| can be]",
				x, m.Features[f].Name, rows, reach)
		}
	}
	return nil
}

// checkStats checks count, sums, sums of squares and the excluded count of n numeric features
// summed by clients holding at most records records (0: unknown). A sum of squares is never
// negative and, by Cauchy-Schwarz, at least sum^2/count; slack is the absolute error the sums
// may carry (he mode's decoding grid, scaled back).
func checkStats(v []float64, n int, records float64, contributors int, slack float64) error {
	count, excluded := v[0], v[len(v)-1]
	switch {
	case count < -boundsTolerance-slack || excluded < -boundsTolerance-slack:
		return contentError("count %v and excluded count %v must not be negative", count, excluded)
	case records > 0 && !within(count, records):
		return contentError("count %v is above the %v training records announced at registration", count, records)
	case contributors > 0 && records == 0 && count < float64(contributors)-boundsTolerance*float64(contributors):
		return contentError("count %v from %d contributors", count, contributors)
	}
	for j := range n {
		sum, sq := v[1+j], v[1+n+j]
		if sq < -boundsTolerance-slack {
			return contentError("feature %d: negative sum of squares %v", j, sq)
		}
		if count == 0 {
			if math.Abs(sum) > boundsTolerance+slack || sq > boundsTolerance+slack {
				return contentError("feature %d: sums over no record", j)
			}
			continue
		}
		if !within(sum*sum/count, sq+slack*(1+2*math.Abs(sum)/count)) {
			return contentError("feature %d: sum %v and sum of squares %v are inconsistent over %v records (sum^2/count > sum of squares)", j, sum, sq, count)
		}
	}
	return nil
}

// checkTrain checks one client's train result against the run's bounds and the mechanism's.
func (c *Core) checkTrain(t task.Task, v []float64, records float64) error {
	n := v[task.TrainCountIndex]
	delta := v[task.TrainDeltaStart : len(v)-1]
	last := v[len(v)-1]
	if t.DP != nil {
		if n != 1 {
			return contentError("under differential privacy every update counts once, got %v", n)
		}
		switch t.DP.Mechanism {
		case DPClient:
			// In plaintext the coordinator adds the noise: the update is the clipped one.
			if norm := floats.Norm(delta, 2); !within(norm, t.DP.ClipNorm) {
				return contentError("update norm %v above the clipping norm %v", norm, t.DP.ClipNorm)
			}
			if last != 0.5 && last != -0.5 {
				return contentError("clipping indicator %v is not +0.5 or -0.5", last)
			}
		case DPRecord:
			if last != 0 {
				return contentError("a DP-SGD result releases no loss, got %v", last)
			}
		}
		return nil
	}
	switch {
	case n < 1:
		return contentError("example count %v must be at least 1", n)
	case records > 0 && !within(n, records):
		return contentError("example count %v is above the %v training records announced at registration", n, records)
	}
	if norm := floats.Norm(delta, 2) / n; !within(norm, c.maxUpdateNorm()) {
		return contentError("update norm %v above run.max_update_norm %v", norm, c.maxUpdateNorm())
	}
	if loss := last / n; loss < -boundsTolerance || !within(loss, metrics.MaxLogLoss) {
		return contentError("mean loss %v outside [0, %v]", loss, metrics.MaxLogLoss)
	}
	return nil
}

// checkEvalCounts checks the overall evaluation sums: records, positives and correct counts
// are not negative and positives and correct do not exceed records; the log-loss and Brier sums
// are within a record's bounds; the histograms hold every record once. noise is the standard
// deviation of noise on each count (0: exact sums).
func checkEvalCounts(v []float64, noise float64) error {
	bins := metrics.VectorBins(len(v))
	ev, err := metrics.EvalSumsFromVector(v, bins)
	if err != nil {
		return contentError("%v", err)
	}
	if noise > 0 {
		return nil // noised sums need not add up; their plausibility is the noise's
	}
	var pos, neg float64
	for b := range bins {
		if ev.PosHist[b] < -boundsTolerance || ev.NegHist[b] < -boundsTolerance {
			return contentError("score histogram bin %d is negative", b)
		}
		pos += ev.PosHist[b]
		neg += ev.NegHist[b]
	}
	switch {
	case ev.N < 0:
		return contentError("evaluated records %v must not be negative", ev.N)
	case ev.Positives < -boundsTolerance || !within(ev.Positives, ev.N):
		return contentError("positives %v outside [0, %v records]", ev.Positives, ev.N)
	case ev.Correct < -boundsTolerance || !within(ev.Correct, ev.N):
		return contentError("correct %v outside [0, %v records]", ev.Correct, ev.N)
	case ev.LogLossSum < -boundsTolerance || !within(ev.LogLossSum, ev.N*metrics.MaxLogLoss):
		return contentError("log-loss sum %v outside [0, %v records x %.4g]", ev.LogLossSum, ev.N, metrics.MaxLogLoss)
	case ev.BrierSum < -boundsTolerance || !within(ev.BrierSum, ev.N):
		return contentError("Brier sum %v outside [0, %v records]", ev.BrierSum, ev.N)
	case math.Abs(pos-ev.Positives) > boundsTolerance*(1+ev.N) || math.Abs(neg-(ev.N-ev.Positives)) > boundsTolerance*(1+ev.N):
		return contentError("the score histograms hold %v positive and %v negative records, the counts say %v and %v", pos, neg, ev.Positives, ev.N-ev.Positives)
	}
	return nil
}

// maxUpdateNorm is the run's bound on one client's unweighted update (no DP).
func (c *Core) maxUpdateNorm() float64 {
	if c.cfg.MaxUpdateNorm > 0 {
		return c.cfg.MaxUpdateNorm
	}
	return DefaultMaxUpdateNorm
}

// submittedRecords is the sum of the records announced by the clients whose results the
// current collection accepted: what a decrypted aggregate's counts can reach at most (0 when
// any of them announced none).
func (c *Core) submittedRecords() int {
	total := 0
	for _, id := range c.submitters {
		r := c.records[id]
		if r <= 0 {
			return 0
		}
		total += r
	}
	return total
}

// plausibleAggregate checks a decrypted he-mode aggregate against the bounds times its
// contributors: no single result could be read, so an implausible sum discards the round.
func (c *Core) plausibleAggregate(purpose phase, sum []float64, contributors, records int) error {
	for i, x := range sum {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return contentError("value %d is %v", i, x)
		}
	}
	switch purpose {
	case phaseStats:
		scaled := append([]float64(nil), sum...)
		slack := 0.0
		if scale := c.statsScale(); scale != 1 {
			floats.Scale(1/scale, scaled[1:1+c.numeric])
			floats.Scale(1/(scale*scale), scaled[1+c.numeric:1+2*c.numeric])
			// Values decode on a grid of 2^-LogDecodePrecision (2^-30), scaled back here.
			slack = math.Ldexp(1, -20) / (scale * scale)
		}
		return checkStats(scaled, c.numeric, float64(records), contributors, slack)
	case phaseTrain:
		return c.train.plausible(sum, contributors, records)
	case phaseEvaluate:
		if c.dp() != DPNone {
			return nil // noised: see privatizeEvaluation
		}
		n := metrics.VectorLen(c.evalBins())
		if err := checkEvalCounts(sum[:n], 0); err != nil {
			return err
		}
		if c.evalImportance() && c.candidate != nil && c.candidate.Trees != nil {
			return checkSHAPSums(sum, sum[0], c.candidate.Trees)
		}
		return nil
	}
	return nil
}
