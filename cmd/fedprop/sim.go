package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/internal/confcheck"
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
			cfg, err := loadSimConfig(configPath)
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
			table := sim.NewTable(g.stdout)
			bar := newProgress(g.stdout, cfg.Run.Rounds, "rounds")
			if memProfile != "" {
				defer writeHeapProfile(memProfile)
			}
			res, err := sim.Run(cmd.Context(), cfg, sim.Options{Logger: log, Observer: withProgress(table, bar), Version: version})
			bar.Close()
			if err != nil {
				return err
			}
			if err := sim.WriteResults(outDir, res); err != nil {
				return err
			}
			sim.PrintSummary(g.stdout, res.Summary, outDir)
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
	cmd.AddCommand(newSimSweepCmd(g), newSimAuditCmd(g))
	return cmd
}

// loadSimConfig reads a simulation config, or the config of a summary.json or audit.json, and
// checks it before anything runs.
func loadSimConfig(path string) (sim.Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return sim.Config{}, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	if raw, err = configFromSummary(raw); err != nil {
		return sim.Config{}, fmt.Errorf("%w: %s: %w", coordinator.ErrBadConfig, path, err)
	}
	cfg, err := sim.ParseConfig(path, raw)
	if err != nil {
		return sim.Config{}, err
	}
	if err := errors.Join(confcheck.Floats("", cfg)...); err != nil {
		return sim.Config{}, fmt.Errorf("%s: %w: %w", path, coordinator.ErrBadConfig, err)
	}
	return cfg, nil
}

// configFromSummary lets --config name a summary.json or an audit.json: its "config" (the
// complete, defaulted configuration of the run, written as JSON, which is YAML) is what reruns
// it.
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
