package grpctransport_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/strategy"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// testPKI is a CA in a temporary directory that issues kits on demand.
type testPKI struct {
	t   testing.TB
	dir string
	ca  *pki.CA
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.InitCA(dir, pki.InitOptions{Name: "test"})
	require.NoError(t, err)
	return &testPKI{t: t, dir: dir, ca: ca}
}

// issue writes NAME's kit (once) and returns its files and identity.
func (p *testPKI) issue(role pki.Role, name string) (pki.TLSFiles, pki.Identity) {
	p.t.Helper()
	cred, err := p.ca.Issue(pki.IssueRequest{Role: role, Name: name})
	require.NoError(p.t, err)
	kit, err := p.ca.WriteKit(p.dir, cred)
	require.NoError(p.t, err)
	return kit, cred.Identity
}

// tinySpec is a run over a one-feature schema: the model has two weights (intercept and x), a
// train result four values (n, n*delta0, n*delta1, n*loss), a stats result four (count, sum,
// sum of squares, excluded). Round 1 commits without an evaluation phase.
func tinySpec(t *testing.T) coordinator.RunSpec {
	t.Helper()
	doc := []byte("name: tiny\nlabel:\n  column: y\n  positive: \"1\"\n  negative: [\"0\"]\nnumeric: [x]\nconsent:\n  tracked: false\n")
	schema, err := dataset.ParseSchema("tiny.yaml", doc)
	require.NoError(t, err)
	rc := coordinator.RunConfig{
		ID: "hostile", Schema: "tiny.yaml", Rounds: 2, MinClients: 2, MinCohort: 2, Quorum: 2,
		RoundDeadline: 10 * time.Minute, EvalEvery: 100, Strategy: strategy.Config{Name: "fedavg"},
		MinRecordsPlaintext: new(int), // the hostile tests' clients announce no records
	}.WithDefaults()
	require.NoError(t, rc.Validate())
	return coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc}
}

// secureCoordinator is a coordinator behind mutual TLS on a loopback socket.
type secureCoordinator struct {
	t        *testing.T
	pki      *testPKI
	addr     string
	srv      *coordinator.Server
	store    coordinator.Records
	deny     *pki.DenyList
	denyPath string
}

// startSecureCoordinator serves spec's run behind the edge; edit may adjust the edge.
func startSecureCoordinator(t *testing.T, spec coordinator.RunSpec, edit func(*grpctransport.Edge)) *secureCoordinator {
	t.Helper()
	return startSecureCoordinatorWith(t, spec, coordinator.ServerConfig{}, edit)
}

// startSecureCoordinatorWith is startSecureCoordinator with the server's settings (its audit
// log, for one); the tick and the logger are the tests'.
func startSecureCoordinatorWith(t *testing.T, spec coordinator.RunSpec, sc coordinator.ServerConfig, edit func(*grpctransport.Edge)) *secureCoordinator {
	t.Helper()
	p := newTestPKI(t)
	serverFiles, _ := p.issue(pki.RoleCoordinator, "coordinator")
	denyPath := filepath.Join(t.TempDir(), "deny.txt")
	require.NoError(t, os.WriteFile(denyPath, []byte("# revoked certificates\n"), 0o600))
	deny, err := pki.LoadDenyList(denyPath)
	require.NoError(t, err)
	tlsCfg, err := pki.ServerTLSConfig(serverFiles)
	require.NoError(t, err)
	edge := grpctransport.Edge{TLS: tlsCfg, Revoked: deny.Revoked, Logger: quietLogger()}
	if edit != nil {
		edit(&edge)
	}
	opts, err := edge.ServerOptions()
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	store := mem.New()
	sc.TickInterval, sc.Logger = 10*time.Millisecond, quietLogger()
	srv, err := coordinator.NewServer(ctx, store, &spec, sc)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpctransport.NewGRPCServer(srv, "test-coordinator", nil, opts...)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	go func() { defer wg.Done(); deny.Watch(ctx, 20*time.Millisecond, quietLogger()) }()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		wg.Wait()
	})
	return &secureCoordinator{t: t, pki: p, addr: lis.Addr().String(), srv: srv, store: coordinator.Records{Store: store}, deny: deny, denyPath: denyPath}
}

// dial issues a kit for role/name and connects with it.
func (c *secureCoordinator) dial(role pki.Role, name string) *grpc.ClientConn {
	c.t.Helper()
	files, _ := c.pki.issue(role, name)
	return c.dialFiles(files)
}

func (c *secureCoordinator) dialFiles(files pki.TLSFiles) *grpc.ClientConn {
	c.t.Helper()
	conn, err := grpctransport.DialTLS(c.addr, files)
	require.NoError(c.t, err)
	c.t.Cleanup(func() { conn.Close() })
	return conn
}

func (c *secureCoordinator) revoke(lines string) {
	c.t.Helper()
	f, err := os.OpenFile(c.denyPath, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(c.t, err)
	_, err = f.WriteString(lines)
	require.NoError(c.t, err)
	require.NoError(c.t, f.Close())
}

func (c *secureCoordinator) registered() int {
	c.t.Helper()
	info, err := c.srv.GetRun(context.Background(), "")
	require.NoError(c.t, err)
	return info.Registered
}

func requireCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	require.Error(t, err)
	s, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	assert.Equal(t, code, s.Code(), "status %v", s)
	assert.Contains(t, s.Message(), msg)
}

func tlsConn(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestUnauthenticatedConnectionsAreRefused(t *testing.T) {
	c := startSecureCoordinator(t, tinySpec(t), nil)
	good, _ := c.pki.issue(pki.RoleClient, "bank-a")
	goodCfg, err := pki.ClientTLSConfig(good)
	require.NoError(t, err)

	foreign := newTestPKI(t)
	foreignFiles, _ := foreign.issue(pki.RoleClient, "bank-a")
	foreignPair, err := tls.LoadX509KeyPair(foreignFiles.Cert, foreignFiles.Key)
	require.NoError(t, err)

	plain, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { plain.Close() })

	cases := []struct {
		name string
		conn func() *grpc.ClientConn
	}{
		{"plaintext", func() *grpc.ClientConn { return plain }},
		{"TLS without a client certificate", func() *grpc.ClientConn {
			cfg := goodCfg.Clone()
			cfg.Certificates = nil
			return tlsConn(t, c.addr, cfg)
		}},
		{"client certificate of another CA", func() *grpc.ClientConn {
			cfg := goodCfg.Clone()
			cfg.Certificates = []tls.Certificate{foreignPair}
			return tlsConn(t, c.addr, cfg)
		}},
		{"TLS 1.2", func() *grpc.ClientConn {
			cfg := goodCfg.Clone()
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return tlsConn(t, c.addr, cfg)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := pb.NewClientServiceClient(tc.conn()).Register(ctx, &pb.RegisterRequest{ClientId: "bank-a"})
			requireCode(t, err, codes.Unavailable, "")
		})
	}
	assert.Equal(t, 0, c.registered(), "no refused connection registered anyone")

	// The same client with its own certificate gets in.
	_, err = pb.NewClientServiceClient(c.dialFiles(good)).Register(context.Background(), &pb.RegisterRequest{ClientId: "bank-a"})
	require.NoError(t, err)
	assert.Equal(t, 1, c.registered())
}

func TestRolesAreCheckedPerMethod(t *testing.T) {
	c := startSecureCoordinator(t, tinySpec(t), nil)
	conns := map[pki.Role]*grpc.ClientConn{}
	for _, r := range pki.Roles() {
		conns[r] = c.dial(r, "the-"+string(r))
	}
	ok, denied := codes.OK, codes.PermissionDenied
	type call func(ctx context.Context, conn *grpc.ClientConn) error
	register := func(id string) call {
		return func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := pb.NewClientServiceClient(conn).Register(ctx, &pb.RegisterRequest{ClientId: id})
			return err
		}
	}
	poll := func(id string) call {
		return func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := pb.NewClientServiceClient(conn).PollTask(ctx, &pb.PollTaskRequest{ClientId: id})
			return err
		}
	}
	submit := func(id string) call {
		return func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := pb.NewClientServiceClient(conn).SubmitResult(ctx, &pb.SubmitResultRequest{ClientId: id, TaskId: "t", RunId: "hostile", Kind: pb.TaskKind_TASK_KIND_STATS, Sum: &pb.AggregateVector{Plain: []float64{1}}})
			return err
		}
	}
	listModels := func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := pb.NewModelServiceClient(conn).ListModels(ctx, &pb.ListModelsRequest{})
		return err
	}
	pullModel := func(ctx context.Context, conn *grpc.ClientConn) error {
		stream, err := pb.NewModelServiceClient(conn).GetModel(ctx, &pb.GetModelRequest{})
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	modelCard := func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := pb.NewModelServiceClient(conn).GetModelCard(ctx, &pb.GetModelCardRequest{Version: 1})
		return err
	}
	getRun := func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := pb.NewAdminServiceClient(conn).GetRun(ctx, &pb.GetRunRequest{})
		return err
	}
	startRun := func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := pb.NewAdminServiceClient(conn).StartRun(ctx, &pb.StartRunRequest{ConfigYaml: []byte("id: x\n")})
		return err
	}
	health := func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	reflect := func(ctx context.Context, conn *grpc.ClientConn) error {
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	cases := []struct {
		name string
		role pki.Role
		call call
		code codes.Code
		msg  string
	}{
		{"client registers as itself", pki.RoleClient, register("the-client"), ok, ""},
		{"client polls as itself", pki.RoleClient, poll("the-client"), ok, ""},
		{"client registers as another", pki.RoleClient, register("bank-b"), denied, `field client_id: "bank-b" is not the caller`},
		{"client polls as another", pki.RoleClient, poll("bank-b"), denied, "field client_id"},
		{"client submits as another", pki.RoleClient, submit("bank-b"), denied, "field client_id"},
		{"client submits with no client id", pki.RoleClient, submit(""), denied, "field client_id"},
		{"client lists models", pki.RoleClient, listModels, denied, "role client (the-client) may not call /fedprop.v1.ModelService/ListModels"},
		{"client pulls a model", pki.RoleClient, pullModel, denied, "/fedprop.v1.ModelService/GetModel"},
		{"client reads a model card", pki.RoleClient, modelCard, denied, "GetModelCard"},
		{"client reads the run", pki.RoleClient, getRun, denied, "/fedprop.v1.AdminService/GetRun"},
		{"client starts a run", pki.RoleClient, startRun, denied, "StartRun"},
		{"client reflects", pki.RoleClient, reflect, denied, "ServerReflectionInfo"},
		{"client checks health", pki.RoleClient, health, ok, ""},
		{"owner lists models", pki.RoleOwner, listModels, ok, ""},
		{"owner pulls a model (none yet)", pki.RoleOwner, pullModel, codes.NotFound, ""},
		{"owner registers as a client", pki.RoleOwner, register("the-owner"), denied, "role owner"},
		{"owner reads the run", pki.RoleOwner, getRun, denied, "role owner"},
		{"owner checks health", pki.RoleOwner, health, ok, ""},
		{"admin reads the run", pki.RoleAdmin, getRun, ok, ""},
		{"admin reflects", pki.RoleAdmin, reflect, ok, ""},
		{"admin lists models", pki.RoleAdmin, listModels, denied, "role admin"},
		{"admin submits", pki.RoleAdmin, submit("the-admin"), denied, "role admin"},
		{"approver lists models", pki.RoleApprover, listModels, denied, "role approver"},
		{"approver reads the run", pki.RoleApprover, getRun, denied, "role approver"},
		{"approver registers", pki.RoleApprover, register("the-approver"), denied, "role approver"},
		{"coordinator certificate registers", pki.RoleCoordinator, register("the-coordinator"), denied, "role coordinator"},
		{"coordinator certificate reads the run", pki.RoleCoordinator, getRun, denied, "role coordinator"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tc.call(ctx, conns[tc.role])
			if tc.code == codes.OK {
				require.NoError(t, err)
				return
			}
			requireCode(t, err, tc.code, tc.msg)
		})
	}
	assert.Equal(t, 1, c.registered(), "only the client registered, and only as itself")
}

// identityEcho is an admin and model service that reports the caller it sees.
type identityEcho struct {
	pb.UnimplementedAdminServiceServer
	pb.UnimplementedModelServiceServer
}

func (identityEcho) GetRun(ctx context.Context, _ *pb.GetRunRequest) (*pb.Run, error) {
	id, ok := grpctransport.IdentityFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no identity")
	}
	return &pb.Run{Message: id.String(), State: id.Serial}, nil
}

func (identityEcho) GetModel(_ *pb.GetModelRequest, stream pb.ModelService_GetModelServer) error {
	id, ok := grpctransport.IdentityFromContext(stream.Context())
	if !ok {
		return status.Error(codes.Internal, "no identity")
	}
	return stream.Send(&pb.ModelChunk{Data: []byte(id.String())})
}

// startEcho serves identityEcho behind mutual TLS with policy.
func startEcho(t *testing.T, p *testPKI, policy grpctransport.Policy) string {
	t.Helper()
	serverFiles, _ := p.issue(pki.RoleCoordinator, "echo-coordinator")
	tlsCfg, err := pki.ServerTLSConfig(serverFiles)
	require.NoError(t, err)
	opts, err := grpctransport.Edge{TLS: tlsCfg, Policy: policy, Logger: quietLogger()}.ServerOptions()
	require.NoError(t, err)
	gs := grpc.NewServer(opts...)
	pb.RegisterAdminServiceServer(gs, identityEcho{})
	pb.RegisterModelServiceServer(gs, identityEcho{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return lis.Addr().String()
}

func TestApproverRoleCanBeRequiredByMethodNameAndHandlersSeeTheCaller(t *testing.T) {
	p := newTestPKI(t)
	// A policy as the approval method will use it: a method name mapped to the approver role.
	policy := grpctransport.Policy{
		pb.AdminService_GetRun_FullMethodName:   {pki.RoleApprover},
		pb.ModelService_GetModel_FullMethodName: {pki.RoleOwner, pki.RoleApprover},
	}
	addr := startEcho(t, p, policy)
	dial := func(role pki.Role, name string) (*grpc.ClientConn, pki.Identity) {
		files, id := p.issue(role, name)
		conn, err := grpctransport.DialTLS(addr, files)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn, id
	}
	approver, approverID := dial(pki.RoleApprover, "compliance-1")
	admin, _ := dial(pki.RoleAdmin, "ops-1")
	owner, _ := dial(pki.RoleOwner, "owner-1")
	ctx := context.Background()

	run, err := pb.NewAdminServiceClient(approver).GetRun(ctx, &pb.GetRunRequest{})
	require.NoError(t, err)
	assert.Equal(t, "approver/compliance-1", run.GetMessage(), "the handler sees the certificate's identity")
	assert.Equal(t, approverID.Serial, run.GetState())

	_, err = pb.NewAdminServiceClient(admin).GetRun(ctx, &pb.GetRunRequest{})
	requireCode(t, err, codes.PermissionDenied, "role admin (ops-1) may not call /fedprop.v1.AdminService/GetRun")

	for _, tc := range []struct {
		conn *grpc.ClientConn
		want string
	}{{owner, "owner/owner-1"}, {approver, "approver/compliance-1"}} {
		stream, err := pb.NewModelServiceClient(tc.conn).GetModel(ctx, &pb.GetModelRequest{})
		require.NoError(t, err)
		chunk, err := stream.Recv()
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(chunk.GetData()), "streams carry the identity too")
	}
	_, err = pb.NewModelServiceClient(approver).ListModels(ctx, &pb.ListModelsRequest{})
	requireCode(t, err, codes.PermissionDenied, "may not call /fedprop.v1.ModelService/ListModels")

	assert.True(t, grpctransport.DefaultPolicy().Allows(pb.ModelService_GetModel_FullMethodName, pki.RoleOwner))
	assert.False(t, grpctransport.DefaultPolicy().Allows("/fedprop.v1.ModelService/Approve", pki.RoleApprover), "an unknown method is closed")
}

func TestRevokedCertificateIsRefusedOnItsNextCallWithoutARestart(t *testing.T) {
	c := startSecureCoordinator(t, tinySpec(t), nil)
	aFiles, _ := c.pki.issue(pki.RoleClient, "bank-a")
	bFiles, bID := c.pki.issue(pki.RoleClient, "bank-b")
	a, b := pb.NewClientServiceClient(c.dialFiles(aFiles)), pb.NewClientServiceClient(c.dialFiles(bFiles))
	ctx := context.Background()
	_, err := a.Register(ctx, &pb.RegisterRequest{ClientId: "bank-a"})
	require.NoError(t, err)
	_, err = b.Register(ctx, &pb.RegisterRequest{ClientId: "bank-b"})
	require.NoError(t, err)

	// Revoke bank-a by name while its connection stays open: the coordinator's watcher
	// re-reads the file, and bank-a's next call on the same connection is refused.
	c.revoke("bank-a\n")
	require.Eventually(t, func() bool { return c.deny.Revoked(pki.Identity{Name: "bank-a"}) }, 20*time.Second, 10*time.Millisecond)
	_, err = a.PollTask(ctx, &pb.PollTaskRequest{ClientId: "bank-a"})
	requireCode(t, err, codes.Unauthenticated, "certificate revoked: client/bank-a")
	_, err = b.PollTask(ctx, &pb.PollTaskRequest{ClientId: "bank-b"})
	require.NoError(t, err, "other clients are unaffected")

	// A new connection with the revoked certificate is refused just the same, with a status
	// that tells the branch's operator why.
	_, err = pb.NewClientServiceClient(c.dialFiles(aFiles)).Register(ctx, &pb.RegisterRequest{ClientId: "bank-a"})
	requireCode(t, err, codes.Unauthenticated, "certificate revoked: client/bank-a")

	// Revocation by serial number, as `fedprop ca issue` prints it.
	c.revoke("serial:" + bID.Serial + "\n")
	require.Eventually(t, func() bool { return c.deny.Revoked(bID) }, 20*time.Second, 10*time.Millisecond)
	_, err = b.PollTask(ctx, &pb.PollTaskRequest{ClientId: "bank-b"})
	requireCode(t, err, codes.Unauthenticated, "serial "+bID.Serial)

	// A new certificate for the same branch is a new serial, but the name is still revoked.
	reissued, err := c.pki.ca.Issue(pki.IssueRequest{Role: pki.RoleClient, Name: "bank-b"})
	require.NoError(t, err)
	assert.NotEqual(t, bID.Serial, reissued.Identity.Serial)
}

// fakeClock is a settable clock for the rate limiter.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time            { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration)   { c.ns.Add(int64(d)) }
func (c *fakeClock) set(t time.Time)           { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) since(t time.Time) float64 { return c.now().Sub(t).Seconds() }

func TestRateLimitIsPerCertificate(t *testing.T) {
	clock := newFakeClock()
	c := startSecureCoordinator(t, tinySpec(t), func(e *grpctransport.Edge) {
		e.RateLimit = grpctransport.RateLimit{PerSecond: 2, Burst: 3}
		e.Now = clock.now
	})
	a := pb.NewClientServiceClient(c.dial(pki.RoleClient, "bank-a"))
	b := pb.NewClientServiceClient(c.dial(pki.RoleClient, "bank-b"))
	ctx := context.Background()
	for i := range 3 {
		_, err := a.Register(ctx, &pb.RegisterRequest{ClientId: "bank-a"})
		require.NoError(t, err, "call %d is within the burst", i)
	}
	_, err := a.Register(ctx, &pb.RegisterRequest{ClientId: "bank-a"})
	requireCode(t, err, codes.ResourceExhausted, "rate limit: client/bank-a exceeds 2 requests per second (burst 3)")
	// A refused call as another client still spends the caller's budget, not the victim's.
	_, err = a.Register(ctx, &pb.RegisterRequest{ClientId: "bank-b"})
	requireCode(t, err, codes.ResourceExhausted, "client/bank-a")
	_, err = b.Register(ctx, &pb.RegisterRequest{ClientId: "bank-b"})
	require.NoError(t, err, "each certificate has its own bucket")

	clock.advance(500 * time.Millisecond) // one token back at 2 per second
	_, err = a.Register(ctx, &pb.RegisterRequest{ClientId: "bank-a"})
	require.NoError(t, err)
	_, err = a.Register(ctx, &pb.RegisterRequest{ClientId: "bank-a"})
	requireCode(t, err, codes.ResourceExhausted, "rate limit")
}

func TestPlaintextEdgeLimitsPerClientIDAndChecksNoRoles(t *testing.T) {
	clock := newFakeClock()
	opts, err := grpctransport.Edge{RateLimit: grpctransport.RateLimit{PerSecond: 1, Burst: 2}, Now: clock.now, Logger: quietLogger()}.ServerOptions()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	spec := tinySpec(t)
	srv, err := coordinator.NewServer(ctx, mem.New(), &spec, coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: quietLogger()})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpctransport.NewGRPCServer(srv, "plain", nil, opts...)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); gs.Stop(); wg.Wait() })

	conn, err := grpctransport.Dial(lis.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	cl := pb.NewClientServiceClient(conn)
	for range 2 {
		_, err = cl.Register(ctx, &pb.RegisterRequest{ClientId: "a"})
		require.NoError(t, err)
	}
	_, err = cl.Register(ctx, &pb.RegisterRequest{ClientId: "a"})
	requireCode(t, err, codes.ResourceExhausted, "client_id/a")
	_, err = cl.Register(ctx, &pb.RegisterRequest{ClientId: "b"})
	require.NoError(t, err)
	_, err = pb.NewAdminServiceClient(conn).GetRun(ctx, &pb.GetRunRequest{})
	require.NoError(t, err, "without TLS there are no roles: the operator chose --insecure")
}

func TestRateLimiter(t *testing.T) {
	clock := newFakeClock()
	start := clock.now()
	cases := []struct {
		name  string
		limit grpctransport.RateLimit
		steps []struct {
			at    time.Duration
			key   string
			allow bool
		}
	}{
		{"burst then refill", grpctransport.RateLimit{PerSecond: 1, Burst: 2}, []struct {
			at    time.Duration
			key   string
			allow bool
		}{{0, "a", true}, {0, "a", true}, {0, "a", false}, {0, "b", true}, {999 * time.Millisecond, "a", false}, {time.Second, "a", true}, {time.Second, "a", false}, {10 * time.Second, "a", true}, {10 * time.Second, "a", true}, {10 * time.Second, "a", false}}},
		{"default burst is the rate", grpctransport.RateLimit{PerSecond: 2.5}, []struct {
			at    time.Duration
			key   string
			allow bool
		}{{0, "a", true}, {0, "a", true}, {0, "a", true}, {0, "a", false}}},
		{"disabled", grpctransport.RateLimit{}, []struct {
			at    time.Duration
			key   string
			allow bool
		}{{0, "a", true}, {0, "a", true}, {0, "a", true}, {0, "a", true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock.set(start)
			l := grpctransport.NewRateLimiter(tc.limit, clock.now)
			for i, s := range tc.steps {
				clock.set(start.Add(s.at))
				assert.Equal(t, s.allow, l.Allow(s.key), "step %d (%v, %s)", i, s.at, s.key)
			}
		})
	}

	// Idle callers are forgotten once their bucket is full again, so memory stays bounded.
	clock.set(start)
	l := grpctransport.NewRateLimiter(grpctransport.RateLimit{PerSecond: 10, Burst: 10}, clock.now)
	for _, k := range []string{"a", "b", "c"} {
		require.True(t, l.Allow(k))
	}
	assert.Equal(t, 3, l.Len())
	clock.advance(2 * time.Minute)
	require.True(t, l.Allow("d"))
	assert.Equal(t, 1, l.Len(), "a, b and c had refilled and were swept")
	assert.InDelta(t, 120.0, clock.since(start), 1e-9)

	for _, bad := range []grpctransport.RateLimit{{PerSecond: -1}, {PerSecond: 1, Burst: -1}} {
		require.Error(t, bad.Validate())
		_, err := grpctransport.Edge{RateLimit: bad}.ServerOptions()
		require.Error(t, err)
	}
}

func TestEdgeRefusesATLSConfigWithoutClientCertificates(t *testing.T) {
	_, err := grpctransport.Edge{TLS: &tls.Config{MinVersion: tls.VersionTLS13}}.ServerOptions()
	require.ErrorContains(t, err, "require and verify client certificates")
	_, err = grpctransport.Edge{TLS: &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequireAndVerifyClientCert}}.ServerOptions()
	require.ErrorContains(t, err, "TLS 1.3")
	_, err = grpctransport.Edge{MaxRecvMsgBytes: -1}.ServerOptions()
	require.ErrorContains(t, err, "max_message_bytes")
}

// BenchmarkEdgeUnaryCall is the cost of one unary call (a health check) through the edge:
// plaintext without checks, and mutual TLS with identity, revocation, rate-limit and role
// checks, on an established connection.
func BenchmarkEdgeUnaryCall(b *testing.B) {
	p := newTestPKI(b)
	serverFiles, _ := p.issue(pki.RoleCoordinator, "coordinator")
	clientFiles, _ := p.issue(pki.RoleClient, "bank-a")
	tlsCfg, err := pki.ServerTLSConfig(serverFiles)
	require.NoError(b, err)
	deny := &pki.DenySet{}
	edges := []struct {
		name string
		edge grpctransport.Edge
		dial func(addr string) (*grpc.ClientConn, error)
	}{
		{"plaintext", grpctransport.Edge{Logger: quietLogger()}, func(addr string) (*grpc.ClientConn, error) { return grpctransport.Dial(addr) }},
		{"mutual-tls", grpctransport.Edge{TLS: tlsCfg, Revoked: deny.Revoked, RateLimit: grpctransport.RateLimit{PerSecond: 1e9, Burst: 1e9}, Logger: quietLogger()},
			func(addr string) (*grpc.ClientConn, error) { return grpctransport.DialTLS(addr, clientFiles) }},
	}
	for _, e := range edges {
		b.Run(e.name, func(b *testing.B) {
			opts, err := e.edge.ServerOptions()
			require.NoError(b, err)
			gs := grpc.NewServer(opts...)
			hs := health.NewServer()
			healthpb.RegisterHealthServer(gs, hs)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(b, err)
			go func() { _ = gs.Serve(lis) }()
			defer gs.Stop()
			conn, err := e.dial(lis.Addr().String())
			require.NoError(b, err)
			defer conn.Close()
			hc := healthpb.NewHealthClient(conn)
			ctx := context.Background()
			_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{})
			require.NoError(b, err)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRateLimiterAllow is one token-bucket decision among 1,000 callers.
func BenchmarkRateLimiterAllow(b *testing.B) {
	l := grpctransport.NewRateLimiter(grpctransport.RateLimit{PerSecond: 1e9, Burst: 1e9}, nil)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "client/bank-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(keys[i%len(keys)])
		i++
	}
}
