package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/internal/confcheck"
	"github.com/fedprop/fedprop/sim"
	"github.com/fedprop/fedprop/sim/plot"
)

func newSimSweepCmd(g *globals) *cobra.Command {
	var (
		configPath, outDir, xKey string
		gridSpecs                []string
		plotMetrics              []string
		parallel                 int
	)
	cmd := &cobra.Command{
		Use:   "sweep",
		Short: "Simulate every configuration of a grid of config values and tabulate the results",
		Long: `Runs the simulation config once per point of the grid's cartesian product, several
configurations at once (at most one per core; each run then trains its clients on its share of
the cores), and writes:

  DIR/sweep.csv                 one row per configuration, in grid order: the swept keys, then
                                auc, log_loss, accuracy, brier, centralized_auc, rounds,
                                wall_seconds, every other figure of the run's summary.json
                                (privacy figures included), and error
  DIR/<metric>_by_<key>.png/svg the metric against the swept key (--x), a line per value of
                                the other swept keys
  DIR/<index>-<key=value...>/   each configuration's metrics.csv, summary.json and per-round
                                plots (auc, log_loss)

The grid is 'key=v1,v2;key2=w1,w2': keys are dotted paths of the simulation config
(data.partition.alpha, run.rounds, run.strategy.name, run.privacy.epsilon, ...), values are
YAML scalars. The value none sets a key to null: the field's zero value, so whatever the config
means by an unset key. Every configuration is checked before any runs; an unknown key is an
error that names it. Each run is seeded by its config, so a sweep repeats exactly.`,
		Example: `  fedprop sim sweep --config configs/sim-bank.yaml --grid 'data.partition.alpha=0.1,0.5,1,10' --out out/alpha
  fedprop sim sweep --config configs/sim-bank-dp.yaml --grid 'run.privacy.epsilon=0.5,1,2,4,8,none' --out out/epsilon`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case configPath == "":
				return usagef("--config is required")
			case len(gridSpecs) == 0:
				return usagef("--grid is required")
			case outDir == "":
				return usagef("--out is required")
			}
			raw, err := os.ReadFile(configPath)
			if err != nil {
				return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
			}
			// --grid may be given more than once: its parts are one grid (a repeated flag once
			// kept only the last part, silently).
			grid, err := sim.ParseGrid(strings.Join(gridSpecs, ";"))
			if err != nil {
				return usagef("--grid: %w", err)
			}
			configs, err := sim.ExpandSweep(raw, configPath, grid)
			if errors.Is(err, sim.ErrBadGrid) {
				return usagef("--grid: %w", err)
			} else if err != nil {
				return err
			}
			for _, c := range configs {
				if err := errors.Join(confcheck.Floats("", c.Config)...); err != nil {
					return fmt.Errorf("%s: %w: %w", configPath, coordinator.ErrBadConfig, err)
				}
			}
			if xKey == "" {
				xKey = grid[0].Key
			} else if !slices.Contains(grid.Keys(), xKey) {
				return usagef("--x: %s is not a key of the grid (%s)", xKey, strings.Join(grid.Keys(), ", "))
			}
			if !cmd.Flags().Changed("log-level") && os.Getenv("FEDPROP_LOG_LEVEL") == "" {
				g.logLevel = "warn"
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(outDir, 0o755); err != nil {
				return err
			}

			total := 0
			for _, c := range configs {
				total += c.Config.Run.Rounds
			}
			bar := newProgress(g.stdout, total, "sweep rounds")
			defer bar.Close()
			fmt.Fprintf(g.stdout, "%d configurations of %s\n", len(configs), configPath)
			fmt.Fprintf(g.stdout, sweepLine, "#", "test_auc", "log_loss", "rounds", "seconds", "configuration")
			var writeErrs []error
			done := func(row sim.SweepRow) {
				if err := writeSweepRun(filepath.Join(outDir, row.DirName(len(configs))), row); err != nil {
					writeErrs = append(writeErrs, err)
				}
				bar.Print(func() { printSweepRow(g.stdout, row) })
			}
			rows, err := sim.Sweep(cmd.Context(), raw, configPath, grid, sim.SweepOptions{
				Workers:  parallel,
				Logger:   log,
				Version:  version,
				Observer: func(sim.SweepConfig) sim.Observer { return withProgress(nil, bar) },
				Done:     done,
			})
			bar.Close()
			if err != nil {
				return err
			}
			if err := errors.Join(writeErrs...); err != nil {
				return err
			}
			table, err := sim.NewSweepTable(grid.Keys(), rows)
			if err != nil {
				return err
			}
			csvPath := filepath.Join(outDir, "sweep.csv")
			if err := table.WriteCSV(csvPath); err != nil {
				return err
			}
			written := []string{csvPath}
			var points []plot.SweepPoint
			for _, p := range table.Points() {
				points = append(points, plot.SweepPoint(p))
			}
			for _, metric := range plotMetrics {
				files, err := plot.Sweep(points, xKey, metric, outDir)
				if errors.Is(err, plot.ErrNoData) {
					fmt.Fprintf(g.stderr, "fedprop: no plot of %s: %v\n", metric, err)
					continue
				} else if err != nil {
					return err
				}
				written = append(written, files...)
			}
			fmt.Fprintf(g.stdout, "\nwrote %s and a directory per configuration\n", strings.Join(written, ", "))
			failed := 0
			for _, r := range rows {
				if r.Err != nil {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("sweep: %d of %d configurations failed; see the error column of %s", failed, len(rows), csvPath)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "base simulation config (YAML)")
	cmd.Flags().StringArrayVar(&gridSpecs, "grid", nil, "grid of config values: 'key=v1,v2;key2=w1,w2' (none sets a key to null); repeatable, the parts make one grid")
	cmd.Flags().StringVar(&outDir, "out", "", "directory for sweep.csv, the plots and a directory per configuration")
	cmd.Flags().StringVar(&xKey, "x", "", "swept key on the plots' x axis (default: the grid's first key)")
	cmd.Flags().StringSliceVar(&plotMetrics, "plot", []string{"auc"}, "metrics (columns of sweep.csv) to plot against --x")
	cmd.Flags().IntVar(&parallel, "parallel", 0, "configurations run at once (default and maximum: the number of cores)")
	return cmd
}

const sweepLine = "%4s %9s %9s %6s %8s  %s\n"

func printSweepRow(w io.Writer, row sim.SweepRow) {
	if row.Err != nil {
		fmt.Fprintf(w, "%4d %s: failed: %v\n", row.Index, row.Settings, row.Err)
		return
	}
	s := row.Result.Summary
	f4 := func(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) }
	fmt.Fprintf(w, sweepLine, strconv.Itoa(row.Index), f4(s.Final.AUC), f4(s.Final.LogLoss), strconv.Itoa(s.Rounds),
		strconv.FormatFloat(s.WallSeconds, 'f', 1, 64), row.Settings)
}

// writeSweepRun writes one configuration's metrics.csv, summary.json and per-round plots.
func writeSweepRun(dir string, row sim.SweepRow) error {
	if row.Result == nil || len(row.Result.Rounds) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := sim.WriteMetricsCSV(filepath.Join(dir, "metrics.csv"), row.Result.Rounds); err != nil {
		return err
	}
	if row.Err == nil {
		if err := sim.WriteJSON(filepath.Join(dir, "summary.json"), row.Result.Summary); err != nil {
			return err
		}
	}
	_, err := writeRoundPlots(dir, row.Result)
	return err
}

// writeRoundPlots writes auc.png/svg and log_loss.png/svg per round into dir (beside
// metrics.csv), with the centralized fit as a reference line when the run has one.
func writeRoundPlots(dir string, res *sim.Result) ([]string, error) {
	if len(res.Rounds) == 0 {
		return nil, nil
	}
	rounds := make([]plot.Round, len(res.Rounds))
	for i, m := range res.Rounds {
		rounds[i] = plot.Round{Round: m.Round, AUC: m.Test.AUC, LogLoss: m.Test.LogLoss,
			FederatedAUC: math.NaN(), FederatedLogLoss: math.NaN()}
		if m.Federated != nil {
			rounds[i].FederatedAUC, rounds[i].FederatedLogLoss = m.Federated.AUC, m.Federated.LogLoss
		}
	}
	var ref *plot.Reference
	if c := res.Summary.Centralized; c != nil {
		ref = &plot.Reference{Label: "centralized fit (pooled training rows)", AUC: c.AUC, LogLoss: c.LogLoss}
	}
	files, err := plot.Rounds(rounds, ref, dir)
	if err != nil {
		return files, err
	}
	if p := res.Summary.Personalization; p != nil {
		var global, personalized []float64
		for _, c := range p.Clients {
			if c.GlobalAUC != nil && c.PersonalizedAUC != nil {
				global, personalized = append(global, *c.GlobalAUC), append(personalized, *c.PersonalizedAUC)
			}
		}
		more, err := plot.Distribution(global, personalized, dir)
		files = append(files, more...)
		if err != nil && !errors.Is(err, plot.ErrNoData) {
			return files, err
		}
	}
	return files, nil
}
