package gbdt

import (
	"fmt"
	"math"

	"github.com/fedprop/fedprop/dataset"
)

// The sketch grid. Every numeric feature is counted on the same fixed grid over its
// standardised value z = (x-mean)/std, so that clients' counts add up cell by cell. The cells
// are even in asinh(z): about 0.01 standard deviations wide near the mean, where most rows of
// most features lie, 0.1 wide at 10 standard deviations and 0.6 at ±GridLimit, beyond which
// values count in the end cells. A grid even in z would have to choose
// between resolution in the bulk and reach into the tails of skewed features (balances,
// counts of contacts), where quantile cut points are needed as well.
const (
	// GridCells is the number of cells per numeric feature.
	GridCells = 1024
	// GridLimit is the standardised value at which the outer cells are clamped.
	GridLimit = 64.0
)

// gridSpan is asinh(GridLimit): the grid is even over [-gridSpan, gridSpan] in asinh(z).
var gridSpan = math.Asinh(GridLimit)

// GridEdge returns the lower edge of cell k (0 <= k <= GridCells; edge GridCells is the upper
// edge of the last cell). Edge GridCells/2 is exactly 0.
func GridEdge(k int) float64 {
	return math.Sinh(gridSpan * (2*float64(k)/GridCells - 1))
}

// gridCell returns the cell that counts a standardised value: the cell whose edges hold it
// (up to rounding at an edge, which moves a count to a neighbouring cell and is harmless), and
// the end cells for values beyond the grid.
func gridCell(z float64) int {
	u := (math.Asinh(z)/gridSpan + 1) * (GridCells / 2)
	switch {
	case !(u >= 0): // NaN never gets here, but must not index out of range if it did
		return 0
	case u >= GridCells:
		return GridCells - 1
	}
	return int(u)
}

// standardize is the one place a raw value becomes a standardised one, so that binning,
// sketching and scoring agree to the last bit.
func standardize(x, mean, std float64) float64 { return (x - mean) / std }

// checkStandardization reports whether std fits the schema's numeric features with finite
// means and positive finite scales.
func checkStandardization(s *dataset.Schema, std dataset.Standardization) error {
	n := len(s.Numeric)
	if len(std.Mean) != n || len(std.Std) != n {
		return fmt.Errorf("%w: standardization has %d means and %d stds for %d numeric features", ErrData, len(std.Mean), len(std.Std), n)
	}
	for i := range n {
		m, sd := std.Mean[i], std.Std[i]
		if math.IsNaN(m) || math.IsInf(m, 0) || !(sd > 0) || math.IsInf(sd, 0) {
			return fmt.Errorf("%w: feature %q has mean %v and std %v; want finite values and std > 0", ErrData, s.Numeric[i], m, sd)
		}
	}
	return nil
}

// SketchLen returns the length of a sketch vector for numeric features.
func SketchLen(numeric int) int { return numeric * GridCells }

// SketchCounts returns a client's sketch: for numeric feature i (schema order) and grid cell
// c, the number of its rows whose standardised value falls in c, at index i*GridCells + c.
// Missing values (NaN) are not counted: they have a bin of their own. Its length is
// SketchLen(len(schema.Numeric)); clients' sketches add up.
func SketchCounts(d *dataset.Dataset, std dataset.Standardization) ([]float64, error) {
	if d.Schema == nil {
		return nil, fmt.Errorf("%w: dataset %s has no schema", ErrData, d.Source)
	}
	if err := checkStandardization(d.Schema, std); err != nil {
		return nil, err
	}
	counts := make([]float64, SketchLen(len(std.Mean)))
	for _, row := range d.Numeric {
		for i, x := range row {
			if !math.IsNaN(x) {
				counts[i*GridCells+gridCell(standardize(x, std.Mean[i], std.Std[i]))]++
			}
		}
	}
	return counts, nil
}

// Edges derives each numeric feature's cut points from the summed sketch: at most bins-1
// upper cell edges, strictly increasing, chosen greedily from the lowest cell up so that each
// bin holds an equal share of the rows not yet binned (the rows above the last cut over the
// bins still to place, as LightGBM's GreedyFindBin). A cell holding more than its share gets a
// bin of its own and the bins above share the rest, so a feature with few distinct values gets
// one bin per value, and no cut has every row, or no row, on one side. Negative counts (noise
// added for differential privacy) count as zero. The result depends on the vector alone; the
// coordinator computes it once and sends it with the layout, so no client recomputes it on
// other hardware.
func Edges(sum []float64, numeric, bins int) ([][]float64, error) {
	if numeric < 0 || len(sum) != SketchLen(numeric) {
		return nil, fmt.Errorf("%w: sketch of length %d, want %d for %d numeric features", ErrVector, len(sum), SketchLen(max(numeric, 0)), numeric)
	}
	if bins < MinBins || bins > MaxBins {
		return nil, &ParamError{Key: "bins", Value: bins, Want: fmt.Sprintf("an integer in [%d, %d]", MinBins, MaxBins)}
	}
	if i, ok := finite(sum); !ok {
		return nil, fmt.Errorf("%w: sketch value %d is %v", ErrVector, i, sum[i])
	}
	edges := make([][]float64, numeric)
	for f := range numeric {
		counts := sum[f*GridCells : (f+1)*GridCells]
		total := 0.0
		for _, c := range counts {
			total += max(c, 0)
		}
		cuts := []float64{}
		cum, binned := 0.0, 0.0 // rows up to this cell, and up to the last cut
		for c := 0; c < GridCells-1 && len(cuts) < bins-1; c++ {
			cum += max(counts[c], 0)
			if cum >= total {
				break
			}
			if cum > binned && cum-binned >= (total-binned)/float64(bins-len(cuts)) {
				cuts = append(cuts, GridEdge(c+1))
				binned = cum
			}
		}
		edges[f] = cuts
	}
	return edges, nil
}

// LabelSumsLen is the length of a LabelSums vector.
const LabelSumsLen = 2

// LabelSums returns a client's [rows, positive rows], the sums behind BaseScore. Labels must
// be 0 or 1.
func LabelSums(d *dataset.Dataset) ([]float64, error) {
	if err := checkLabels(d.Label); err != nil {
		return nil, fmt.Errorf("%s: %w", d.Source, err)
	}
	return []float64{float64(d.Len()), float64(d.Positives())}, nil
}

func checkLabels(labels []float64) error {
	for i, y := range labels {
		if y != 0 && y != 1 {
			return fmt.Errorf("%w: row %d has label %v, want 0 or 1", ErrData, i, y)
		}
	}
	return nil
}

// baseRateClamp keeps the base score finite when every row has one label.
const baseRateClamp = 1e-6

// BaseScore returns the model's starting margin from summed LabelSums: the log-odds of the
// positive rate, clamped to [1e-6, 1-1e-6] so that it is finite when every row has one label
// (and when noise pushes the rate out of [0, 1]).
func BaseScore(sum []float64) (float64, error) {
	if len(sum) != LabelSumsLen {
		return 0, fmt.Errorf("%w: label sums of length %d, want %d", ErrVector, len(sum), LabelSumsLen)
	}
	if i, ok := finite(sum); !ok {
		return 0, fmt.Errorf("%w: label sum %d is %v", ErrVector, i, sum[i])
	}
	if !(sum[0] > 0) {
		return 0, fmt.Errorf("%w: no rows (count %v)", ErrVector, sum[0])
	}
	p := min(max(sum[1]/sum[0], baseRateClamp), 1-baseRateClamp)
	return math.Log(p / (1 - p)), nil
}
