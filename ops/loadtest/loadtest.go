// Package loadtest drives a coordinator with many concurrent clients over loopback gRPC and
// measures it: the latency of each training round, the process's CPU time (getrusage) and its
// peak memory. The coordinator runs in the calling process with an in-memory store; the
// clients run in the same process (InProcess) or in another one (the fedprop command spawns
// `fedprop loadtest clients`), in which case the CPU and memory figures are the
// coordinator's alone.
//
// Every client is a real agent (client.Agent) with a real session training on its own
// synthetic records, talking to the coordinator over its own gRPC connection, by default with
// mutual TLS from a throwaway CA and with the edge (transport/grpc.Edge) a coordinator serves
// behind: what is measured is what a deployment of that many branches would do, minus the
// network.
package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// Config is one load test. Zero fields take their defaults (WithDefaults).
type Config struct {
	// Clients is the number of concurrent clients; default 1000.
	Clients int
	// Rounds is the number of training rounds; default 10.
	Rounds int
	// RowsPerClient is the mean number of synthetic customers per client; default 50.
	RowsPerClient int
	// HistogramBins is the resolution of the evaluation histograms (each client's evaluation
	// result carries about two values per bin); default the coordinator's, 2000.
	HistogramBins int
	// Tick is the coordinator's clock resolution; default 50ms.
	Tick time.Duration
	// PollWait is the clients' long-poll wait; default 10s.
	PollWait time.Duration
	// Timeout bounds the whole run; default 30 minutes.
	Timeout time.Duration
	// Seed drives the synthetic data and the run.
	Seed uint64
	// Insecure serves and dials plaintext gRPC; by default every connection is mutual TLS 1.3
	// with a certificate per client, as a deployment runs.
	Insecure bool
	// KitDir is a new or empty directory for the throwaway CA's kits (see Run); empty means a
	// temporary directory that Run creates and removes. The clients read their kits from it.
	KitDir string
	// SecureAggregation is "none" (plaintext sums; the default) or "he" (threshold CKKS: every
	// client encrypts, a committee of the first Committee clients holds the key).
	SecureAggregation string
	// Committee is the he committee's size, default 5; Threshold its T, default a majority.
	Committee, Threshold int
	// MaxConcurrentSubmits is the coordinator's admission limit (transport/grpc.Admission);
	// 0 means grpctransport.DefaultMaxConcurrentSubmits.
	MaxConcurrentSubmits int
	// HeapProfile asks for a heap profile (pprof) taken when the Go heap peaks: where the
	// peak memory goes is what a load test is for, and a profile at the end of the run shows
	// only what is left.
	HeapProfile bool
	// Logger receives the coordinator's and the clients' logs; nil discards them.
	Logger *slog.Logger
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Clients == 0 {
		c.Clients = 1000
	}
	if c.Rounds == 0 {
		c.Rounds = 10
	}
	if c.RowsPerClient == 0 {
		c.RowsPerClient = 50
	}
	if c.Tick == 0 {
		c.Tick = 50 * time.Millisecond
	}
	if c.PollWait == 0 {
		c.PollWait = 10 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.SecureAggregation == "" {
		c.SecureAggregation = coordinator.SecAggNone
	}
	if c.SecureAggregation == coordinator.SecAggHE {
		if c.Committee == 0 {
			c.Committee = min(5, c.Clients)
		}
		if c.Threshold == 0 {
			c.Threshold = c.Committee/2 + 1
		}
	}
	if c.MaxConcurrentSubmits == 0 {
		c.MaxConcurrentSubmits = grpctransport.DefaultMaxConcurrentSubmits
	}
	return c
}

// Validate names the first unusable setting.
func (c Config) Validate() error {
	switch {
	case c.Clients < 1:
		return fmt.Errorf("clients: must be at least 1, got %d", c.Clients)
	case c.Rounds < 1:
		return fmt.Errorf("rounds: must be at least 1, got %d", c.Rounds)
	case c.RowsPerClient < 10:
		return fmt.Errorf("rows per client: must be at least 10, got %d", c.RowsPerClient)
	case c.HistogramBins != 0 && c.HistogramBins < 2:
		return fmt.Errorf("histogram bins: must be at least 2, got %d", c.HistogramBins)
	case c.Tick <= 0 || c.PollWait <= 0 || c.Timeout <= 0:
		return errors.New("tick, poll wait and timeout must be positive")
	case c.SecureAggregation != coordinator.SecAggNone && c.SecureAggregation != coordinator.SecAggHE:
		return fmt.Errorf("secure aggregation: %q is not none or he", c.SecureAggregation)
	case c.SecureAggregation == coordinator.SecAggHE && (c.Committee < 2 || c.Committee > c.Clients):
		return fmt.Errorf("committee: must be in [2, clients %d], got %d", c.Clients, c.Committee)
	case c.SecureAggregation == coordinator.SecAggHE && (c.Threshold < 2 || c.Threshold > c.Committee):
		return fmt.Errorf("threshold: must be in [2, committee %d], got %d", c.Committee, c.Threshold)
	case c.MaxConcurrentSubmits < 1:
		return fmt.Errorf("max concurrent submits: must be at least 1, got %d", c.MaxConcurrentSubmits)
	}
	return nil
}

// he reports whether the run aggregates under homomorphic encryption.
func (c Config) he() bool { return c.SecureAggregation == coordinator.SecAggHE }

// committee is the names of the he committee's members: the first Committee branches.
func (c Config) committee() []string {
	if !c.he() {
		return nil
	}
	sc := c.synthConfig()
	out := make([]string, c.Committee)
	for i := range out {
		out[i] = synth.BranchName(sc, i)
	}
	return out
}

// synthConfig is the synthetic federation: one branch per client.
func (c Config) synthConfig() synth.Config {
	return synth.Config{Branches: c.Clients, CustomersPerBranch: c.RowsPerClient, Seed: c.Seed}.WithDefaults()
}

// schema returns the federation's schema as the coordinator and every client read it.
func (c Config) schema() (*dataset.Schema, []byte, error) {
	doc, err := yaml.Marshal(synth.Schema(c.synthConfig()))
	if err != nil {
		return nil, nil, fmt.Errorf("load test schema: %w", err)
	}
	s, err := dataset.ParseSchema("loadtest schema", doc)
	if err != nil {
		return nil, nil, fmt.Errorf("load test schema: %w", err)
	}
	return s, doc, nil
}

// Target is the coordinator a load's clients connect to.
type Target struct {
	// Addr is its loopback address.
	Addr string
	// KitDir holds the clients' TLS kits, one per client named as it (pki.KitFiles); empty
	// when the load test is insecure.
	KitDir string
}

// ClientRunner runs the load's clients against the coordinator at target until ctx ends, and
// then returns what it measured (nil when it measures nothing).
type ClientRunner func(ctx context.Context, target Target) (*ClientStats, error)

// Report is what one load test measured.
type Report struct {
	Clients, Rounds int
	// TLS is true when every connection was mutual TLS; SecureAggregation is "none" or "he".
	TLS               bool
	SecureAggregation string
	// ClientsInProcess is true when the clients ran in this process, so that CPU and memory
	// include theirs.
	ClientsInProcess bool
	// Wall is the time from the coordinator's start to the last commit.
	Wall time.Duration
	// Round is each training round's latency: from the end of the previous round (for round
	// 1, from the end of the statistics phase) to its commit, evaluation included.
	Round []time.Duration
	// RoundP50 and RoundP99 are percentiles of Round (nearest rank).
	RoundP50, RoundP99 time.Duration
	// Stats is the statistics phase: from the coordinator's start, through every client
	// registering, to the standardisation being pinned.
	Stats time.Duration
	// CPUUser and CPUSystem are this process's CPU time during the run (getrusage).
	CPUUser, CPUSystem time.Duration
	// PeakRSS is this process's peak resident set size (getrusage ru_maxrss; over the
	// process's whole life), PeakHeap the peak of Go heap objects (live, and dead ones not yet
	// swept) sampled during the run, PeakStacks that of goroutine stacks: a client's
	// connection and its waiting long poll each hold goroutines of their own.
	PeakRSS    int64
	PeakHeap   uint64
	PeakStacks uint64
	// Contributors is the smallest number of clients any round aggregated.
	Contributors int
	// Results is the number of results the committed versions and the run record say the
	// coordinator aggregated: statistics, training and evaluation.
	Results int
	// Client holds what the clients measured, when they ran in this process.
	Client *ClientStats
	// Admission is what the coordinator's admission control did with the results.
	Admission grpctransport.AdmissionStats
	// HeapProfile is the heap profile (pprof format) taken near the Go heap's peak, when
	// Config.HeapProfile asked for one.
	HeapProfile []byte `json:"-"`
}

// Run starts a coordinator for cfg on a loopback port, runs the clients with clients, and
// returns when the run has committed every round.
func Run(ctx context.Context, cfg Config, clients ClientRunner) (Report, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Report{}, fmt.Errorf("load test: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	schema, doc, err := cfg.schema()
	if err != nil {
		return Report{}, err
	}
	rc := coordinator.RunConfig{
		ID: "loadtest", Rounds: cfg.Rounds, MinClients: cfg.Clients, MinCohort: cfg.Clients, Quorum: cfg.Clients,
		RoundDeadline: 10 * time.Minute, MaxAttempts: 1, HistogramBins: cfg.HistogramBins, Seed: cfg.Seed,
		Strategy: strategy.Config{Name: "fedavg"},
		// The load generator's clients hold tens of synthetic rows: it measures the
		// coordinator, and opts out of the plaintext minimum to do so.
		MinRecordsPlaintext: new(int),
	}
	if cfg.he() {
		rc.SecureAggregation = coordinator.SecureAggregationConfig{Mode: coordinator.SecAggHE, Committee: cfg.committee(),
			Threshold: cfg.Threshold, MinContributors: 2}
	}
	rc = rc.WithDefaults()
	if err := rc.Validate(); err != nil {
		return Report{}, fmt.Errorf("load test run: %w", err)
	}
	adm, err := grpctransport.NewAdmission(cfg.MaxConcurrentSubmits)
	if err != nil {
		return Report{}, fmt.Errorf("load test: %w", err)
	}
	edge := grpctransport.Edge{Admission: adm, MaxRecvMsgBytes: maxMessageBytes, Logger: cfg.Logger}
	target := Target{}
	if !cfg.Insecure {
		// Made before the measurement starts: a deployment's kits exist before its coordinator.
		dir, cleanup, err := makeKitDir(cfg.KitDir)
		if err != nil {
			return Report{}, err
		}
		defer cleanup()
		if err := writeKits(dir, cfg); err != nil {
			return Report{}, err
		}
		if edge.TLS, err = serverTLS(dir); err != nil {
			return Report{}, err
		}
		target.KitDir = dir
	}
	edgeOpts, err := edge.ServerOptions()
	if err != nil {
		return Report{}, fmt.Errorf("load test: %w", err)
	}

	usage0, err := getrusage()
	if err != nil {
		return Report{}, err
	}
	heap := startHeapSampler(cfg.HeapProfile)
	defer heap.stop()
	start := time.Now()
	timer := newRunTimer(start)
	srv, err := coordinator.NewServer(ctx, mem.New(), &coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc},
		coordinator.ServerConfig{ID: "loadtest-coordinator", TickInterval: cfg.Tick, Logger: cfg.Logger, Observer: timer})
	if err != nil {
		return Report{}, err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return Report{}, fmt.Errorf("load test: listen: %w", err)
	}
	gs := grpctransport.NewGRPCServer(srv, coordinatorName, nil, edgeOpts...)
	target.Addr = lis.Addr().String()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	eg, egctx := errgroup.WithContext(runCtx)
	eg.Go(func() error { return grpctransport.Serve(egctx, gs, lis) })
	eg.Go(func() error { return srv.Run(egctx) })
	var cstats *ClientStats
	eg.Go(func() error {
		var err error
		cstats, err = clients(egctx, target)
		return err
	})
	eg.Go(func() error {
		defer stopRun() // the run is over: stop the clients, the server and the driver
		select {
		case <-timer.done:
			return nil
		case <-egctx.Done():
			return fmt.Errorf("load test: the run did not complete: %w", context.Cause(egctx))
		}
	})
	err = eg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return Report{}, err
	}
	if !timer.completed() {
		return Report{}, fmt.Errorf("load test: stopped before the run completed: %w", ctx.Err())
	}
	usage1, err := getrusage()
	if err != nil {
		return Report{}, err
	}
	rep := timer.report()
	rep.Clients, rep.Rounds = cfg.Clients, cfg.Rounds
	rep.TLS, rep.SecureAggregation = !cfg.Insecure, cfg.SecureAggregation
	rep.Admission = adm.Stats()
	rep.CPUUser = usage1.user - usage0.user
	rep.CPUSystem = usage1.system - usage0.system
	rep.PeakRSS = usage1.maxRSS
	rep.PeakHeap = heap.stop()
	rep.PeakStacks = heap.stacks()
	rep.HeapProfile = heap.profile()
	rep.Client = cstats
	rep.ClientsInProcess = cstats != nil && cstats.InProcess
	return rep, nil
}

// maxMessageBytes is the edge's request limit, as `fedprop coordinator` sets it by default.
const maxMessageBytes = 16 << 20

// runTimer records when the run's phases end, and signals when the run completes. It is the
// driver's Observer: it reads what the driver carried out, typed, without decoding stored
// records in the coordinator whose CPU the load test measures.
type runTimer struct {
	start time.Time

	mu           sync.Mutex
	statsDone    time.Time
	commits      []time.Time
	contributors int
	results      int
	done         chan struct{}
	closed       bool
}

func newRunTimer(start time.Time) *runTimer {
	return &runTimer{start: start, done: make(chan struct{}), contributors: -1}
}

// Flushed implements coordinator.Observer.
func (s *runTimer) Flushed(f coordinator.Flush) {
	r, v := f.Actions.Run, f.Actions.Commit
	s.mu.Lock()
	defer s.mu.Unlock()
	if r != nil && r.Standardization != nil && s.statsDone.IsZero() {
		s.statsDone = time.Now()
	}
	if v == nil {
		return
	}
	if s.statsDone.IsZero() {
		s.statsDone = s.start
	}
	s.commits = append(s.commits, time.Now())
	if s.contributors < 0 || v.Contributors < s.contributors {
		s.contributors = v.Contributors
	}
	s.results += v.Contributors + v.EvalClients
	if v.Version == 1 && r != nil {
		s.results += r.StatsClients
	}
	if r != nil && r.Status == coordinator.RunCompleted && !s.closed {
		s.closed = true
		close(s.done)
	}
}

// Submitted implements coordinator.Observer.
func (s *runTimer) Submitted(task.Kind, coordinator.Outcome) {}

// Audited implements coordinator.Observer.
func (s *runTimer) Audited(audit.Action) {}

func (s *runTimer) completed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *runTimer) report() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := Report{Stats: s.statsDone.Sub(s.start), Contributors: s.contributors, Results: s.results}
	prev := s.statsDone
	for _, c := range s.commits {
		rep.Round = append(rep.Round, c.Sub(prev))
		prev = c
	}
	if n := len(s.commits); n > 0 {
		rep.Wall = s.commits[n-1].Sub(s.start)
	}
	rep.RoundP50 = Percentile(rep.Round, 50)
	rep.RoundP99 = Percentile(rep.Round, 99)
	return rep
}

// Percentile is the nearest-rank p-th percentile of ds (0 for none).
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s)) + 0.999999)
	return s[min(max(rank, 1), len(s))-1]
}

// heapSampler samples the Go heap and goroutine stacks every 10ms and keeps their peaks, and,
// when asked, a heap profile taken whenever the heap's peak grows by a tenth.
type heapSampler struct {
	stopOnce   sync.Once
	quit       chan struct{}
	done       chan struct{}
	peak       uint64
	peakStacks uint64
	prof       []byte
}

func startHeapSampler(withProfile bool) *heapSampler {
	h := &heapSampler{quit: make(chan struct{}), done: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	go func() {
		defer close(h.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var profiled uint64
		var buf bytes.Buffer
		for {
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				h.peak = max(h.peak, sample[0].Value.Uint64())
			}
			if sample[1].Value.Kind() == metrics.KindUint64 {
				h.peakStacks = max(h.peakStacks, sample[1].Value.Uint64())
			}
			if withProfile && h.peak > profiled+profiled/10 {
				profiled = h.peak
				buf.Reset()
				if err := pprof.Lookup("heap").WriteTo(&buf, 0); err == nil {
					h.prof = slices.Clone(buf.Bytes())
				}
			}
			select {
			case <-h.quit:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// stop ends the sampling and returns the peak.
func (h *heapSampler) stop() uint64 {
	h.stopOnce.Do(func() { close(h.quit) })
	<-h.done
	return h.peak
}

// stacks is the peak of goroutine stacks; call it after stop.
func (h *heapSampler) stacks() uint64 { return h.peakStacks }

// profile is the last heap profile taken (nil when none was asked for); call it after stop.
func (h *heapSampler) profile() []byte { return h.prof }
