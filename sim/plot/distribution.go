package plot

import (
	"fmt"
	"image/color"
	"math"
	"slices"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Distribution writes personalization.png and .svg into dir: the per-client test AUC of the
// global model and of the personalized models, as box plots (Tukey: box from the first to the
// third quartile, median line, whiskers to the furthest value within 1.5 interquartile
// ranges) with every client as a point beside its box. Clients with an undefined AUC (NaN:
// held-out rows of one class) are left out and the counts say how many remain. It returns the
// paths written.
func Distribution(global, personalized []float64, dir string) ([]string, error) {
	groups := []struct {
		name   string
		values plotter.Values
	}{
		{"global model", finite(global)},
		{"personalized (fine-tuned locally)", finite(personalized)},
	}
	if len(groups[0].values) == 0 && len(groups[1].values) == 0 {
		return nil, fmt.Errorf("plot personalization: %w: no client has a defined AUC", ErrNoData)
	}
	p := newPlot("Per-client test AUC: global vs personalized model", "model",
		"AUC per client (ROC, the client's held-out rows)")
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = fmt.Sprintf("%s\n%d clients, median %s", g.name, len(g.values), median(g.values))
		if len(g.values) == 0 {
			continue
		}
		box, err := plotter.NewBoxPlot(vg.Points(40), float64(i), g.values)
		if err != nil {
			return nil, fmt.Errorf("plot personalization: %w", err)
		}
		box.FillColor = lighten(plotutil.Color(i))
		p.Add(box)
		// Every client as a point to the right of its box, spread sideways so that equal
		// values stay visible (a fixed pattern, not random: the figure repeats).
		pts := make(plotter.XYs, len(g.values))
		for k, v := range g.values {
			pts[k] = plotter.XY{X: float64(i) + 0.22 + 0.12*float64(k%7)/6, Y: v}
		}
		s, err := plotter.NewScatter(pts)
		if err != nil {
			return nil, fmt.Errorf("plot personalization: %w", err)
		}
		s.Color = plotutil.Color(i)
		s.Radius = vg.Points(1.5)
		p.Add(s)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(groups))-0.5
	return save(p, dir, "personalization")
}

// median formats the median of xs, or "n/a".
func median(xs plotter.Values) string {
	if len(xs) == 0 {
		return "n/a"
	}
	s := slices.Clone([]float64(xs))
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%.3f", m)
}

// lighten mixes c with white for a box fill.
func lighten(c color.Color) color.Color {
	r, g, b, _ := c.RGBA()
	mix := func(v uint32) uint8 { return uint8(math.Round(float64(v>>8)*0.3 + 255*0.7)) }
	return color.RGBA{R: mix(r), G: mix(g), B: mix(b), A: 255}
}
