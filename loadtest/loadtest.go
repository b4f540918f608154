// Package loadtest drives a coordinator with many concurrent clients over loopback gRPC and
// measures it: the latency of each training round, the process's CPU time (getrusage) and its
// peak memory. The coordinator runs in the calling process with an in-memory store; the
// clients run in the same process (InProcess) or in another one (the fedprop command spawns
// `fedprop loadtest clients`), in which case the CPU and memory figures are the
// coordinator's alone.
//
// Every client is a real agent (client.Agent) with a real session training on its own
// synthetic records, talking to the coordinator over its own gRPC connection: what is
// measured is what a deployment of that many branches would do, minus TLS and the network.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/metrics"
	"slices"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
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
	Seed   uint64
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
	}
	return nil
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

// ClientRunner runs the load's clients against the coordinator at addr until ctx ends, and
// then returns what it measured (nil when it measures nothing).
type ClientRunner func(ctx context.Context, addr string) (*ClientStats, error)

// Report is what one load test measured.
type Report struct {
	Clients, Rounds int
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
	// process's whole life), PeakHeap the peak of live Go heap objects sampled during the run.
	PeakRSS  int64
	PeakHeap uint64
	// Contributors is the smallest number of clients any round aggregated.
	Contributors int
	// Results is the number of results the committed versions and the run record say the
	// coordinator aggregated: statistics, training and evaluation.
	Results int
	// Client holds what the clients measured, when they ran in this process.
	Client *ClientStats
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
	}.WithDefaults()
	if err := rc.Validate(); err != nil {
		return Report{}, fmt.Errorf("load test run: %w", err)
	}

	usage0, err := getrusage()
	if err != nil {
		return Report{}, err
	}
	heap := startHeapSampler()
	defer heap.stop()
	start := time.Now()
	store := newTimingStore(mem.New(), start)
	srv, err := coordinator.NewServer(ctx, store, &coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc},
		coordinator.ServerConfig{ID: "loadtest-coordinator", TickInterval: cfg.Tick, Logger: cfg.Logger})
	if err != nil {
		return Report{}, err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return Report{}, fmt.Errorf("load test: listen: %w", err)
	}
	gs := grpctransport.NewGRPCServer(srv, "loadtest-coordinator", nil)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	eg, egctx := errgroup.WithContext(runCtx)
	eg.Go(func() error { return grpctransport.Serve(egctx, gs, lis) })
	eg.Go(func() error { return srv.Run(egctx) })
	var cstats *ClientStats
	eg.Go(func() error {
		var err error
		cstats, err = clients(egctx, lis.Addr().String())
		return err
	})
	eg.Go(func() error {
		defer stopRun() // the run is over: stop the clients, the server and the driver
		select {
		case <-store.done:
			return nil
		case <-egctx.Done():
			return fmt.Errorf("load test: the run did not complete: %w", context.Cause(egctx))
		}
	})
	err = eg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return Report{}, err
	}
	if !store.completed() {
		return Report{}, fmt.Errorf("load test: stopped before the run completed: %w", ctx.Err())
	}
	usage1, err := getrusage()
	if err != nil {
		return Report{}, err
	}
	rep := store.report()
	rep.Clients, rep.Rounds = cfg.Clients, cfg.Rounds
	rep.CPUUser = usage1.user - usage0.user
	rep.CPUSystem = usage1.system - usage0.system
	rep.PeakRSS = usage1.maxRSS
	rep.PeakHeap = heap.stop()
	rep.Client = cstats
	rep.ClientsInProcess = cstats != nil && cstats.InProcess
	return rep, nil
}

// timingStore records when the run's phases end, and signals when the run completes.
type timingStore struct {
	coordinator.Store
	start time.Time

	mu           sync.Mutex
	statsDone    time.Time
	commits      []time.Time
	contributors int
	results      int
	done         chan struct{}
	closed       bool
}

func newTimingStore(s coordinator.Store, start time.Time) *timingStore {
	return &timingStore{Store: s, start: start, done: make(chan struct{}), contributors: -1}
}

func (s *timingStore) SaveRun(ctx context.Context, r coordinator.RunState) error {
	err := s.Store.SaveRun(ctx, r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && r.Standardization != nil && s.statsDone.IsZero() {
		s.statsDone = time.Now()
	}
	return err
}

func (s *timingStore) Commit(ctx context.Context, v coordinator.ModelVersion, r coordinator.RunState) error {
	err := s.Store.Commit(ctx, v, r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.statsDone.IsZero() {
		s.statsDone = s.start
	}
	s.commits = append(s.commits, time.Now())
	if s.contributors < 0 || v.Contributors < s.contributors {
		s.contributors = v.Contributors
	}
	s.results += v.Contributors + v.EvalClients
	if v.Version == 1 {
		s.results += r.StatsClients
	}
	if r.Status == coordinator.RunCompleted && !s.closed {
		s.closed = true
		close(s.done)
	}
	return nil
}

func (s *timingStore) completed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *timingStore) report() Report {
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

// heapSampler samples the live Go heap every 10ms and keeps the peak.
type heapSampler struct {
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}
	peak     uint64
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{quit: make(chan struct{}), done: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(h.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				h.peak = max(h.peak, sample[0].Value.Uint64())
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
