package crashtest_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/crashpoint"
	"github.com/fedprop/fedprop/internal/sharedtest"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/store/postgres"
	"github.com/fedprop/fedprop/store/postgres/pgtest"
	"github.com/fedprop/fedprop/synth"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// The run every crash test drives: small enough that one takes well under a second.
const (
	runID       = "crash"
	rounds      = 3
	branchCount = 3
	// Every result, aggregate and commit of one run, for choosing crash points: stats, then
	// train and evaluate in every round.
	resultsPerRun    = branchCount + rounds*2*branchCount
	aggregatesPerRun = 1 + rounds*2
	waitLimit        = 90 * time.Second
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fixture is what every run of a test shares: the fedprop binary and a tiny synthetic
// federation (the schema file the coordinator reads, the branches' records).
type fixture struct {
	bin        string
	insecure   bool // the coordinator command wants --insecure to serve plaintext
	dir        string
	schemaPath string
	schema     *dataset.Schema
	branches   []synth.Branch
	// he runs the federation with secure aggregation: every branch is on the committee and
	// keeps its key material in memory across coordinator restarts.
	he      bool
	members map[string]*client.Member
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.bin, f.insecure = buildFedprop(t)
	cfg := synth.Config{Branches: branchCount, CustomersPerBranch: 80, Seed: 7}.WithDefaults()
	var err error
	f.branches, err = synth.Generate(cfg)
	require.NoError(t, err)
	doc, err := yaml.Marshal(synth.Schema(cfg))
	require.NoError(t, err)
	f.schemaPath = filepath.Join(f.dir, "schema.yaml")
	require.NoError(t, os.WriteFile(f.schemaPath, doc, 0o600))
	// The clients read the file the coordinator reads, so that their schema hashes agree.
	f.schema, err = dataset.LoadSchema(f.schemaPath)
	require.NoError(t, err)
	return f
}

// buildFedprop builds cmd/fedprop into a temporary directory (go build caches, so every
// test after the first links in about a second).
func buildFedprop(t *testing.T) (string, bool) {
	t.Helper()
	root, err := sharedtest.ModuleRoot()
	require.NoError(t, err)
	gobin, err := exec.LookPath("go")
	require.NoError(t, err, "the crash tests build the fedprop binary with the go command")
	out := filepath.Join(t.TempDir(), "fedprop")
	cmd := exec.Command(gobin, "build", "-o", out, "./cmd/fedprop")
	cmd.Dir = root
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/fedprop:\n%s", msg)
	help, err := exec.Command(out, "coordinator", "--help").CombinedOutput()
	require.NoError(t, err, "%s", help)
	return out, bytes.Contains(help, []byte("--insecure"))
}

// freeAddr returns a loopback address with a port that was free a moment ago. The child
// coordinator listens there, and listens there again after each restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

// writeConfig writes the coordinator's config for one run.
func (f *fixture) writeConfig(t *testing.T, dir, id, store, addr string) string {
	t.Helper()
	cfg := map[string]any{
		"listen": addr,
		"store":  store,
		"id":     id,
		"tick":   "10ms",
		"run": map[string]any{
			"id": runID, "schema": f.schemaPath, "rounds": rounds,
			"min_clients": branchCount, "min_cohort": branchCount, "quorum": branchCount,
			// Generous: a phase that missed its deadline would be retried with other seeds
			// and the final model would no longer match the crash-free run's.
			"round_deadline": "60s", "max_attempts": 2, "histogram_bins": 50, "seed": 3,
			"train": map[string]any{"epochs": 1, "batch_size": 16, "learning_rate": 0.1},
			// Branches of 80 customers, small on purpose so that crashes land everywhere:
			// the research opt-out of the plaintext minimum, on both sides.
			"min_records_plaintext": 0,
		},
	}
	if f.he {
		var committee []string
		for _, b := range f.branches {
			committee = append(committee, b.Name)
		}
		cfg["run"].(map[string]any)["secure_aggregation"] = map[string]any{"mode": "he", "committee": committee, "threshold": 2, "min_contributors": 2}
	}
	doc, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(dir, id+".yaml")
	require.NoError(t, os.WriteFile(path, doc, 0o600))
	return path
}

// syncBuffer collects a child's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// child is one `fedprop coordinator` process.
type child struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	state  *os.ProcessState
}

// startCoordinator starts the coordinator with config cfgPath, to be killed at crash
// ("" for never).
func (f *fixture) startCoordinator(t *testing.T, cfgPath, crash string) *child {
	t.Helper()
	args := []string{"coordinator", "--config", cfgPath, "--log-level", "info"}
	if f.insecure {
		args = append(args, "--insecure")
	}
	cmd := exec.Command(f.bin, args...)
	// The run's own directory: whatever the coordinator writes beside it (an audit log, say)
	// stays out of the source tree.
	cmd.Dir = filepath.Dir(cfgPath)
	// Nothing from the test's own environment may configure the child.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FEDPROP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if crash != "" {
		cmd.Env = append(cmd.Env, crashpoint.EnvVar+"="+crash)
	}
	c := &child{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	require.NoError(t, cmd.Start())
	go func() {
		_ = cmd.Wait() // the exit status is read from ProcessState
		c.state = cmd.ProcessState
		close(c.exited)
	}()
	t.Cleanup(c.kill)
	return c
}

func (c *child) done() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// kill ends the child with SIGKILL, as a crash would, and waits for it.
func (c *child) kill() {
	if !c.done() {
		_ = c.cmd.Process.Kill() // it may have exited in the meantime
	}
	<-c.exited
}

// stop ends the child with SIGTERM and requires a clean exit.
func (c *child) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-c.exited:
	case <-time.After(waitLimit):
		c.kill()
		t.Fatalf("coordinator did not stop on SIGTERM:\n%s", c.out)
	}
	require.Equal(t, 0, c.state.ExitCode(), "coordinator exit status:\n%s", c.out)
}

// killedAtCrashPoint reports whether the child died by the planned SIGKILL.
func (c *child) killedAtCrashPoint() bool {
	return c.done() && c.state.ExitCode() == -1 && strings.Contains(c.out.String(), "crashpoint: killing the process at")
}

// clients are one in-process agent per branch, talking gRPC to the coordinator.
type clients struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// dialAny connects to whichever of addrs accepts: the gRPC pick_first policy tries them in
// order and, when the connection breaks, tries them again. This is how a client reaches a
// pair of replicas of which only the leader listens. Reconnection backs off from 20ms to
// 200ms rather than gRPC's default 1s to 2min, so that restarts cost the tests little time.
func dialAny(t *testing.T, addrs ...string) *grpc.ClientConn {
	t.Helper()
	r := manual.NewBuilderWithScheme("replicas")
	var state resolver.State
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	conn, err := grpc.NewClient(r.Scheme()+":///coordinator", grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	require.NoError(t, err)
	return conn
}

func (f *fixture) session(t *testing.T, b synth.Branch) *client.Session {
	t.Helper()
	opts := client.SessionOptions{Floor: privacy.Floor{MinRecordsPlaintext: new(int)}}
	if f.he {
		// A member's key material outlives the agent, as its state directory would.
		m, ok := f.members[b.Name]
		if !ok {
			id, err := client.StateDir(t.TempDir()).Identity()
			require.NoError(t, err)
			m, err = client.NewMember(client.MemberConfig{MinContributors: 2, Identity: id})
			require.NoError(t, err)
			f.members[b.Name] = m
		}
		opts = client.SessionOptions{Member: m, RequireEncryption: true, Floor: opts.Floor}
	}
	s, err := client.NewSession(b.Name, f.schema, b.Train, b.Test, opts)
	require.NoError(t, err)
	return s
}

func agentConfig() client.AgentConfig {
	return client.AgentConfig{PollWait: 500 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: quietLogger()}
}

// startClients runs one agent per branch until stop.
func (f *fixture) startClients(t *testing.T, addrs ...string) *clients {
	t.Helper()
	return f.startWrappedClients(t, nil, addrs...)
}

// startWrappedClients runs one agent per branch until stop, each talking to the coordinator
// through wrap (when not nil).
func (f *fixture) startWrappedClients(t *testing.T, wrap func(client.Coordinator) client.Coordinator, addrs ...string) *clients {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cl := &clients{cancel: cancel}
	for _, b := range f.branches {
		conn := dialAny(t, addrs...)
		var c client.Coordinator = grpctransport.NewClient(conn)
		if wrap != nil {
			c = wrap(c)
		}
		agent := client.NewAgent(c, f.session(t, b), agentConfig())
		cl.wg.Add(1)
		go func() {
			defer cl.wg.Done()
			defer conn.Close()
			_ = agent.Run(ctx) // returns ctx's error
		}()
	}
	t.Cleanup(cl.stop)
	return cl
}

func (cl *clients) stop() {
	cl.cancel()
	cl.wg.Wait()
}

// outcome is how waiting on a coordinator ended.
type outcome int

const (
	exited outcome = iota
	completed
)

// waitExitOrCompletion waits until the child exits or reports the run completed.
func waitExitOrCompletion(t *testing.T, c *child, admin *grpctransport.AdminClient) outcome {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if c.done() {
			return exited
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := admin.GetRun(ctx, runID)
		cancel()
		if err == nil && r.GetState() == string(coordinator.RunCompleted) {
			return completed
		}
		select {
		case <-c.exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("coordinator neither exited nor completed the run in %v:\n%s", waitLimit, c.out)
	return exited
}

// backend makes and opens one kind of store.
type backend struct {
	name string
	// newStore returns the coordinator's store setting for a fresh, empty store.
	newStore func(t *testing.T, dir string) string
	open     func(t *testing.T, setting string) store.Store
}

func boltBackend() backend {
	return backend{
		name:     "bbolt",
		newStore: func(_ *testing.T, dir string) string { return filepath.Join(dir, "coordinator.db") },
		open: func(t *testing.T, setting string) store.Store {
			s, err := bolt.Open(setting)
			require.NoError(t, err)
			return s
		},
	}
}

func postgresBackend() backend {
	return backend{
		name:     "postgres",
		newStore: func(t *testing.T, _ string) string { return pgtest.DSN(t) },
		open: func(t *testing.T, setting string) store.Store {
			s, err := postgres.Open(context.Background(), setting, postgres.Options{MaxConns: 1})
			require.NoError(t, err)
			return s
		},
	}
}

// ledger remembers every committed version seen so far, to check that none is ever lost,
// changed or duplicated. It compares versions by the bytes the store keeps of them (where a
// NaN in a metric compares equal to itself).
type ledger struct {
	seen map[uint64][]byte
	last coordinator.ModelVersion
}

func newLedger() *ledger { return &ledger{seen: map[uint64][]byte{}} }

// check reads the whole store and returns the latest committed version (0 for none).
func (l *ledger) check(t *testing.T, s store.Store) uint64 {
	t.Helper()
	ctx := context.Background()
	recs, err := s.Versions(ctx)
	require.NoError(t, err)
	for i, rec := range recs {
		n := uint64(i + 1)
		v, err := coordinator.DecodeVersion(rec)
		require.NoError(t, err)
		require.Equal(t, n, v.Version, "versions are 1, 2, 3, ... with no gap or repeat")
		assert.Equal(t, n-1, v.Parent)
		assert.Equal(t, runID, v.RunID)
		assert.Equal(t, int(n), v.Round, "version %d", n)
		require.NotEmpty(t, v.Weights, "version %d", n)
		for _, w := range v.Weights {
			require.False(t, math.IsNaN(w) || math.IsInf(w, 0), "version %d has a non-finite weight", n)
		}
		if before, ok := l.seen[n]; ok {
			require.Equal(t, string(before), string(rec.Body), "version %d changed after it was committed", n)
		}
		l.seen[n] = rec.Body
		l.last = v
	}
	require.GreaterOrEqual(t, len(recs), len(l.seen), "a committed version was lost")
	latest := uint64(len(recs))
	run, err := coordinator.Records{Store: s}.Run(ctx, runID)
	if latest == 0 && err != nil {
		require.ErrorIs(t, err, coordinator.ErrNotFound)
		return 0
	}
	require.NoError(t, err)
	assert.NotEqual(t, coordinator.RunFailed, run.Status, run.Message)
	assert.Equal(t, int(latest), run.LastRound, "the run record and the versions were committed together")
	assert.Equal(t, latest, run.LatestVersion)
	return latest
}

// checkStore opens the store (the coordinator must be dead or done with it), checks it and
// closes it again.
func (l *ledger) checkStore(t *testing.T, b backend, store string) uint64 {
	t.Helper()
	s := b.open(t, store)
	defer func() { require.NoError(t, s.Close()) }()
	return l.check(t, s)
}

// result is the end state of a completed run.
type result struct {
	final coordinator.ModelVersion
	run   coordinator.RunState
}

func (l *ledger) finish(t *testing.T, b backend, store string) result {
	t.Helper()
	s := b.open(t, store)
	defer func() { require.NoError(t, s.Close()) }()
	require.Equal(t, uint64(rounds), l.check(t, s), "every round committed exactly once")
	run, err := coordinator.Records{Store: s}.Run(context.Background(), runID)
	require.NoError(t, err)
	require.Equal(t, coordinator.RunCompleted, run.Status, run.Message)
	return result{final: l.last, run: run}
}

// crashRun runs one federation to completion through the planned crashes: for each crash
// point it starts the coordinator, waits for the kill (or, for a second point, the run's
// completion), checks the store, and restarts; finally it runs the coordinator without a
// crash point until the run completes.
func (f *fixture) crashRun(t *testing.T, b backend, plan []string) result {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	store := b.newStore(t, dir)
	cfgPath := f.writeConfig(t, dir, "coordinator", store, addr)
	cl := f.startClients(t, addr)
	defer cl.stop()
	adminConn := dialAny(t, addr)
	defer adminConn.Close()
	admin := grpctransport.NewAdminClient(adminConn)
	led := newLedger()

	var (
		latest uint64
		final  *child // the coordinator that completes the run
	)
	for i, point := range plan {
		spec, err := crashpoint.Parse(point)
		require.NoError(t, err)
		c := f.startCoordinator(t, cfgPath, point)
		start := time.Now()
		out := waitExitOrCompletion(t, c, admin)
		t.Logf("%s: %v after %v", point, out, time.Since(start))
		if out == completed {
			require.NotZero(t, i, "the first crash point %s is reached in every run", point)
			final = c
			break
		}
		require.True(t, c.killedAtCrashPoint(), "coordinator died, but not by the planned kill at %s:\n%s", point, c.out)
		before := latest
		latest = led.checkStore(t, b, store)
		switch spec.Point {
		case "commit":
			assert.Equal(t, before+uint64(spec.N)-1, latest, "killed before its commit %d: that version is not stored", spec.N)
		case "committed":
			assert.Equal(t, before+uint64(spec.N), latest, "killed after its commit %d: that version is stored", spec.N)
		default:
			assert.GreaterOrEqual(t, latest, before)
		}
	}
	if final == nil {
		final = f.startCoordinator(t, cfgPath, "")
		start := time.Now()
		require.Equal(t, completed, waitExitOrCompletion(t, final, admin), "coordinator exited:\n%s", final.out)
		t.Logf("completed after %v", time.Since(start))
	}
	// Clients first: with no call in flight the coordinator stops at once.
	cl.stop()
	final.stop(t)
	return led.finish(t, b, store)
}

// assertSameModel checks a run's final model against the crash-free reference: the same
// tasks were computed (a redone phase asks the same questions with the same seeds), so only
// the order in which results were added may differ.
func assertSameModel(t *testing.T, want, got result) {
	t.Helper()
	assert.InDeltaSlice(t, want.final.Weights, got.final.Weights, 1e-9, "the final model is the crash-free run's")
	assert.Equal(t, want.final.Examples, got.final.Examples, "every client's examples counted once")
	assert.Equal(t, want.final.Contributors, got.final.Contributors)
	assert.Equal(t, want.run.StatsRecords, got.run.StatsRecords, "statistics counted every record once")
	require.NotNil(t, got.final.Evaluation)
	assert.InDelta(t, want.final.Evaluation.AUC, got.final.Evaluation.AUC, 1e-9)
}
