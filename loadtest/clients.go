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
	"github.com/fedprop/fedprop/privacy"
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
}

// InProcess returns the ClientRunner that runs cfg's clients in this process (RunClients).
func InProcess(cfg Config) ClientRunner {
	return func(ctx context.Context, addr string) (*ClientStats, error) {
		st, err := RunClients(ctx, cfg, addr)
		if st != nil {
			st.InProcess = true
		}
		return st, err
	}
}

// RunClients runs cfg.Clients agents, each on its own gRPC connection to addr and its own
// synthetic branch, until ctx ends; every goroutine and connection it started has ended when
// it returns.
func RunClients(ctx context.Context, cfg Config, addr string) (*ClientStats, error) {
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
	for _, b := range branches {
		session, err := client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{Floor: privacy.Floor{MinRecordsPlaintext: new(int)}})
		if err != nil {
			return nil, fmt.Errorf("load test client %s: %w", b.Name, err)
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 5 * time.Second,
			}))
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
	return rec.stats(), nil
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
