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
					suffix string
					d      *dataset.Dataset
				}{{"", b.Train}, {"-test", b.Test}} {
					path := filepath.Join(out, b.Name+part.suffix+".csv")
					if err := writeCSVFile(path, part.d); err != nil {
						return err
					}
				}
				fmt.Fprintf(g.stdout, "%s: %d training rows, %d held-out rows\n", b.Name, b.Train.Len(), b.Test.Len())
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

func writeCSVFile(path string, d *dataset.Dataset) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := dataset.WriteCSV(f, d); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
