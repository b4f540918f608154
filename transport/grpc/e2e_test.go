package grpctransport_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// federation is a coordinator on a real loopback socket and clients that each read their own
// CSV shard and talk to it over gRPC.
type federation struct {
	t        *testing.T
	dir      string
	names    []string
	schema   *dataset.Schema
	doc      []byte
	spec     coordinator.RunSpec
	addr     string
	storeDB  string
	stop     func()
	store    coordinator.Records
	server   *coordinator.Server
	clientWG sync.WaitGroup
	cancelCl context.CancelFunc
	// loader takes runs started over the admin service (nil: none are).
	loader grpctransport.SpecLoader
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newFederation writes three synthetic branch CSVs and the schema to a temporary directory.
func newFederation(t *testing.T, rounds int) *federation {
	t.Helper()
	dir := t.TempDir()
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 300, Seed: 11}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	doc, err := yaml.Marshal(schema)
	require.NoError(t, err)
	schemaPath := filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schemaPath, doc, 0o644))
	var names []string
	for _, b := range branches {
		names = append(names, b.Name)
		for name, d := range map[string][2]*dataset.Dataset{b.Name + ".csv": {b.Train, b.TrainOptedOut}, b.Name + "-test.csv": {b.Test, b.TestOptedOut}} {
			f, err := os.Create(filepath.Join(dir, name))
			require.NoError(t, err)
			require.NoError(t, synth.WriteShard(f, d[0], d[1]))
			require.NoError(t, f.Close())
		}
	}
	rc := coordinator.RunConfig{
		ID: "e2e", Schema: schemaPath, Rounds: rounds, MinClients: 3, MinCohort: 3, Quorum: 3,
		RoundDeadline: 20 * time.Second, Seed: 5, Strategy: strategy.Config{Name: "fedavg"},
	}.WithDefaults()
	require.NoError(t, rc.Validate())
	return &federation{
		t: t, dir: dir, schema: schema, doc: doc, names: names,
		spec:    coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc},
		addr:    "127.0.0.1:0",
		storeDB: filepath.Join(dir, "coordinator.db"),
	}
}

// startCoordinator starts (or restarts, on the same port) the coordinator.
func (f *federation) startCoordinator() {
	t := f.t
	store, err := bolt.Open(f.storeDB)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := coordinator.NewServer(ctx, store, &f.spec, coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: quietLogger()})
	require.NoError(t, err)
	var lis net.Listener
	require.Eventually(t, func() bool {
		lis, err = net.Listen("tcp", f.addr)
		return err == nil
	}, 5*time.Second, 50*time.Millisecond, "listen on %s", f.addr)
	f.addr = lis.Addr().String()
	gs := grpctransport.NewGRPCServer(srv, "test-coordinator", f.loader)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	f.store, f.server = coordinator.Records{Store: store}, srv
	f.stop = func() {
		cancel()
		gs.Stop() // abrupt: in-flight calls fail, as when the process dies
		wg.Wait()
		require.NoError(t, store.Close())
	}
}

// startClients runs one agent per branch over gRPC.
func (f *federation) startClients() {
	t := f.t
	ctx, cancel := context.WithCancel(context.Background())
	f.cancelCl = cancel
	for _, name := range f.names {
		train, err := dataset.ReadCSV(ctx, filepath.Join(f.dir, name+".csv"), f.schema)
		require.NoError(t, err)
		eval, err := dataset.ReadCSV(ctx, filepath.Join(f.dir, name+"-test.csv"), f.schema)
		require.NoError(t, err)
		session, err := client.NewSession(name, f.schema, train, eval, client.SessionOptions{})
		require.NoError(t, err)
		conn, err := grpctransport.Dial(f.addr)
		require.NoError(t, err)
		agent := client.NewAgent(grpctransport.NewClient(conn), session, client.AgentConfig{
			PollWait: 200 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: quietLogger(),
		})
		f.clientWG.Add(1)
		go func() {
			defer f.clientWG.Done()
			defer conn.Close()
			_ = agent.Run(ctx)
		}()
	}
}

func (f *federation) stopClients() {
	f.cancelCl()
	f.clientWG.Wait()
}

func (f *federation) dial() *grpc.ClientConn {
	conn, err := grpctransport.Dial(f.addr)
	require.NoError(f.t, err)
	f.t.Cleanup(func() { conn.Close() })
	return conn
}

func (f *federation) waitCompleted(timeout time.Duration) {
	admin := grpctransport.NewAdminClient(f.dial())
	require.Eventually(f.t, func() bool {
		r, err := admin.GetRun(context.Background(), "e2e")
		return err == nil && r.GetState() == string(coordinator.RunCompleted)
	}, timeout, 20*time.Millisecond, "run completes")
}

func TestThreeClientsTrainOverGRPCAndTheModelIsPulled(t *testing.T) {
	f := newFederation(t, 3)
	f.startCoordinator()
	defer f.stop()
	f.startClients()
	defer f.stopClients()
	f.waitCompleted(60 * time.Second)

	ctx := context.Background()
	versions, err := f.store.Versions(ctx)
	require.NoError(t, err)
	require.Len(t, versions, 3)
	last := versions[2]

	models := grpctransport.NewModelClient(f.dial())
	list, err := models.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 3)
	doc, raw, err := models.Pull(ctx, 0, true)
	require.NoError(t, err)
	assert.NotEmpty(t, raw)
	assert.Equal(t, last.Version, doc.Version)
	assert.Equal(t, last.Weights, doc.Weights(), "the pulled model is the last committed version, bit for bit")
	assert.Equal(t, last.Features, doc.Features)
	require.NotNil(t, doc.Metrics)
	assert.Greater(t, doc.Metrics.AUC, 0.6, "the federated model learned something")
	assert.True(t, doc.ConsentTracked)

	// The pulled document scores the held-out rows exactly as the coordinator evaluated them.
	eval, err := dataset.ReadCSV(ctx, filepath.Join(f.dir, f.names[0]+"-test.csv"), f.schema)
	require.NoError(t, err)
	scores, err := doc.Score(eval)
	require.NoError(t, err)
	assert.Len(t, scores, eval.Len())

	_, _, err = models.Pull(ctx, 99, true)
	require.ErrorIs(t, err, coordinator.ErrNotFound)
}

func TestCoordinatorRestartBetweenRoundsLosesAndDuplicatesNothing(t *testing.T) {
	f := newFederation(t, 6)
	f.startCoordinator()
	f.startClients()
	defer f.stopClients()

	// Let two versions commit, then kill the coordinator between rounds.
	require.Eventually(t, func() bool {
		v, err := f.store.Latest(context.Background())
		return err == nil && v.Version >= 2
	}, 60*time.Second, 5*time.Millisecond)
	f.stop()

	// The clients keep retrying; a new coordinator on the same address and store resumes.
	f.startCoordinator()
	defer f.stop()
	f.waitCompleted(60 * time.Second)

	versions, err := f.store.Versions(context.Background())
	require.NoError(t, err)
	require.Len(t, versions, 6, "every round committed exactly once")
	for i, v := range versions {
		assert.Equal(t, uint64(i+1), v.Version)
		assert.Equal(t, i+1, v.Round)
		assert.Equal(t, uint64(i), v.Parent)
	}
	run, err := f.store.Run(context.Background(), "e2e")
	require.NoError(t, err)
	assert.Equal(t, coordinator.RunCompleted, run.Status)
	assert.Equal(t, 6, run.LastRound)
}
