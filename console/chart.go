package console

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// chart is a small line chart drawn on the server as SVG: one series of points, a grid, tick
// labels and a text summary for screen readers. Every chart stands beside a table of its
// figures, so nothing is shown by the line alone.
type chart struct {
	ID, Title, Summary, Note, XLabel       string
	W, H                                   int
	Left, Right, Top, Bottom, PlotW, PlotH string
	MidX, TickX, TickY                     string
	Points                                 string
	Dots                                   []dot
	XTicks, YTicks                         []tick
	Diagonal                               bool
}

type dot struct{ X, Y, Label string }

type tick struct{ Pos, Label string }

// chartSpec is what a chart is drawn from.
type chartSpec struct {
	id, title, xLabel, note string
	xs, ys                  []float64
	// xMin..xMax and yMin..yMax fix the axes; a NaN bound is taken from the data.
	xMin, xMax, yMin, yMax float64
	// xInt labels the x axis with integers (rounds).
	xInt     bool
	diagonal bool
	yPrec    int
}

const (
	chartW, chartH                       = 340, 200
	padLeft, padRight, padTop, padBottom = 48, 12, 10, 34
)

func px(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// drawChart lays out spec's points; points with an undefined y are left out.
func drawChart(spec chartSpec) chart {
	var xs, ys []float64
	for i := range spec.xs {
		if i < len(spec.ys) && !math.IsNaN(spec.ys[i]) && !math.IsInf(spec.ys[i], 0) {
			xs, ys = append(xs, spec.xs[i]), append(ys, spec.ys[i])
		}
	}
	lo, hi := bounds(xs)
	xMin, xMax := pick(spec.xMin, lo), pick(spec.xMax, hi)
	lo, hi = bounds(ys)
	yMin, yMax := pick(spec.yMin, lo), pick(spec.yMax, hi)
	if math.IsNaN(spec.yMin) && math.IsNaN(spec.yMax) && len(ys) > 0 {
		pad := (yMax - yMin) * 0.15
		if pad == 0 {
			pad = math.Max(math.Abs(yMax)*0.05, 0.01)
		}
		yMin, yMax = yMin-pad, yMax+pad
	}
	if xMax <= xMin {
		xMax = xMin + 1
	}
	if yMax <= yMin {
		yMax = yMin + 1
	}
	left, right := float64(padLeft), float64(chartW-padRight)
	top, bottom := float64(padTop), float64(chartH-padBottom)
	sx := func(x float64) float64 { return left + (x-xMin)/(xMax-xMin)*(right-left) }
	sy := func(y float64) float64 { return bottom - (y-yMin)/(yMax-yMin)*(bottom-top) }
	c := chart{ID: spec.id, Title: spec.title, Note: spec.note, XLabel: spec.xLabel, W: chartW, H: chartH,
		Left: px(left), Right: px(right), Top: px(top), Bottom: px(bottom), PlotW: px(right - left), PlotH: px(bottom - top),
		MidX: px((left + right) / 2), TickX: px(left - 6), TickY: px(bottom + 14), Diagonal: spec.diagonal}
	var pts, said []string
	prec := spec.yPrec
	if prec == 0 {
		prec = 3
	}
	for i := range xs {
		x, y := sx(xs[i]), sy(ys[i])
		pts = append(pts, px(x)+","+px(y))
		xl := strconv.FormatFloat(xs[i], 'f', -1, 64)
		if !spec.xInt {
			xl = fmtNum(xs[i], 2)
		}
		label := fmt.Sprintf("%s %s: %s", spec.xLabel, xl, fmtNum(ys[i], prec))
		c.Dots = append(c.Dots, dot{X: px(x), Y: px(y), Label: label})
		said = append(said, label)
	}
	if len(pts) > 1 {
		c.Points = strings.Join(pts, " ")
	}
	for i := 0; i <= 4; i++ {
		v := yMin + (yMax-yMin)*float64(i)/4
		c.YTicks = append(c.YTicks, tick{Pos: px(sy(v)), Label: fmtNum(v, prec)})
	}
	if spec.xInt {
		step := math.Max(1, math.Ceil((xMax-xMin)/6))
		for v := math.Ceil(xMin); v <= xMax; v += step {
			c.XTicks = append(c.XTicks, tick{Pos: px(sx(v)), Label: strconv.FormatFloat(v, 'f', 0, 64)})
		}
	} else {
		for i := 0; i <= 4; i++ {
			v := xMin + (xMax-xMin)*float64(i)/4
			c.XTicks = append(c.XTicks, tick{Pos: px(sx(v)), Label: fmtNum(v, 2)})
		}
	}
	c.Summary = "no data"
	if len(said) > 0 {
		c.Summary = strings.Join(said, "; ")
	}
	return c
}

func bounds(v []float64) (lo, hi float64) {
	if len(v) == 0 {
		return 0, 1
	}
	lo, hi = v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

func pick(fixed, data float64) float64 {
	if math.IsNaN(fixed) {
		return data
	}
	return fixed
}
