package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset/parquet"
	"github.com/fedprop/fedprop/internal/confcheck"
	"github.com/fedprop/fedprop/release/export"
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
			cfg, log, err := prepareSim(cmd, g, configPath, outDir)
			if err != nil {
				return err
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
			world, err := sim.LoadWith(cmd.Context(), cfg, parquet.Read)
			if err != nil {
				return err
			}
			res, err := sim.Run(cmd.Context(), cfg, sim.Options{Logger: log, Observer: withProgress(table, bar), Version: version, Release: true, World: world})
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
			models, err := writeModelFiles(outDir, res)
			if err != nil {
				return err
			}
			if len(models) > 0 {
				fmt.Fprintf(g.stdout, "wrote %s\n", strings.Join(models, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "simulation config (YAML)")
	cmd.Flags().StringVar(&outDir, "out", "", "directory for metrics.csv, summary.json, audit.jsonl, the plots and the final model (model.json, model.onnx, model.pmml, model-card.json, model-card.md)")
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

// writeModelFiles writes the run's last committed version as the coordinator would release it:
// the model document (model.json), its ONNX and PMML exports, and its model card (JSON and
// Markdown); nothing when the run committed no version.
func writeModelFiles(dir string, res *sim.Result) ([]string, error) {
	doc, card := res.Model, res.ModelCard
	if doc == nil || card == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := doc.Write(&buf); err != nil {
		return nil, err
	}
	files := map[string][]byte{"model.json": slices.Clone(buf.Bytes()), "model-card.md": card.Markdown()}
	buf.Reset()
	if err := card.Write(&buf); err != nil {
		return nil, err
	}
	files["model-card.json"] = buf.Bytes()
	var err error
	if files["model.onnx"], err = export.ONNX(doc); err != nil {
		return nil, fmt.Errorf("model.onnx: %w", err)
	}
	if files["model.pmml"], err = export.PMML(doc); err != nil {
		return nil, fmt.Errorf("model.pmml: %w", err)
	}
	var written []string
	for _, name := range []string{"model.json", "model.onnx", "model.pmml", "model-card.json", "model-card.md"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			return nil, err
		}
		written = append(written, path)
	}
	return written, nil
}

// prepareSim is what every simulation command does before it runs: read and check the config,
// make the logger (warnings only unless asked: the command's own output is its progress
// report), create the output directory, and collect garbage at half the default heap growth,
// since simulations of many clients allocate quickly and peak memory should stay near the live
// data (a few percent of CPU; GOGC, when set, decides instead).
func prepareSim(cmd *cobra.Command, g *globals, configPath, outDir string) (sim.Config, *slog.Logger, error) {
	cfg, err := loadSimConfig(configPath)
	if err != nil {
		return sim.Config{}, nil, err
	}
	if !cmd.Flags().Changed("log-level") && os.Getenv("FEDPROP_LOG_LEVEL") == "" {
		g.logLevel = "warn"
	}
	log, err := g.logger()
	if err != nil {
		return sim.Config{}, nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return sim.Config{}, nil, err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	return cfg, log, nil
}
