package grpctransport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// syncBuffer is a log sink several goroutines write to.
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

// weakeningConn is a coordinator that deviates for one client: it lowers the noise multiplier
// of every train task it hands that client.
type weakeningConn struct {
	client.Coordinator
	z float64
}

func (c weakeningConn) PollTask(ctx context.Context, id string, wait time.Duration) (task.Task, bool, error) {
	t, ok, err := c.Coordinator.PollTask(ctx, id, wait)
	if ok && t.DP != nil {
		dp := *t.DP
		dp.NoiseMultiplier = c.z
		t.DP = &dp
	}
	return t, ok, err
}

// fed is a coordinator over gRPC on a loopback port with its store and log.
type fed struct {
	addr   string
	store  coordinator.Records
	log    *syncBuffer
	dbPath string
}

func startFed(t *testing.T, rc coordinator.RunConfig, schema *dataset.Schema) *fed {
	t.Helper()
	require.NoError(t, rc.Validate())
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "c.db")
	store, err := bolt.Open(dbPath)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := coordinator.NewServer(ctx, store, &coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: []byte("synthetic")},
		coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpctransport.NewGRPCServer(srv, "privacy-test", nil)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); gs.Stop(); wg.Wait() })
	return &fed{addr: lis.Addr().String(), store: coordinator.Records{Store: store}, log: logs, dbPath: dbPath}
}

func (f *fed) waitFinished(t *testing.T, run string) coordinator.RunState {
	t.Helper()
	require.Eventually(t, func() bool {
		r, err := f.store.Run(context.Background(), run)
		return err == nil && r.Status.Finished()
	}, 120*time.Second, 20*time.Millisecond)
	r, err := f.store.Run(context.Background(), run)
	require.NoError(t, err)
	return r
}

func runAgent(t *testing.T, addr string, session *client.Session, wrap func(client.Coordinator) client.Coordinator, logs *syncBuffer) {
	t.Helper()
	conn, err := grpctransport.Dial(addr)
	require.NoError(t, err)
	var c client.Coordinator = grpctransport.NewClient(conn)
	if wrap != nil {
		c = wrap(c)
	}
	log := quietLogger()
	if logs != nil {
		log = slog.New(slog.NewTextHandler(logs, nil))
	}
	agent := client.NewAgent(c, session, client.AgentConfig{PollWait: 200 * time.Millisecond, MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = agent.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; conn.Close() })
}

// TestAClientRefusesACoordinatorThatWeakensItsNoise: a record-level DP run over gRPC in which
// the coordinator hands one client train tasks with less noise than that client's floor. The
// client refuses each one, logs why, and tells the coordinator; every version is the work of
// the other two clients, and the run's accounting never counts the refusing client.
func TestAClientRefusesACoordinatorThatWeakensItsNoise(t *testing.T) {
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 200, Seed: 31}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	rc := coordinator.RunConfig{
		ID: "dp-floor", Rounds: 2, MinClients: 3, MinCohort: 3, Quorum: 2, RoundDeadline: 3 * time.Second, Seed: 2,
		Strategy: strategy.Config{Name: "fedavg"},
		Privacy:  coordinator.PrivacyConfig{Mechanism: "record", NoiseMultiplier: 1.2, SamplingRate: 0.1, StepsPerRound: 5, ClipNorm: 1},
	}.WithDefaults()
	f := startFed(t, rc, schema)

	victim := branches[2].Name
	victimLog := &syncBuffer{}
	var victimSession *client.Session
	for _, b := range branches {
		opts := client.SessionOptions{}
		var wrap func(client.Coordinator) client.Coordinator
		var logs *syncBuffer
		if b.Name == victim {
			opts.Floor = privacy.Floor{Require: privacy.RequireRecord, MinNoiseMultiplier: 1}
			wrap = func(c client.Coordinator) client.Coordinator { return weakeningConn{Coordinator: c, z: 0.3} }
			logs = victimLog
		}
		s, err := client.NewSession(b.Name, schema, b.Train, b.Test, opts)
		require.NoError(t, err)
		if b.Name == victim {
			victimSession = s
		}
		runAgent(t, f.addr, s, wrap, logs)
	}

	run := f.waitFinished(t, "dp-floor")
	require.Equal(t, coordinator.RunCompleted, run.Status, run.Message)
	versions, err := f.store.Versions(context.Background())
	require.NoError(t, err)
	require.Len(t, versions, 2)
	for _, v := range versions {
		assert.Equal(t, 2, v.Contributors, "version %d: the refusing client's work is in no version", v.Version)
	}
	require.NotNil(t, run.Privacy)
	assert.NotContains(t, run.Privacy.Participation, victim, "the run's accounting never counts it")
	assert.Len(t, run.Privacy.Participation, 2)

	logged := victimLog.String()
	assert.Contains(t, logged, "task declined")
	assert.Contains(t, logged, "noise multiplier 0.3 is below min_noise_multiplier 1")
	assert.Contains(t, f.log.String(), "client refused its task", "the coordinator hears why")
	assert.Contains(t, f.log.String(), "client="+victim)
	eps, _ := victimSession.Epsilon()
	assert.Zero(t, eps, "the refusing client released nothing")
}

// spy keeps everything a client sends the coordinator, and the plaintext values the client
// computed before they were protected.
type spy struct {
	mu     sync.Mutex
	sent   []task.Result
	regs   []task.Registration
	plains [][]float64
}

type spyConn struct {
	client.Coordinator
	s *spy
}

func (c spyConn) Register(ctx context.Context, r task.Registration) error {
	c.s.mu.Lock()
	c.s.regs = append(c.s.regs, r)
	c.s.mu.Unlock()
	return c.Coordinator.Register(ctx, r)
}

func (c spyConn) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	c.s.mu.Lock()
	c.s.sent = append(c.s.sent, r)
	c.s.mu.Unlock()
	return c.Coordinator.SubmitResult(ctx, r)
}

// TestACuriousCoordinatorSeesNoSingleClientsSum runs client-level DP under secure aggregation
// over gRPC and keeps everything the coordinator receives, stores and logs. None of it holds a
// single client's plaintext sum: every stats, train and evaluate result arrives encrypted; no
// value a client computed appears, as bytes or as text, in the requests, the store file or the
// log; every aggregate the committee decrypts sums at least min_contributors results.
func TestACuriousCoordinatorSeesNoSingleClientsSum(t *testing.T) {
	cfg := synth.Config{Branches: 4, CustomersPerBranch: 200, Seed: 41}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	var committee []string
	for _, b := range branches {
		committee = append(committee, b.Name)
	}
	rc := coordinator.RunConfig{
		ID: "curious", Rounds: 2, MinClients: 4, MinCohort: 4, Quorum: 3, RoundDeadline: 5 * time.Second, Seed: 2,
		Strategy:          strategy.Config{Name: "fedavg"},
		SecureAggregation: coordinator.SecureAggregationConfig{Mode: "he", Committee: committee, Threshold: 3, MinContributors: 3},
		Privacy:           coordinator.PrivacyConfig{Mechanism: "client", NoiseMultiplier: 1, SamplingRate: 1, ClipNorm: 1},
	}.WithDefaults()
	f := startFed(t, rc, schema)

	dir := t.TempDir()
	sp := &spy{}
	var decrypts sync.Map // task id -> contributors stated to the member
	ca, err := pki.NewCA(pki.InitOptions{})
	require.NoError(t, err)
	for _, b := range branches {
		state := client.StateDir(filepath.Join(dir, b.Name))
		id, err := state.Identity()
		require.NoError(t, err)
		cred, err := ca.Issue(pki.IssueRequest{Role: pki.RoleClient, Name: b.Name})
		require.NoError(t, err)
		signer, err := cred.Signer()
		require.NoError(t, err)
		// Members vouch for their identity keys over the wire and check each other's, and every
		// aggregate against its signed contributions, fetched over the connection.
		src := &lateSource{}
		member, err := client.NewMember(client.MemberConfig{MinContributors: 3, Identity: id, Signer: signer, Verifier: pki.NewVerifier(ca.Certificate()),
			Contributions: src})
		require.NoError(t, err)
		protector := client.ProtectorFunc(func(_ context.Context, _ task.Task, v []float64) (task.Vector, error) {
			sp.mu.Lock()
			sp.plains = append(sp.plains, append([]float64(nil), v...))
			sp.mu.Unlock()
			return task.Vector{Plain: v}, nil
		})
		s, err := client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{Member: member, RequireEncryption: true, Protector: protector,
			Signer: signer})
		require.NoError(t, err)
		runAgent(t, f.addr, s, func(c client.Coordinator) client.Coordinator {
			src.set(c.(client.ContributionSource))
			return decryptWatch{Coordinator: spyConn{Coordinator: c, s: sp}, seen: &decrypts}
		}, nil)
	}
	run := f.waitFinished(t, "curious")
	require.Equal(t, coordinator.RunCompleted, run.Status, run.Message)

	sp.mu.Lock()
	defer sp.mu.Unlock()
	var received bytes.Buffer
	sums := 0
	for _, r := range sp.sent {
		switch r.Kind {
		case task.KindStats, task.KindTrain, task.KindEvaluate:
			sums++
			assert.Empty(t, r.Sum.Plain, "a %s result left %s in plaintext", r.Kind, r.ClientID)
			assert.NotEmpty(t, r.Sum.Ciphertext)
		}
		received.Write(r.Sum.Ciphertext)
		received.Write(r.PublicKeyShare)
		received.Write(r.DecryptionShare)
		for _, b := range r.Boxes {
			received.Write(b.Box)
		}
	}
	require.Greater(t, sums, 10)
	storeFile, err := os.ReadFile(f.dbPath)
	require.NoError(t, err)
	logged := f.log.String()

	checked := 0
	for _, v := range sp.plains {
		for _, x := range v {
			// Counts, indicators and zeros are the same at every client; a value worth
			// hiding is one with a fractional part.
			if x == math.Trunc(x) || x == math.Trunc(x)+0.5 {
				continue
			}
			checked++
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], math.Float64bits(x))
			require.False(t, bytes.Contains(received.Bytes(), b[:]), "a client's value %v is in what the coordinator received", x)
			require.False(t, bytes.Contains(storeFile, b[:]), "a client's value %v is in the store as bytes", x)
			text := strconv.FormatFloat(x, 'g', -1, 64)
			require.NotContains(t, string(storeFile), text, "a client's value is in the store as text")
			require.NotContains(t, logged, text, "a client's value is in the coordinator's log")
		}
	}
	require.Greater(t, checked, 200, "the clients' plaintext values were seen and checked")

	n := 0
	decrypts.Range(func(_, v any) bool {
		n++
		assert.GreaterOrEqual(t, v.(int), 3, "every decrypted aggregate sums at least min_contributors results")
		return true
	})
	assert.Greater(t, n, 0)
}

// decryptWatch records, per decrypt task a member is handed, the contributors it states.
type decryptWatch struct {
	client.Coordinator
	seen *sync.Map
}

func (c decryptWatch) PollTask(ctx context.Context, id string, wait time.Duration) (task.Task, bool, error) {
	t, ok, err := c.Coordinator.PollTask(ctx, id, wait)
	if ok && t.Decrypt != nil {
		c.seen.Store(t.ID, t.Decrypt.Contributors)
	}
	return t, ok, err
}
