package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// ClientStats is what the clients measured.
type ClientStats struct {
	// InProcess is true when the clients ran in the coordinator's process.
	InProcess bool `json:"in_process"`
	// Submits counts accepted results; Duplicates the ones the coordinator already had.
	Submits    int `json:"submits"`
	Duplicates int `json:"duplicates"`
	// SubmitP50 and SubmitP99 are percentiles of the SubmitResult call's latency as the
	// clients saw it: the result's transfer, its aggregation, and (for a result that
	// completes its phase) the commit.
	SubmitP50 time.Duration `json:"submit_p50_ns"`
	SubmitP99 time.Duration `json:"submit_p99_ns"`
	// CPUUser, CPUSystem and PeakRSS are the client process's, when it was another one.
	CPUUser   time.Duration `json:"cpu_user_ns,omitempty"`
	CPUSystem time.Duration `json:"cpu_system_ns,omitempty"`
	PeakRSS   int64         `json:"peak_rss_bytes,omitempty"`
	// PeakHeap is the peak of the clients' Go heap objects, HeapProfile a heap profile taken
	// near it when Config.HeapProfile asked for one (the child process writes it to a file).
	PeakHeap    uint64 `json:"peak_heap_bytes,omitempty"`
	HeapProfile []byte `json:"-"`
}

// InProcess returns the ClientRunner that runs cfg's clients in this process (RunClients).
func InProcess(cfg Config) ClientRunner {
	return func(ctx context.Context, target Target) (*ClientStats, error) {
		st, err := RunClients(ctx, cfg, target)
		if st != nil {
			st.InProcess = true
		}
		return st, err
	}
}

// RunClients runs cfg.Clients agents, each on its own gRPC connection to target (mutual TLS
// with its own kit unless cfg.Insecure) and its own synthetic branch, until ctx ends; every
// goroutine and connection it started has ended when it returns.
func RunClients(ctx context.Context, cfg Config, target Target) (*ClientStats, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("load test clients: %w", err)
	}
	schema, _, err := cfg.schema()
	if err != nil {
		return nil, err
	}
	branches, err := synth.Generate(cfg.synthConfig())
	if err != nil {
		return nil, fmt.Errorf("load test data: %w", err)
	}
	rec := &recorder{}
	heap := startHeapSampler(cfg.HeapProfile)
	defer heap.stop()
	var (
		wg    sync.WaitGroup
		conns []*grpc.ClientConn
	)
	defer func() {
		wg.Wait()
		for _, c := range conns {
			_ = c.Close() // every call on it has returned
		}
	}()
	members := map[string]bool{}
	for _, id := range cfg.committee() {
		members[id] = true
	}
	for _, b := range branches {
		opts, err := sessionOptions(cfg, target, b.Name, members[b.Name])
		if err != nil {
			return nil, fmt.Errorf("load test client %s: %w", b.Name, err)
		}
		session, err := client.NewSession(b.Name, schema, b.Train, b.Test, opts)
		if err != nil {
			return nil, fmt.Errorf("load test client %s: %w", b.Name, err)
		}
		conn, err := dial(cfg, target, b.Name)
		if err != nil {
			return nil, fmt.Errorf("load test client %s: %w", b.Name, err)
		}
		conns = append(conns, conn)
		agent := client.NewAgent(&timedConn{Coordinator: grpctransport.NewClient(conn), rec: rec}, session, client.AgentConfig{
			PollWait: cfg.PollWait, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Logger: cfg.Logger,
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = agent.Run(ctx) // returns ctx's error once the load test is over
		}()
	}
	<-ctx.Done()
	wg.Wait()
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("load test clients: %w", context.Cause(ctx))
	}
	st := rec.stats()
	st.PeakHeap = heap.stop()
	st.HeapProfile = heap.profile()
	return st, nil
}

// sessionOptions are a load test client's: in he mode it encrypts every sum, and a committee
// member holds an identity key (and, over TLS, endorses its setup with its certificate's key
// and checks the other members', as `fedprop client` does with its kit).
func sessionOptions(cfg Config, target Target, name string, member bool) (client.SessionOptions, error) {
	opts := client.SessionOptions{Floor: privacy.Floor{MinRecordsPlaintext: new(int)}, RequireEncryption: cfg.he()}
	var err error
	if target.KitDir != "" {
		// Every encrypted result is signed with the client's certificate key, as `fedprop
		// client` does: the coordinator's edge refuses an unsigned one over mutual TLS.
		if opts.Signer, err = pki.LoadSigner(pki.KitFiles(target.KitDir, name)); err != nil {
			return opts, err
		}
	}
	if !member {
		return opts, nil
	}
	identity, err := secagg.NewIdentity(nil)
	if err != nil {
		return opts, err
	}
	mc := client.MemberConfig{MinContributors: 2, Identity: identity}
	if target.KitDir != "" {
		kit := pki.KitFiles(target.KitDir, name)
		mc.Signer = opts.Signer
		if mc.Verifier, err = pki.LoadVerifier(kit.CA); err != nil {
			return opts, err
		}
	}
	if opts.Member, err = client.NewMember(mc); err != nil {
		return opts, err
	}
	return opts, nil
}

// dial opens a client's own connection to the coordinator, with its kit unless insecure.
func dial(cfg Config, target Target, name string) (*grpc.ClientConn, error) {
	params := grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 5 * time.Second,
	})
	if cfg.Insecure {
		return grpctransport.Dial(target.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()), params)
	}
	if target.KitDir == "" {
		return nil, errors.New("no TLS kits: the load test is not insecure, and its target names no kit directory")
	}
	return grpctransport.DialTLS(target.Addr, pki.KitFiles(target.KitDir, name), params)
}

// timedConn measures the clients' SubmitResult calls.
type timedConn struct {
	client.Coordinator
	rec *recorder
}

func (c *timedConn) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	start := time.Now()
	dup, err := c.Coordinator.SubmitResult(ctx, r)
	if err == nil {
		c.rec.add(time.Since(start), dup)
	}
	return dup, err
}

// FetchContributions passes a committee member's fetch of an aggregate's contributions to the
// gRPC client (an embedded interface would hide it from the agent).
func (c *timedConn) FetchContributions(ctx context.Context, q task.ContributionQuery, size int, each func(int, []byte) error) error {
	src, ok := c.Coordinator.(client.ContributionSource)
	if !ok {
		return errors.New("the connection cannot fetch contributions")
	}
	return src.FetchContributions(ctx, q, size, each)
}

type recorder struct {
	mu         sync.Mutex
	submits    []time.Duration
	duplicates int
}

func (r *recorder) add(d time.Duration, dup bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if dup {
		r.duplicates++
		return
	}
	r.submits = append(r.submits, d)
}

func (r *recorder) stats() *ClientStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &ClientStats{Submits: len(r.submits), Duplicates: r.duplicates,
		SubmitP50: Percentile(r.submits, 50), SubmitP99: Percentile(r.submits, 99)}
}
