// Command demo is what `make demo` runs: the simulator of `fedprop sim` on the built-in
// synthetic bank data, printing the per-round table and the centralized comparison and
// writing metrics.csv and summary.json. It is the same sim package as `fedprop sim`, without
// the network, CLI and plotting dependencies of the full binary, so that a fresh clone builds
// and runs it in well under a minute.
//
//	go run ./internal/demo [CONFIG [OUTDIR]]   (defaults: configs/sim-synthetic.yaml out/demo)
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/fedprop/fedprop/sim"
)

func main() {
	cfgPath, outDir := "configs/sim-synthetic.yaml", "out/demo"
	if len(os.Args) > 1 {
		cfgPath = os.Args[1]
	}
	if len(os.Args) > 2 {
		outDir = os.Args[2]
	}
	if err := run(cfgPath, outDir, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// run simulates the config at cfgPath, prints the per-round table and the summary to stdout
// and writes metrics.csv and summary.json into outDir.
func run(cfgPath, outDir string, stdout io.Writer) error {
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	cfg, err := sim.ParseConfig(cfgPath, raw)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := sim.Run(ctx, cfg, sim.Options{Observer: sim.NewTable(stdout), Version: "demo"})
	if err != nil {
		return err
	}
	if err := sim.WriteResults(outDir, res); err != nil {
		return err
	}
	sim.PrintSummary(stdout, res.Summary, outDir)
	fmt.Fprintln(stdout, "\nthe full tool: make build && bin/fedprop sim --config", cfgPath, "--out", outDir, "(adds plots, sweeps and the other roles)")
	return nil
}
