package metrics

import "math"

// DefaultDPBins is the number of score histogram bins of an evaluation released under
// differential privacy. Every bin carries its own noise, and the AUC's noise grows with the
// square root of the bins while what a record adds does not shrink, so a DP release trades
// resolution for noise: 20 bins (width 0.05) bound the histogram AUC's binning error by
// AUCErrorBound, typically a few hundredths for scores crowded near 0, where 2000 bins would
// make the noise dominate.
const DefaultDPBins = 20

// MaxRowLogLoss caps what one row adds to LogLossSum in a differentially private release:
// ln(100), the log loss of a score of 0.01 on a positive row (or 0.99 on a negative one).
// Without a cap one confidently wrong row could add up to -ln(ProbabilityClamp) = 34.5, and the
// noise, which must cover the largest contribution, would swamp the mean log loss. Rows beyond
// it count as ln(100), which biases the released log loss downwards only for such rows.
var MaxRowLogLoss = math.Log(100)

// RecordBound is what one record can add to a part of a released sum vector: at most Touched of
// the part's values change, each by at most its entry of Bounds (in absolute value). It is what
// calibrates the Gaussian noise of the release (see NoiseScales).
type RecordBound struct {
	Bounds  []float64
	Touched int
}

// EvalSumsRecordBound is the RecordBound of an EvalSums vector with bins histogram bins whose
// rows were added with AddWeighted at a weight of at most 1 and maxLogLoss MaxRowLogLoss: one
// record changes N, Positives, LogLossSum (by at most MaxRowLogLoss), BrierSum, Correct and one
// histogram bin, each by at most 1 otherwise: 6 values.
func EvalSumsRecordBound(bins int) RecordBound {
	b := make([]float64, vectorHeader+2*bins)
	for i := range b {
		b[i] = 1
	}
	b[2] = MaxRowLogLoss
	return RecordBound{Bounds: b, Touched: vectorHeader + 1}
}

// NoiseScales returns, for each value of the release the parts make up (in order), the standard
// deviation of its Gaussian noise per unit of noise multiplier z: its bound times
// sqrt(K), where K is the sum of the parts' Touched. Divided by its bound, what one record adds
// to the release has an L2 norm of at most sqrt(K), so noise of z times these scales makes the
// release the Gaussian mechanism with noise multiplier z: every value has the same noise
// relative to what one record can add to it.
func NoiseScales(parts ...RecordBound) []float64 {
	touched, n := 0, 0
	for _, p := range parts {
		touched += p.Touched
		n += len(p.Bounds)
	}
	k := math.Sqrt(float64(max(touched, 1)))
	out := make([]float64, 0, n)
	for _, p := range parts {
		for _, b := range p.Bounds {
			out = append(out, b*k)
		}
	}
	return out
}

// Clamped returns the sums with what noise can make impossible undone: negative counts and sums
// are raised to 0, and Positives and Correct lowered to at most N. A differentially private
// release may be post-processed freely, and its metrics read better from counts that could be
// real.
func (e EvalSums) Clamped() EvalSums {
	out := NewEvalSums(e.Bins)
	out.N = max(e.N, 0)
	out.Positives = min(max(e.Positives, 0), out.N)
	out.LogLossSum = max(e.LogLossSum, 0)
	out.BrierSum = max(e.BrierSum, 0)
	out.Correct = min(max(e.Correct, 0), out.N)
	for b := range min(len(e.PosHist), len(out.PosHist)) {
		out.PosHist[b] = max(e.PosHist[b], 0)
	}
	for b := range min(len(e.NegHist), len(out.NegHist)) {
		out.NegHist[b] = max(e.NegHist[b], 0)
	}
	return out
}

// AUCNoiseStd estimates the standard deviation that independent noise of standard deviation
// binStd on every histogram count gives the histogram AUC, to first order (the delta method
// around these histograms): sqrt(sum over counts of (dAUC/dcount)^2) * binStd. It is what a
// reader of a noised AUC needs next to AUCErrorBound, which covers the binning only. NaN when a
// class is absent.
func (e EvalSums) AUCNoiseStd(binStd float64) float64 {
	bins := min(len(e.PosHist), len(e.NegHist))
	var positives, negatives, wins float64
	for b := range bins {
		wins += e.PosHist[b]*negatives + 0.5*e.PosHist[b]*e.NegHist[b]
		positives += e.PosHist[b]
		negatives += e.NegHist[b]
	}
	if !(positives > 0) || !(negatives > 0) {
		return math.NaN()
	}
	pn := positives * negatives
	auc := wins / pn
	var below, sq float64 // below: negatives in the bins under b
	above := positives    // positives in the bins over b, once b's own are taken out
	for b := range bins {
		above -= e.PosHist[b]
		dPos := (below+0.5*e.NegHist[b])/pn - auc/positives
		dNeg := (above+0.5*e.PosHist[b])/pn - auc/negatives
		sq += dPos*dPos + dNeg*dNeg
		below += e.NegHist[b]
	}
	return math.Sqrt(sq) * binStd
}
