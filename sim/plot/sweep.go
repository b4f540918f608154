package plot

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
)

// NoneValue is the swept value that means "unset" (for epsilon: no differential privacy). It
// is drawn as a dashed horizontal line across the numeric values instead of a point.
const NoneValue = "none"

// SweepPoint is one configuration of a sweep.
type SweepPoint struct {
	// Values are the swept settings, key to value as written in the grid.
	Values map[string]string
	// Metrics are the configuration's numeric results (auc, log_loss, ...); a key whose last
	// dotted part is delta gives the delta of an epsilon axis.
	Metrics map[string]float64
}

// Sweep writes <metric>_by_<key>.png and .svg into dir: metric against the value of key, one
// line per combination of the other swept keys' values (one line when key is the only one).
// Numeric values go on a numeric axis (logarithmic when they are positive and span a factor
// of 8 or more),
// others are categories in the order they first appear; the value none of a numeric key is a
// dashed line. It returns the paths written.
func Sweep(points []SweepPoint, key, metric, dir string) ([]string, error) {
	if len(points) == 0 {
		return nil, fmt.Errorf("plot sweep: %w", ErrNoData)
	}
	// The x values in the order they first appear, and the series likewise.
	var xs, series []string
	others := otherKeys(points, key)
	type cell struct{ x, series string }
	ys := map[cell]float64{}
	for _, pt := range points {
		x, ok := pt.Values[key]
		if !ok {
			return nil, fmt.Errorf("plot sweep: %q is not a swept key", key)
		}
		y, ok := pt.Metrics[metric]
		if !ok || math.IsNaN(y) || math.IsInf(y, 0) {
			continue
		}
		s := seriesName(pt, others)
		if !slices.Contains(xs, x) {
			xs = append(xs, x)
		}
		if !slices.Contains(series, s) {
			series = append(series, s)
		}
		ys[cell{x, s}] = y
	}
	if len(ys) == 0 {
		return nil, fmt.Errorf("plot sweep: %w: no configuration has a finite %s", ErrNoData, metric)
	}

	numeric, position, logScale := xPositions(xs)
	p := newPlot(MetricLabel(metric)+" by "+key, KeyLabel(key, commonDelta(points)), MetricLabel(metric))
	if numeric {
		ticks := make([]gplot.Tick, 0, len(xs))
		for _, x := range xs {
			if x != NoneValue {
				ticks = append(ticks, gplot.Tick{Value: position[x], Label: x})
			}
		}
		p.X.Tick.Marker = gplot.ConstantTicks(ticks)
		if logScale {
			p.X.Label.Text += ", log scale"
		}
	} else {
		p.NominalX(xs...)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		if v, ok := position[x]; ok {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	var drawn []plotter.XYs
	for i, s := range series {
		var xys plotter.XYs
		for _, x := range xs {
			y, ok := ys[cell{x, s}]
			if ok && (x != NoneValue || !numeric) {
				xys = append(xys, plotter.XY{X: position[x], Y: y})
			}
		}
		if len(xys) > 0 {
			l, sc, err := styledLine(xys, i)
			if err != nil {
				return nil, fmt.Errorf("plot sweep: %w", err)
			}
			p.Add(l, sc)
			drawn = append(drawn, xys)
			if s != "" {
				p.Legend.Add(s, l, sc)
			}
		}
		if y, ok := ys[cell{NoneValue, s}]; ok && numeric {
			l, err := hline(lo, hi, y, plotutil.Color(i))
			if err != nil {
				return nil, fmt.Errorf("plot sweep: %w", err)
			}
			p.Add(l)
			drawn = append(drawn, plotter.XYs{{X: lo, Y: y}, {X: hi, Y: y}})
			name := key + "=none"
			if s != "" {
				name = s + ", " + name
			}
			p.Legend.Add(name, l)
		}
	}
	if !numeric {
		p.X.Min, p.X.Max = -0.5, float64(len(xs))-0.5
	}
	placeLegend(p, drawn)
	return save(p, dir, fileSafe(metric)+"_by_"+fileSafe(key))
}

// otherKeys are the swept keys other than key, sorted.
func otherKeys(points []SweepPoint, key string) []string {
	seen := map[string]bool{}
	for _, pt := range points {
		for k := range pt.Values {
			if k != key {
				seen[k] = true
			}
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// seriesName is "k=v, k2=w" over the other keys.
func seriesName(pt SweepPoint, others []string) string {
	parts := make([]string, 0, len(others))
	for _, k := range others {
		parts = append(parts, k+"="+pt.Values[k])
	}
	return strings.Join(parts, ", ")
}

// xPositions places the x values: numerically when every value but none parses as a number
// (and there is at least one), otherwise at 0, 1, 2, ... in order.
func xPositions(xs []string) (numeric bool, pos map[string]float64, logScale bool) {
	pos = map[string]float64{}
	numeric = true
	count := 0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		if x == NoneValue {
			continue
		}
		v, err := strconv.ParseFloat(x, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			numeric = false
			break
		}
		pos[x] = v
		lo, hi = min(lo, v), max(hi, v)
		count++
	}
	if !numeric || count == 0 {
		pos = map[string]float64{}
		for i, x := range xs {
			pos[x] = float64(i)
		}
		return false, pos, false
	}
	logScale = count >= 2 && lo > 0 && hi/lo >= 8
	if logScale {
		// A logarithmic axis drawn as log10 on a linear one: gonum's LogScale centres the
		// axis label by the arithmetic mean and squeezes the figure.
		for x, v := range pos {
			pos[x] = math.Log10(v)
		}
	}
	return true, pos, logScale
}

// commonDelta is the value every point gives for a metric named delta (or ending in .delta),
// or 0 when they differ or there is none.
func commonDelta(points []SweepPoint) float64 {
	delta := 0.0
	for _, pt := range points {
		for k, v := range pt.Metrics {
			if k != "delta" && !strings.HasSuffix(k, ".delta") || !(v > 0) {
				continue
			}
			if delta != 0 && delta != v {
				return 0
			}
			delta = v
		}
	}
	return delta
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._=-]+`)

// fileSafe replaces characters that do not belong in a file name.
func fileSafe(s string) string { return unsafeChars.ReplaceAllString(s, "_") }
