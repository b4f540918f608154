package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/sim"
)

func newSimCmd(g *globals) *cobra.Command {
	var configPath, outDir, cpuProfile, memProfile string
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a federation in one process with the production cores",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usagef("--config is required")
			}
			if outDir == "" {
				return usagef("--out is required")
			}
			raw, err := os.ReadFile(configPath)
			if err != nil {
				return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
			}
			if raw, err = configFromSummary(raw); err != nil {
				return fmt.Errorf("%w: %s: %w", coordinator.ErrBadConfig, configPath, err)
			}
			cfg, err := sim.ParseConfig(configPath, raw)
			if err != nil {
				return err
			}
			// The per-round table is the simulator's progress report: unless asked, log only
			// what needs attention.
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
			// Simulations of many clients allocate quickly: collect garbage at half the
			// default heap growth so that peak memory stays near the live data (a few percent
			// of CPU). GOGC, when set, decides instead.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(50)
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			table := newRoundTable(g.stdout)
			bar := newProgress(g.stdout, cfg.Run.Rounds, "rounds")
			if memProfile != "" {
				defer writeHeapProfile(memProfile)
			}
			res, err := sim.Run(cmd.Context(), cfg, sim.Options{Logger: log, Observer: withProgress(table, bar), Version: version})
			bar.Close()
			if err != nil {
				return err
			}
			if err := writeMetricsCSV(filepath.Join(outDir, "metrics.csv"), res.Rounds); err != nil {
				return err
			}
			if err := writeJSON(filepath.Join(outDir, "summary.json"), res.Summary); err != nil {
				return err
			}
			printSummary(g.stdout, res.Summary, outDir)
			plots, err := writeRoundPlots(outDir, res)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s\n", strings.Join(plots, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "simulation config (YAML)")
	cmd.Flags().StringVar(&outDir, "out", "", "directory for metrics.csv and summary.json")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the simulation to this file (go tool pprof)")
	cmd.Flags().StringVar(&memProfile, "memprofile", "", "write a heap profile at the end of the simulation to this file (go tool pprof)")
	cmd.AddCommand(newSimSweepCmd(g))
	return cmd
}

// roundTable prints one fixed-width line per committed round as it happens.
type roundTable struct {
	w       io.Writer
	started bool
}

func newRoundTable(w io.Writer) *roundTable { return &roundTable{w: w} }

const roundRow = "%5s %9s %9s %9s %8s %11s %8s %8s\n"

func (t *roundTable) Round(m sim.RoundMetrics) {
	if !t.started {
		fmt.Fprintf(t.w, roundRow, "round", "test_auc", "log_loss", "accuracy", "brier", "train_loss", "clients", "seconds")
		t.started = true
	}
	f4 := func(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) }
	fmt.Fprintf(t.w, roundRow, strconv.Itoa(m.Round), f4(m.Test.AUC), f4(m.Test.LogLoss), f4(m.Test.Accuracy), f4(m.Test.Brier),
		f4(m.TrainLoss), strconv.Itoa(m.Contributors), strconv.FormatFloat(m.Seconds, 'f', 2, 64))
}

func printSummary(w io.Writer, s sim.Summary, outDir string) {
	fmt.Fprintf(w, "\nfederated   (round %d): AUC %.4f  log loss %.4f  accuracy %.4f\n", s.Rounds, s.Final.AUC, s.Final.LogLoss, s.Final.Accuracy)
	if c := s.Centralized; c != nil {
		fmt.Fprintf(w, "centralized (pooled)  : AUC %.4f  log loss %.4f  accuracy %.4f\n", c.AUC, c.LogLoss, c.Accuracy)
	}
	fmt.Fprintf(w, "%d clients, %d training rows, %d test rows, %d excluded for lack of consent (consent tracked: %v); %.1fs\n",
		s.Clients, s.TrainRows, s.TestRows, s.ExcludedNoConsent, s.ConsentTracked, s.WallSeconds)
	fmt.Fprintf(w, "wrote %s and %s\n", filepath.Join(outDir, "metrics.csv"), filepath.Join(outDir, "summary.json"))
}

// configFromSummary lets --config name a summary.json: its "config" (the complete, defaulted
// configuration of the run, written as JSON, which is YAML) is what reruns it.
func configFromSummary(raw []byte) ([]byte, error) {
	var summary struct {
		Config json.RawMessage `json:"config"`
	}
	if json.Unmarshal(raw, &summary) != nil || len(summary.Config) == 0 {
		return raw, nil
	}
	return summary.Config, nil
}

func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup("allocs").WriteTo(f, 0)
}

func writeMetricsCSV(path string, rounds []sim.RoundMetrics) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"round", "auc", "log_loss", "accuracy", "brier", "federated_auc", "federated_log_loss", "train_loss", "contributors", "examples", "seconds"})
	ff := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	for _, m := range rounds {
		fedAUC, fedLL := "", ""
		if m.Federated != nil {
			fedAUC, fedLL = ff(m.Federated.AUC), ff(m.Federated.LogLoss)
		}
		_ = w.Write([]string{strconv.Itoa(m.Round), ff(m.Test.AUC), ff(m.Test.LogLoss), ff(m.Test.Accuracy), ff(m.Test.Brier),
			fedAUC, fedLL, ff(m.TrainLoss), strconv.Itoa(m.Contributors), ff(m.Examples), strconv.FormatFloat(m.Seconds, 'f', 3, 64)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
