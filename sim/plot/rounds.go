package plot

import (
	"fmt"
	"math"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
)

// Round is one committed round's metrics.
type Round struct {
	Round int
	// AUC and LogLoss are computed exactly on the pooled test rows.
	AUC, LogLoss float64
	// FederatedAUC and FederatedLogLoss are the coordinator's federated evaluation from the
	// clients' sums; NaN for a round evaluated only centrally.
	FederatedAUC, FederatedLogLoss float64
}

// Reference is a horizontal reference line on the per-round plots, such as the centralized
// fit on the pooled training rows.
type Reference struct {
	Label        string
	AUC, LogLoss float64
}

// Rounds writes auc.png, auc.svg, log_loss.png and log_loss.svg into dir: the metric per
// round on the test rows, the federated evaluation beside it when there is one, and ref (may
// be nil) as a dashed line. It returns the paths written.
func Rounds(rounds []Round, ref *Reference, dir string) ([]string, error) {
	if len(rounds) == 0 {
		return nil, fmt.Errorf("plot rounds: %w", ErrNoData)
	}
	type metric struct {
		file, title, y  string
		test, federated func(Round) float64
		ref             func(Reference) float64
	}
	metrics := []metric{
		{"auc", "Test AUC per round", MetricLabel("auc"),
			func(r Round) float64 { return r.AUC }, func(r Round) float64 { return r.FederatedAUC },
			func(r Reference) float64 { return r.AUC }},
		{"log_loss", "Test log loss per round", MetricLabel("log_loss"),
			func(r Round) float64 { return r.LogLoss }, func(r Round) float64 { return r.FederatedLogLoss },
			func(r Reference) float64 { return r.LogLoss }},
	}
	var written []string
	for _, m := range metrics {
		p := newPlot(m.title, "round", m.y)
		p.X.Tick.Marker = integerTicks{}
		var test, fed plotter.XYs
		for _, r := range rounds {
			if v := m.test(r); !math.IsNaN(v) && !math.IsInf(v, 0) {
				test = append(test, plotter.XY{X: float64(r.Round), Y: v})
			}
			if v := m.federated(r); !math.IsNaN(v) && !math.IsInf(v, 0) {
				fed = append(fed, plotter.XY{X: float64(r.Round), Y: v})
			}
		}
		if len(test) == 0 {
			return written, fmt.Errorf("plot %s: %w: no finite values", m.file, ErrNoData)
		}
		drawn := []plotter.XYs{test, fed}
		if err := addSeries(p, test, 0, "pooled test rows (exact)"); err != nil {
			return written, err
		}
		if len(fed) > 0 {
			if err := addSeries(p, fed, 1, "federated evaluation (clients' sums)"); err != nil {
				return written, err
			}
		}
		if ref != nil {
			if v := m.ref(*ref); !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi := float64(rounds[0].Round), float64(rounds[len(rounds)-1].Round)
				l, err := hline(lo, hi, v, plotutil.Color(2))
				if err != nil {
					return written, fmt.Errorf("plot %s: %w", m.file, err)
				}
				p.Add(l)
				p.Legend.Add(ref.Label, l)
				drawn = append(drawn, plotter.XYs{{X: lo, Y: v}, {X: hi, Y: v}})
			}
		}
		placeLegend(p, drawn)
		files, err := save(p, dir, m.file)
		written = append(written, files...)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// addSeries adds a line with points in style i and a legend entry.
func addSeries(p *gplot.Plot, xys plotter.XYs, i int, label string) error {
	l, s, err := styledLine(xys, i)
	if err != nil {
		return fmt.Errorf("plot %q: %w", label, err)
	}
	p.Add(l, s)
	p.Legend.Add(label, l, s)
	return nil
}
