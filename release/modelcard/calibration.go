package modelcard

import (
	"fmt"
	"math"

	"github.com/fedprop/fedprop/metrics"
)

// CalibrationBin is one score band of the calibration table.
type CalibrationBin struct {
	// Lower and Upper bound the band's scores: Lower <= score < Upper (the last band includes 1).
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	// N is the number of rows in the band, Positives of them positive.
	N         float64 `json:"n"`
	Positives float64 `json:"positives"`
	// MeanPredicted is the band's mean score, ObservedRate its share of positive rows.
	MeanPredicted float64 `json:"mean_predicted"`
	ObservedRate  float64 `json:"observed_rate"`
}

// Calibration derives a calibration table of about bins equal-count score bands from the score
// histograms of federated evaluation sums, so it needs no sums beyond the ones evaluation
// already returns. Band edges fall on histogram-bin edges: a band closes once it holds at least
// its share of the rows, so bands hold about N/bins rows each (fewer bands when scores crowd into
// few histogram bins). A band's mean score is computed from its histogram bins' midpoints, which
// is within half a histogram bin (1/(2*e.Bins)) of the exact mean. Empty sums give no bands.
func Calibration(e metrics.EvalSums, bins int) ([]CalibrationBin, error) {
	if bins < 1 {
		return nil, fmt.Errorf("%w: %d calibration bins", ErrInvalid, bins)
	}
	if e.Bins < 1 || len(e.PosHist) != e.Bins || len(e.NegHist) != e.Bins {
		return nil, fmt.Errorf("%w: evaluation histograms do not match their %d bins", ErrInvalid, e.Bins)
	}
	total := 0.0
	for b := range e.Bins {
		total += e.PosHist[b] + e.NegHist[b]
	}
	if !(total > 0) || math.IsInf(total, 0) {
		return nil, nil
	}
	width := 1 / float64(e.Bins)
	var out []CalibrationBin
	var cur CalibrationBin
	var scoreSum, seen float64
	open := false
	for b := range e.Bins {
		n := e.PosHist[b] + e.NegHist[b]
		if !open {
			cur = CalibrationBin{Lower: float64(b) * width}
			scoreSum, open = 0, true
		}
		cur.N += n
		cur.Positives += e.PosHist[b]
		scoreSum += n * (float64(b) + 0.5) * width
		seen += n
		// Close the band when the rows so far reach the next multiple of total/bins.
		if seen >= total*float64(len(out)+1)/float64(bins)-1e-9 || b == e.Bins-1 {
			cur.Upper = float64(b+1) * width
			if cur.N > 0 {
				cur.MeanPredicted = scoreSum / cur.N
				cur.ObservedRate = cur.Positives / cur.N
				out = append(out, cur)
			} else if len(out) > 0 {
				out[len(out)-1].Upper = cur.Upper // an empty tail joins the band before it
			}
			open = false
		}
	}
	return out, nil
}

// expectedCalibrationError is the row-weighted mean of |MeanPredicted - ObservedRate|.
func expectedCalibrationError(bins []CalibrationBin) float64 {
	var n, sum float64
	for _, b := range bins {
		n += b.N
		sum += b.N * math.Abs(b.MeanPredicted-b.ObservedRate)
	}
	if n == 0 {
		return 0
	}
	return sum / n
}
