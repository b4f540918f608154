package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/ops/loadtest"
)

func newLoadtestCmd(g *globals) *cobra.Command {
	var (
		cfg         loadtest.Config
		inProcess   bool
		asJSON      bool
		heapProfile string
		cpuProfile  string
	)
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Load-test a coordinator: N concurrent clients over loopback gRPC for R rounds",
		Long: `loadtest starts a coordinator in this process (in-memory store, gRPC on a loopback port) and
N clients, each a real agent with its own connection and its own synthetic branch, and runs R
rounds of training and evaluation. It reports each round's latency (p50, p99), the
coordinator's CPU time (getrusage) and its peak memory.

Every connection is mutual TLS 1.3: loadtest makes a throwaway CA, the coordinator's kit and
one client kit per client in a temporary directory (--kits keeps them in a directory of your
choice) and removes them afterwards. --insecure serves and dials plaintext instead.
--secure-aggregation he makes every client encrypt under a committee's collective key.

By default the clients run in a child process (fedprop loadtest clients), so that the CPU and
memory figures are the coordinator's alone; --in-process runs them here too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			quietByDefault(cmd, g)
			log, err := g.logger()
			if err != nil {
				return err
			}
			cfg.Logger = log
			if err := cfg.WithDefaults().Validate(); err != nil {
				return usagef("loadtest: %v", err)
			}
			cfg.HeapProfile = heapProfile != ""
			runner := loadtest.InProcess(cfg)
			if !inProcess {
				runner = childClients(g, cfg, heapProfile)
			}
			fmt.Fprintf(g.stderr, "load test: %d clients, %d rounds...\n", cfg.WithDefaults().Clients, cfg.WithDefaults().Rounds)
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			rep, err := loadtest.Run(cmd.Context(), cfg, runner)
			if perr := stopProfile(); err == nil {
				err = perr
			}
			if err != nil {
				return err
			}
			if heapProfile != "" {
				if err := os.WriteFile(heapProfile, rep.HeapProfile, 0o600); err != nil {
					return fmt.Errorf("loadtest: write heap profile: %w", err)
				}
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printLoadReport(g.stdout, rep)
		},
	}
	f := cmd.Flags()
	addLoadFlags(cmd, &cfg)
	f.BoolVar(&inProcess, "in-process", false, "run the clients in this process (CPU and memory then include theirs)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of this process (the coordinator, and the clients with --in-process) to this file (go tool pprof)")
	f.StringVar(&heapProfile, "heap-profile", "", "write a heap profile taken near the coordinator's peak Go heap to this file (go tool pprof); the clients' process writes its own to FILE.clients")
	cmd.AddCommand(newLoadtestClientsCmd(g))
	return cmd
}

// quietByDefault logs warnings and errors only, unless a log level was asked for: a thousand
// clients' info lines would drown the report.
func quietByDefault(cmd *cobra.Command, g *globals) {
	if !cmd.Flags().Changed("log-level") && os.Getenv("FEDPROP_LOG_LEVEL") == "" {
		g.logLevel = "warn"
	}
}

// addLoadFlags binds the load's shape; the parent passes the same values to its child.
func addLoadFlags(cmd *cobra.Command, cfg *loadtest.Config) {
	f := cmd.Flags()
	f.IntVar(&cfg.Clients, "clients", 1000, "concurrent clients")
	f.IntVar(&cfg.Rounds, "rounds", 10, "training rounds")
	f.IntVar(&cfg.RowsPerClient, "rows", 50, "mean synthetic customers per client")
	f.IntVar(&cfg.HistogramBins, "histogram-bins", 0, "evaluation histogram bins (0: the coordinator's default)")
	f.DurationVar(&cfg.Tick, "tick", 50*time.Millisecond, "coordinator clock resolution")
	f.DurationVar(&cfg.PollWait, "poll-wait", 10*time.Second, "clients' long-poll wait")
	f.DurationVar(&cfg.Timeout, "timeout", 30*time.Minute, "give up after this long")
	f.Uint64Var(&cfg.Seed, "seed", 1, "synthetic data and run seed")
	f.BoolVar(&cfg.Insecure, "insecure", false, "plaintext gRPC instead of mutual TLS")
	f.StringVar(&cfg.KitDir, "kits", "", "new or empty directory for the throwaway CA's kits (default: a temporary directory, removed afterwards)")
	f.StringVar(&cfg.SecureAggregation, "secure-aggregation", "none", "none or he (threshold CKKS; the first --committee clients hold the key)")
	f.IntVar(&cfg.Committee, "committee", 0, "he committee size (0: 5, or every client when fewer)")
	f.IntVar(&cfg.Threshold, "threshold", 0, "he decryption threshold T (0: a majority of the committee)")
	f.IntVar(&cfg.MaxConcurrentSubmits, "max-concurrent-submits", 0, "results the coordinator receives and decodes at once (0: the coordinator's default)")
}

// newLoadtestClientsCmd is the child process of a load test: the clients alone, until
// SIGTERM; it then prints what it measured as JSON.
func newLoadtestClientsCmd(g *globals) *cobra.Command {
	var (
		cfg         loadtest.Config
		addr        string
		heapProfile string
	)
	cmd := &cobra.Command{
		Use:    "clients",
		Short:  "Run a load test's clients against --coordinator until SIGTERM (used by fedprop loadtest)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			quietByDefault(cmd, g)
			log, err := g.logger()
			if err != nil {
				return err
			}
			cfg.Logger = log
			if addr == "" {
				return usagef("loadtest clients: --coordinator is required")
			}
			cfg.HeapProfile = heapProfile != ""
			st, err := loadtest.RunClients(cmd.Context(), cfg, loadtest.Target{Addr: addr, KitDir: cfg.KitDir})
			if err != nil {
				return err
			}
			if heapProfile != "" {
				if err := os.WriteFile(heapProfile, st.HeapProfile, 0o600); err != nil {
					return fmt.Errorf("loadtest clients: write heap profile: %w", err)
				}
			}
			return json.NewEncoder(g.stdout).Encode(st)
		},
	}
	addLoadFlags(cmd, &cfg)
	cmd.Flags().StringVar(&addr, "coordinator", "", "the load test coordinator's address")
	cmd.Flags().StringVar(&heapProfile, "heap-profile", "", "write a heap profile taken near the clients' peak Go heap to this file")
	return cmd
}

// childClients runs the clients in a child process (this binary, `loadtest clients`), stops
// it with SIGTERM when the run is over, and reads its measurements and resource usage.
func childClients(g *globals, cfg loadtest.Config, heapProfile string) loadtest.ClientRunner {
	return func(ctx context.Context, target loadtest.Target) (*loadtest.ClientStats, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("load test: find this binary: %w", err)
		}
		c := cfg.WithDefaults()
		args := []string{"loadtest", "clients", "--coordinator", target.Addr, "--kits", target.KitDir,
			"--clients", strconv.Itoa(c.Clients), "--rounds", strconv.Itoa(c.Rounds), "--rows", strconv.Itoa(c.RowsPerClient),
			"--histogram-bins", strconv.Itoa(c.HistogramBins), "--tick", c.Tick.String(), "--poll-wait", c.PollWait.String(),
			"--seed", strconv.FormatUint(c.Seed, 10), "--log-level", "warn", "--secure-aggregation", c.SecureAggregation,
			"--committee", strconv.Itoa(c.Committee), "--threshold", strconv.Itoa(c.Threshold), "--insecure=" + strconv.FormatBool(c.Insecure)}
		if heapProfile != "" {
			args = append(args, "--heap-profile", heapProfile+".clients")
		}
		var out bytes.Buffer
		cmd := exec.Command(exe, args...) // #nosec G204 -- this very binary, with arguments it formats itself
		cmd.Stdout, cmd.Stderr = &out, g.stderr
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("load test: start clients: %w", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			return nil, fmt.Errorf("load test: the clients' process ended early: %w", errors.Join(err, ctx.Err()))
		case <-ctx.Done():
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = cmd.Process.Kill() // it is ending anyway
		}
		if err := <-exited; err != nil {
			return nil, fmt.Errorf("load test: clients' process: %w", err)
		}
		var st loadtest.ClientStats
		if err := json.Unmarshal(out.Bytes(), &st); err != nil {
			return nil, fmt.Errorf("load test: read the clients' measurements: %w", err)
		}
		st.CPUUser, st.CPUSystem, st.PeakRSS, _ = loadtest.ChildUsage(cmd.ProcessState.SysUsage())
		return &st, nil
	}
}

// startCPUProfile profiles this process's CPU into path until the returned function is
// called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path) // #nosec G304 -- a path the operator named
	if err != nil {
		return nil, fmt.Errorf("loadtest: cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close() // the profile never started; its error is the one to report
		return nil, fmt.Errorf("loadtest: cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("loadtest: cpu profile: %w", err)
		}
		return nil
	}, nil
}

func printLoadReport(w io.Writer, r loadtest.Report) error {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	who := "the coordinator's process; the clients ran in another"
	if r.ClientsInProcess {
		who = "one process: coordinator and clients"
	}
	var b bytes.Buffer
	transport := "mutual TLS 1.3"
	if !r.TLS {
		transport = "plaintext (--insecure)"
	}
	fmt.Fprintf(&b, "clients               %d (%s, secure aggregation %s)\n", r.Clients, transport, r.SecureAggregation)
	fmt.Fprintf(&b, "rounds                %d (every client in every round: %d at least; %d results aggregated)\n", r.Rounds, r.Contributors, r.Results)
	fmt.Fprintf(&b, "statistics phase      %s (registration of every client included)\n", ms(r.Stats))
	fmt.Fprintf(&b, "round latency         p50 %s, p99 %s (train + evaluate + commit)\n", ms(r.RoundP50), ms(r.RoundP99))
	fmt.Fprintf(&b, "rounds                ")
	for i, d := range r.Round {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(ms(d))
	}
	fmt.Fprintf(&b, "\nwall                  %s\n", ms(r.Wall))
	fmt.Fprintf(&b, "CPU                   user %.1f s, system %.1f s (%s)\n", r.CPUUser.Seconds(), r.CPUSystem.Seconds(), who)
	fmt.Fprintf(&b, "peak memory           RSS %s; Go heap %s (live and not yet collected), goroutine stacks %s (%s)\n",
		mib(r.PeakRSS), mib(int64(r.PeakHeap)), mib(int64(r.PeakStacks)), who)
	if r.Results > 0 {
		fmt.Fprintf(&b, "per result            CPU %.3f ms (user + system over %d results)\n",
			float64(r.CPUUser+r.CPUSystem)/float64(time.Millisecond)/float64(r.Results), r.Results)
	}
	a := r.Admission
	fmt.Fprintf(&b, "admission             %d results at most at once; %d of %d submissions queued, at most %d waiting\n", a.Limit, a.Queued, a.Admitted, a.PeakWaiting)
	if c := r.Client; c != nil {
		fmt.Fprintf(&b, "SubmitResult latency  p50 %s, p99 %s (%d accepted, %d duplicates, as the clients saw them)\n",
			ms(c.SubmitP50), ms(c.SubmitP99), c.Submits, c.Duplicates)
		if !c.InProcess && c.PeakRSS > 0 {
			fmt.Fprintf(&b, "clients' process      CPU user %.1f s, system %.1f s; peak RSS %s\n", c.CPUUser.Seconds(), c.CPUSystem.Seconds(), mib(c.PeakRSS))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}
