package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/sim"
)

// newSimAuditCmd is `fedprop sim audit`: the empirical privacy audit of a simulated run's model.
func newSimAuditCmd(g *globals) *cobra.Command {
	var (
		configPath, outDir string
		parallel           int
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Audit a simulated run's model by membership inference: attack ROC and an empirical epsilon lower bound",
		Long: `Audit trains the simulation config's model with a random half of some training rows (the
targets) left out, and shadow models (the same simulation with other seeds, each target in half
of them), all with the production roles; then attacks the model's membership on the targets with
a loss threshold (Yeom et al. 2018) and the likelihood-ratio attack on the shadow models (LiRA,
Carlini et al. 2022), and bounds epsilon from below with Clopper-Pearson intervals on the
attacks' success (Jagielski et al. 2020; Nasr et al. 2021), beside the accountant's epsilon.

The config's privacy_audit section sets the audit: shadows (default 16, at least 4), targets
(default 1000, at most half the training rows) and seed (default: the config's seed). The same
config gives the same report. It costs shadows + 1 runs of the simulation, --parallel at a time.
It writes:

  DIR/audit.json        the report: each attack's AUC, TPR at FPR 0.001, 0.01 and 0.1, the epsilon
                        lower bound at each and their maximum, the accountant's epsilon, the method
                        and the config (fedprop sim audit --config DIR/audit.json reruns it)
  DIR/roc.csv           attack,threshold,fpr,tpr: each attack's ROC curve
  DIR/model-card.json   the audited model's card with the audit's findings, and as Markdown
  DIR/model-card.md`,
		Example: `  fedprop sim audit --config configs/sim-bank-dp.yaml --out out/audit-dp
  fedprop sim audit --config configs/sim-audit-overfit.yaml --out out/audit-overfit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case configPath == "":
				return usagef("--config is required")
			case outDir == "":
				return usagef("--out is required")
			case parallel < 0:
				return usagef("--parallel: must not be negative, got %d", parallel)
			}
			cfg, log, err := prepareSim(cmd, g, configPath, outDir)
			if err != nil {
				return err
			}
			shadows := cfg.PrivacyAudit.Shadows
			if shadows == 0 {
				shadows = sim.DefaultAuditShadows
			}
			fmt.Fprintf(g.stdout, "privacy audit of %s: the audited run and %d shadow runs\n", configPath, shadows)
			bar := newProgress(g.stdout, shadows+1, "audit runs")
			res, err := sim.PrivacyAudit(cmd.Context(), cfg, sim.AuditOptions{Logger: log, Version: version, Parallel: parallel,
				Done: func(int, *sim.Result) { bar.Step(1) }})
			bar.Close()
			if err != nil {
				return err
			}
			files, err := sim.WriteAudit(outDir, res)
			if err != nil {
				return err
			}
			if err := res.Report.WriteText(g.stdout); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%.1fs; wrote %s\n", res.Report.WallSeconds, strings.Join(files, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "simulation config (YAML), or a summary.json or audit.json to rerun")
	cmd.Flags().StringVar(&outDir, "out", "", "directory for audit.json, roc.csv and the model card")
	cmd.Flags().IntVar(&parallel, "parallel", 0, "runs trained at once (default: the number of CPUs); the report does not depend on it")
	return cmd
}
