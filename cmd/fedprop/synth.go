package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/synth"
)

func newSynthCmd(g *globals) *cobra.Command {
	var (
		out string
		cfg synth.Config
	)
	cmd := &cobra.Command{
		Use:   "synth",
		Short: "Write synthetic branch CSVs and their schema (for trying fedprop without real data)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg = cfg.WithDefaults()
			if err := cfg.Validate(); err != nil {
				return usagef("%v", err)
			}
			branches, err := synth.Generate(cfg)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			schema := synth.Schema(cfg)
			doc, err := yaml.Marshal(schema)
			if err != nil {
				return err
			}
			schemaPath := filepath.Join(out, "schema.yaml")
			if err := os.WriteFile(schemaPath, doc, 0o644); err != nil {
				return err
			}
			for _, b := range branches {
				for _, part := range []struct {
					suffix             string
					consenting, optOut *dataset.Dataset
				}{{"", b.Train, b.TrainOptedOut}, {"-test", b.Test, b.TestOptedOut}} {
					path := filepath.Join(out, b.Name+part.suffix+".csv")
					if err := writeShard(path, part.consenting, part.optOut); err != nil {
						return err
					}
				}
				fmt.Fprintf(g.stdout, "%s: %d training rows, %d held-out rows, %d customers who opted out\n",
					b.Name, b.Train.Len(), b.Test.Len(), b.TrainOptedOut.Len()+b.TestOptedOut.Len())
			}
			fmt.Fprintf(g.stdout, "schema: %s\n", schemaPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "data", "output directory")
	cmd.Flags().IntVar(&cfg.Branches, "branches", 3, "number of branches")
	cmd.Flags().IntVar(&cfg.CustomersPerBranch, "customers", 2000, "mean customers per branch")
	cmd.Flags().Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	return cmd
}

// writeShard writes a branch file as a branch holds it: consenting customers and those who
// opted out, whom the client must exclude.
func writeShard(path string, consenting, optedOut *dataset.Dataset) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := synth.WriteShard(f, consenting, optedOut); err != nil {
		_ = f.Close() // the write error is the one to report
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
