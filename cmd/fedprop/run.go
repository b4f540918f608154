package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// newRunCmd is the operator's view of runs: start, list, status (once or watched) and stop,
// over the coordinator's admin service with an admin kit.
func newRunCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start, list, inspect and stop training runs on a coordinator (admin kit)",
	}
	var addr, output string
	cmd.PersistentFlags().StringVar(&addr, "coordinator", envOr("FEDPROP_COORDINATOR", "127.0.0.1:7070"), "coordinator address (env FEDPROP_COORDINATOR)")
	cmd.PersistentFlags().StringVar(&output, "output", "table", "table or json")
	var dialer modelDialer // mutual TLS flags, see ca.go; here the admin's kit
	dialer.flags(cmd.PersistentFlags())

	admin := func(cmd *cobra.Command) (*grpctransport.AdminClient, func(), error) {
		if output != "table" && output != "json" {
			return nil, nil, usagef("--output: %q is not table or json", output)
		}
		conn, err := dialer.dial(cmd, g, addr)
		if err != nil {
			return nil, nil, err
		}
		return grpctransport.NewAdminClient(conn), func() { _ = conn.Close() }, nil
	}

	var configPath string
	start := &cobra.Command{
		Use:   "start --config FILE",
		Short: "Start a run (or resume a stopped one) from a run configuration; its schema must be in the coordinator's schema_dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usagef("--config: required: a run section (as under run: in a coordinator configuration), or a coordinator configuration whose run: section is used")
			}
			doc, err := runSection(configPath)
			if err != nil {
				return err
			}
			c, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			id, err := c.StartRun(cmd.Context(), doc)
			if err != nil {
				return fmt.Errorf("start run from %s at %s: %w", configPath, addr, err)
			}
			r, err := c.GetRun(cmd.Context(), id)
			if err != nil {
				return fmt.Errorf("run %s started; reading its status: %w", id, err)
			}
			return printRuns(g.stdout, output, false, r)
		},
	}
	start.Flags().StringVar(&configPath, "config", "", "run configuration file")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the runs the coordinator's store holds, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			runs, err := c.ListRuns(cmd.Context())
			if err != nil {
				return fmt.Errorf("list runs at %s: %w", addr, err)
			}
			return printRuns(g.stdout, output, true, runs...)
		},
	}

	var (
		watch    bool
		interval time.Duration
	)
	status := &cobra.Command{
		Use:   "status [RUN]",
		Short: "Show a run's phase, round, clients, results, deadline and privacy spent (the active or latest run by default)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			if interval <= 0 {
				return usagef("--interval: must be positive, got %v", interval)
			}
			c, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			return watchRun(cmd.Context(), c, id, watch, interval, func(r *pb.Run) error { return printRuns(g.stdout, output, false, r) })
		},
	}
	status.Flags().BoolVar(&watch, "watch", false, "print the status again every --interval until the run finishes")
	status.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often --watch asks")

	var reason string
	stop := &cobra.Command{
		Use:   "stop RUN",
		Short: "Stop the active run cleanly: no further task, committed versions kept, resumable with run start",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			r, err := c.StopRun(cmd.Context(), args[0], reason)
			if err != nil {
				return fmt.Errorf("stop run %s at %s: %w", args[0], addr, err)
			}
			return printRuns(g.stdout, output, false, r)
		},
	}
	stop.Flags().StringVar(&reason, "reason", "", "why, for the audit log")

	cmd.AddCommand(start, list, status, stop)
	return cmd
}

// runSection reads a run configuration for StartRun: the file itself, or the run: section of
// a coordinator configuration.
func runSection(path string) ([]byte, error) {
	raw, err := os.ReadFile(path) // #nosec G304 -- the operator names the file
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	if len(root.Content) == 1 && root.Content[0].Kind == yaml.MappingNode {
		m := root.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "run" && m.Content[i+1].Kind == yaml.MappingNode {
				return yaml.Marshal(m.Content[i+1])
			}
		}
	}
	return raw, nil
}

// watchRun prints a run's status once, or with watch until it finishes or ctx ends.
func watchRun(ctx context.Context, c *grpctransport.AdminClient, id string, watch bool, every time.Duration, print func(*pb.Run) error) error {
	for {
		r, err := c.GetRun(ctx, id)
		if err != nil {
			return fmt.Errorf("run status: %w", err)
		}
		if err := print(r); err != nil {
			return err
		}
		if !watch || !r.GetActive() {
			return nil
		}
		id = r.GetRunId() // follow this run even when another starts after it
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// runJSON is a run as `--output json` prints it: stable snake_case names.
type runJSON struct {
	RunID             string  `json:"run_id"`
	State             string  `json:"state"`
	Active            bool    `json:"active"`
	Phase             string  `json:"phase,omitempty"`
	Round             int32   `json:"round"`
	RoundsCommitted   int32   `json:"rounds_committed"`
	RoundsTotal       int32   `json:"rounds_total"`
	LatestVersion     uint64  `json:"latest_version"`
	Registered        int32   `json:"registered_clients"`
	MinClients        int32   `json:"min_clients"`
	Cohort            int32   `json:"cohort"`
	Results           int32   `json:"results"`
	Outstanding       int32   `json:"outstanding"`
	DeadlineSeconds   float64 `json:"deadline_seconds"`
	PrivacyMechanism  string  `json:"privacy_mechanism"`
	Epsilon           float64 `json:"epsilon"`
	EpsilonBudget     float64 `json:"epsilon_budget"`
	Delta             float64 `json:"delta"`
	TrainingExamples  int64   `json:"training_examples"`
	ExcludedNoConsent int64   `json:"excluded_no_consent"`
	Message           string  `json:"message,omitempty"`
}

func toRunJSON(r *pb.Run) runJSON {
	return runJSON{RunID: r.GetRunId(), State: r.GetState(), Active: r.GetActive(), Phase: r.GetPhase(), Round: r.GetRound(),
		RoundsCommitted: r.GetRoundsCommitted(), RoundsTotal: r.GetRoundsTotal(), LatestVersion: r.GetLatestVersion(),
		Registered: r.GetRegisteredClients(), MinClients: r.GetMinClients(), Cohort: r.GetCohort(), Results: r.GetResults(),
		Outstanding: r.GetOutstanding(), DeadlineSeconds: float64(r.GetDeadlineMillis()) / 1000, PrivacyMechanism: r.GetPrivacyMechanism(),
		Epsilon: r.GetEpsilon(), EpsilonBudget: r.GetEpsilonBudget(), Delta: r.GetDelta(), TrainingExamples: r.GetTrainingExamples(),
		ExcludedNoConsent: r.GetExcludedNoConsent(), Message: r.GetMessage()}
}

// printRuns prints runs as a table, or as JSON: a list for list, else the one run's object.
func printRuns(w io.Writer, output string, list bool, runs ...*pb.Run) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if !list && len(runs) == 1 {
			return enc.Encode(toRunJSON(runs[0]))
		}
		out := make([]runJSON, len(runs))
		for i, r := range runs {
			out[i] = toRunJSON(r)
		}
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATE\tPHASE\tROUND\tCLIENTS\tRESULTS\tDEADLINE\tEPSILON\tMESSAGE")
	for _, r := range runs {
		phase, round, results, deadline := "-", fmt.Sprintf("%d/%d", r.GetRoundsCommitted(), r.GetRoundsTotal()), "-", "-"
		if r.GetActive() {
			phase = r.GetPhase()
			round = fmt.Sprintf("%d (%d/%d committed)", r.GetRound(), r.GetRoundsCommitted(), r.GetRoundsTotal())
			if r.GetCohort() > 0 {
				results, deadline = fmt.Sprintf("%d/%d", r.GetResults(), r.GetCohort()), (time.Duration(r.GetDeadlineMillis()) * time.Millisecond).String()
			}
		}
		clients := fmt.Sprintf("%d", r.GetRegisteredClients())
		if r.GetActive() {
			clients = fmt.Sprintf("%d of %d needed", r.GetRegisteredClients(), r.GetMinClients())
		}
		eps := "-"
		if r.GetPrivacyMechanism() != "" && r.GetPrivacyMechanism() != "none" {
			eps = fmt.Sprintf("%.4g", r.GetEpsilon())
			if b := r.GetEpsilonBudget(); b > 0 {
				eps += fmt.Sprintf(" of %g", b)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetRunId(), r.GetState(), phase, round, clients, results, deadline, eps, r.GetMessage())
	}
	return tw.Flush()
}
