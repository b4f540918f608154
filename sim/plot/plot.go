// Package plot draws the simulator's figures with gonum/plot, each as PNG and SVG: AUC and
// log loss per round (Rounds), a metric against a swept parameter (Sweep), and the per-client
// distribution of global and personalized AUC (Distribution). Every axis is labelled, with
// its unit where it has one.
//
// The package knows nothing of the simulator's types: callers convert to the plain structs
// here, so the simulator does not depend on plotting.
package plot

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// ErrNoData is returned when there is nothing to draw.
var ErrNoData = errors.New("nothing to plot")

// Figure size and raster resolution.
const (
	width  = 7 * vg.Inch
	height = 4.5 * vg.Inch
	dpi    = 120
)

// newPlot is a plot with a title and labelled axes.
func newPlot(title, x, y string) *gplot.Plot {
	p := gplot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.X.Label.TextStyle.Font.Size = vg.Points(11)
	p.Y.Label.TextStyle.Font.Size = vg.Points(11)
	p.X.Tick.Label.Font.Size = vg.Points(10)
	p.Y.Tick.Label.Font.Size = vg.Points(10)
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	p.Add(plotter.NewGrid())
	return p
}

// save writes p as dir/base.png and dir/base.svg and returns the two paths.
func save(p *gplot.Plot, dir, base string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plot %s: %w", base, err)
	}
	padRanges(p)
	pngPath := filepath.Join(dir, base+".png")
	c := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(color.White))
	p.Draw(withMargin(draw.New(c)))
	if err := writeFile(pngPath, vgimg.PngCanvas{Canvas: c}); err != nil {
		return nil, err
	}
	svgPath := filepath.Join(dir, base+".svg")
	sc := vgsvg.New(width, height)
	p.Draw(withMargin(draw.New(sc)))
	if err := writeFile(svgPath, sc); err != nil {
		return nil, err
	}
	return []string{pngPath, svgPath}, nil
}

// withMargin leaves a margin around the figure so that nothing touches its edges.
func withMargin(c draw.Canvas) draw.Canvas {
	m := vg.Points(10)
	return draw.Crop(c, m, -m, m, -m)
}

// padRanges widens the axes a little beyond the data, so that lines at the extremes stay
// clear of the frame. A nominal axis (ticks at 0, 1, ...) gets half a category each side.
func padRanges(p *gplot.Plot) {
	pad := func(a *gplot.Axis, lo, hi float64) {
		if _, isLog := a.Scale.(gplot.LogScale); isLog && a.Min > 0 {
			a.Min, a.Max = a.Min/math.Pow(a.Max/a.Min, lo), a.Max*math.Pow(a.Max/a.Min, hi)
			return
		}
		span := a.Max - a.Min
		if span == 0 {
			span = math.Max(math.Abs(a.Max), 1)
		}
		a.Min, a.Max = a.Min-lo*span, a.Max+hi*span
	}
	pad(&p.X, 0.03, 0.03)
	pad(&p.Y, 0.05, 0.08)
}

func writeFile(path string, c io.WriterTo) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if _, err := c.WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// styledLine is a line with points in the i-th colour and dash pattern.
func styledLine(xys plotter.XYs, i int) (*plotter.Line, *plotter.Scatter, error) {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, nil, err
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.5)
	l.Dashes = plotutil.Dashes(i)
	s.Color = plotutil.Color(i)
	s.Shape = plotutil.Shape(i)
	s.Radius = vg.Points(2.5)
	return l, s, nil
}

// hline is a dashed horizontal reference line at y from x0 to x1.
func hline(x0, x1, y float64, c color.Color) (*plotter.Line, error) {
	l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: y}, {X: x1, Y: y}})
	if err != nil {
		return nil, err
	}
	l.Color = c
	l.Width = vg.Points(1.2)
	l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	return l, nil
}

// placeLegend puts the legend in the corner of the figure that the drawn lines cross least,
// preferring the right-hand corners.
func placeLegend(p *gplot.Plot, lines []plotter.XYs) {
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, pt := range l {
			xlo, xhi, ylo, yhi = min(xlo, pt.X), max(xhi, pt.X), min(ylo, pt.Y), max(yhi, pt.Y)
		}
	}
	norm := func(v, lo, hi float64) float64 {
		if hi == lo {
			return 0.5
		}
		return (v - lo) / (hi - lo)
	}
	// Corners in order of preference: top right, bottom right, top left, bottom left.
	corners := []struct{ top, left bool }{{true, false}, {false, false}, {true, true}, {false, true}}
	counts := make([]int, len(corners))
	visit := func(x, y float64) {
		nx, ny := norm(x, xlo, xhi), norm(y, ylo, yhi)
		for i, c := range corners {
			inX := (c.left && nx < 0.45) || (!c.left && nx > 0.55)
			inY := (c.top && ny > 0.6) || (!c.top && ny < 0.4)
			if inX && inY {
				counts[i]++
			}
		}
	}
	for _, l := range lines {
		for k, pt := range l {
			visit(pt.X, pt.Y)
			if k+1 < len(l) {
				next := l[k+1]
				for s := 1; s < 10; s++ {
					f := float64(s) / 10
					visit(pt.X+f*(next.X-pt.X), pt.Y+f*(next.Y-pt.Y))
				}
			}
		}
	}
	best := 0
	for i := range corners {
		if counts[i] < counts[best] {
			best = i
		}
	}
	p.Legend.Top, p.Legend.Left = corners[best].top, corners[best].left
	if p.Legend.Left {
		p.Legend.XOffs = vg.Points(8)
	} else {
		p.Legend.XOffs = -vg.Points(8)
	}
}

// integerTicks marks whole numbers only, about eight of them: rounds have no fractions.
type integerTicks struct{}

// Ticks implements gplot.Ticker.
func (integerTicks) Ticks(lo, hi float64) []gplot.Tick {
	first, last := math.Ceil(lo), math.Floor(hi)
	if last < first {
		return nil
	}
	step := niceStep((last - first) / 8)
	var ticks []gplot.Tick
	for v := math.Ceil(first/step) * step; v <= last; v += step {
		ticks = append(ticks, gplot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', 0, 64)})
	}
	return ticks
}

// niceStep is the smallest of 1, 2, 5, 10, 20, 50, ... at least x (and at least 1).
func niceStep(x float64) float64 {
	if x <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// MetricLabel is the axis label of a metric, with its unit and what it is computed on.
func MetricLabel(metric string) string {
	switch metric {
	case "auc":
		return "AUC (ROC, test rows)"
	case "log_loss":
		return "log loss (nats, test rows)"
	case "accuracy":
		return "accuracy (threshold 0.5, test rows)"
	case "brier":
		return "Brier score (test rows)"
	case "centralized_auc":
		return "centralized AUC (ROC, test rows)"
	case "wall_seconds":
		return "wall time (s)"
	case "rounds":
		return "rounds completed"
	}
	if strings.HasSuffix(metric, "_seconds") {
		return strings.ReplaceAll(strings.TrimSuffix(metric, "_seconds"), "_", " ") + " (s)"
	}
	if strings.HasSuffix(metric, "epsilon") {
		return "epsilon spent (" + metric + ")"
	}
	return metric
}

// KeyLabel is the axis label of a swept config key, with its unit. delta, when positive, is
// the delta an epsilon is stated at.
func KeyLabel(key string, delta float64) string {
	last := key[strings.LastIndex(key, ".")+1:]
	switch {
	case key == "data.partition.alpha":
		return "Dirichlet alpha (data.partition.alpha, lower = more label skew)"
	case last == "epsilon" && delta > 0:
		return "epsilon at delta=" + strconv.FormatFloat(delta, 'g', -1, 64) + " (" + key + ")"
	case last == "epsilon":
		return "epsilon (" + key + ")"
	case last == "rounds":
		return "rounds (" + key + ")"
	case last == "epochs":
		return "local epochs per round (" + key + ")"
	case last == "batch_size":
		return "batch size (records, " + key + ")"
	case last == "learning_rate":
		return "learning rate (" + key + ")"
	case last == "noise_multiplier":
		return "noise multiplier z (noise std / clip norm, " + key + ")"
	case last == "clip_norm":
		return "clip norm C (L2, " + key + ")"
	case last == "sampling_rate":
		return "sampling rate q (" + key + ")"
	case last == "clients" || last == "branches":
		return "clients (" + key + ")"
	case last == "customers_per_branch":
		return "customers per branch (" + key + ")"
	case strings.HasSuffix(last, "fraction"):
		return "fraction (" + key + ")"
	}
	return key
}

// finite drops NaN and infinite values.
func finite(xs []float64) plotter.Values {
	out := make(plotter.Values, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}
