package console_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/console"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// bench is a coordinator behind mutual TLS on a loopback port, with the oversight console on
// another, both as `fedprop coordinator` wires them (console.listen): the console's sign-in
// service on the gRPC server, its federation ledger on the edge, the edge's deny list.
type bench struct {
	t        *testing.T
	dir      string
	ca       *pki.CA
	addr     string // gRPC
	url      string // https://127.0.0.1:PORT
	srv      *coordinator.Server
	con      *console.Console
	denyPath string
	deny     *pki.DenyList
	now      *clock
	schema   *dataset.Schema
	names    []string
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// clock is the console's clock, which tests move forward to expire tokens.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// withinPolicy is a fairness policy the synthetic bank's versions meet: gaps up to 0.5.
var withinPolicy = fairness.Policy{MaxDemographicParityGap: 0.5, MaxEqualOpportunityGap: 0.5}

// strictPolicy flags every version of the synthetic bank: its gaps between age bands and
// between genders are a few hundredths or more, far above 0.001.
var strictPolicy = fairness.Policy{MaxDemographicParityGap: 0.001, MaxEqualOpportunityGap: 0.001}

// runSpec is a short three-branch run over the synthetic bank data: every round evaluated,
// with a fairness audit of its sensitive attributes under policy.
func runSpec(t *testing.T, dir string, rounds int, policy fairness.Policy) (coordinator.RunSpec, []string) {
	t.Helper()
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 300, Seed: 11}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	doc, err := yaml.Marshal(schema)
	require.NoError(t, err)
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
		ID: "retail-q3", Schema: "schema.yaml", Rounds: rounds, MinClients: 3, MinCohort: 3, Quorum: 3, EvalEvery: 1,
		RoundDeadline: 30 * time.Second, Seed: 5, Strategy: strategy.Config{Name: "fedavg"},
		Fairness: coordinator.FairnessConfig{Policy: &policy},
	}.WithDefaults()
	require.NoError(t, rc.Validate())
	return coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc}, names
}

// startBench starts a bench whose versions meet the fairness policy (withinPolicy).
func startBench(t *testing.T, rounds int) *bench {
	t.Helper()
	return startBenchWithPolicy(t, rounds, withinPolicy)
}

// startBenchWithPolicy starts a bench whose run is judged by the fairness policy given.
func startBenchWithPolicy(t *testing.T, rounds int, policy fairness.Policy) *bench {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.InitOptions{Name: "test"})
	require.NoError(t, err)
	b := &bench{t: t, dir: dir, ca: ca, now: &clock{}}
	spec, names := runSpec(t, dir, rounds, policy)
	b.schema, b.names = spec.Schema, names

	serverFiles := b.kit(pki.RoleCoordinator, "coordinator")
	tlsCfg, err := pki.ServerTLSConfig(serverFiles)
	require.NoError(t, err)
	b.denyPath = filepath.Join(dir, "deny.txt")
	require.NoError(t, os.WriteFile(b.denyPath, []byte("# revoked certificates\n"), 0o600))
	b.deny, err = pki.LoadDenyList(b.denyPath)
	require.NoError(t, err)
	fed := console.NewFederation(nil)
	opts, err := grpctransport.Edge{TLS: tlsCfg, Revoked: b.deny.Revoked, Logger: quietLogger()}.ServerOptions()
	require.NoError(t, err)
	opts = append(opts, grpctransport.ObserveClients(fed))

	st, err := bolt.Open(filepath.Join(dir, "fedprop.db"))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	verifier := pki.NewVerifier(ca.Certificate())
	b.srv, err = coordinator.NewServer(ctx, st, &spec, coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: quietLogger(),
		Reviewers: verifier, Version: "test"})
	require.NoError(t, err)
	b.con, err = console.New(console.Config{Backend: b.srv, Verifier: verifier, Revoked: b.deny.Revoked, DenyListPath: b.denyPath,
		Federation: fed, Now: b.now.now, Logger: quietLogger(), Version: "test"})
	require.NoError(t, err)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b.addr = lis.Addr().String()
	gs := grpctransport.NewGRPCServer(b.srv, "test-coordinator", nil, opts...)
	grpctransport.RegisterConsoleService(gs, b.con)
	webCfg, err := console.TLSConfig(serverFiles.Cert, serverFiles.Key)
	require.NoError(t, err)
	web, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b.url = "https://" + web.Addr().String()

	b.wg.Add(3)
	go func() { defer b.wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer b.wg.Done(); _ = b.srv.Run(ctx) }()
	go func() { defer b.wg.Done(); _ = console.Serve(ctx, web, b.con.Handler(), webCfg, quietLogger()) }()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		b.wg.Wait()
		_ = st.Close()
	})
	return b
}

// kit issues NAME's kit (files under the bench's directory).
func (b *bench) kit(role pki.Role, name string) pki.TLSFiles {
	b.t.Helper()
	cred, err := b.ca.Issue(pki.IssueRequest{Role: role, Name: name})
	require.NoError(b.t, err)
	files, err := b.ca.WriteKit(filepath.Join(b.dir, "kits"), cred)
	require.NoError(b.t, err)
	return files
}

// startClients runs the three branches over gRPC with their client certificates until the
// test ends.
func (b *bench) startClients() {
	t := b.t
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, name := range b.names {
		train, err := dataset.ReadCSV(ctx, filepath.Join(b.dir, name+".csv"), b.schema)
		require.NoError(t, err)
		eval, err := dataset.ReadCSV(ctx, filepath.Join(b.dir, name+"-test.csv"), b.schema)
		require.NoError(t, err)
		session, err := client.NewSession(name, b.schema, train, eval, client.SessionOptions{})
		require.NoError(t, err)
		conn, err := grpctransport.DialTLS(b.addr, b.kit(pki.RoleClient, name))
		require.NoError(t, err)
		agent := client.NewAgent(grpctransport.NewClient(conn), session, client.AgentConfig{
			PollWait: 200 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: quietLogger(),
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			_ = agent.Run(ctx)
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// waitCompleted waits for the run to complete.
func (b *bench) waitCompleted(timeout time.Duration) {
	b.t.Helper()
	require.Eventually(b.t, func() bool {
		ri, err := b.srv.GetRun(context.Background(), "retail-q3")
		return err == nil && ri.State.Status == coordinator.RunCompleted
	}, timeout, 20*time.Millisecond, "the run completes")
}

// login is `fedprop console login` as a library call: a session key, the delegation signed
// with the kit's key, the token from the console service. It returns the login link.
func (b *bench) login(files pki.TLSFiles) (string, error) {
	b.t.Helper()
	signer, err := pki.LoadSigner(files)
	require.NoError(b.t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(b.t, err)
	now := time.Now()
	d, err := signer.Delegate(&key.PublicKey, now.Add(time.Hour), now)
	require.NoError(b.t, err)
	conn, err := grpctransport.DialTLS(b.addr, files)
	require.NoError(b.t, err)
	defer conn.Close()
	tk, err := grpctransport.NewConsoleClient(conn).Login(context.Background(), d)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(b.t, err)
	return b.url + "/login?" + url.Values{"token": {tk.Token}}.Encode() + "#key=" + base64.RawURLEncoding.EncodeToString(der), nil
}

// browser is an HTTP client that trusts the test CA and keeps cookies: a browser without
// script.
func (b *bench) browser() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(b.ca.Certificate())
	jar, err := cookiejar.New(nil)
	require.NoError(b.t, err)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
