package grpctransport

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
)

// Policy is the role check: for each full gRPC method name ("/fedprop.v1.ModelService/GetModel"),
// the roles that may call it. A method missing from the policy is refused to everyone, so a
// new method is closed until the policy names its roles (an approval method will name
// pki.RoleApprover).
type Policy map[string][]pki.Role

// DefaultPolicy is fedprop's: the client service for clients (each acting only as itself),
// the model service for owners, the admin service and server reflection for admins, and health
// checks for every role.
func DefaultPolicy() Policy {
	p := Policy{}
	for _, m := range []string{pb.ClientService_Register_FullMethodName, pb.ClientService_PollTask_FullMethodName, pb.ClientService_SubmitResult_FullMethodName, pb.ClientService_FetchContributions_FullMethodName} {
		p[m] = []pki.Role{pki.RoleClient}
	}
	for _, m := range []string{pb.ModelService_ListModels_FullMethodName, pb.ModelService_GetModel_FullMethodName, pb.ModelService_GetModelCard_FullMethodName} {
		p[m] = []pki.Role{pki.RoleOwner}
	}
	for _, m := range []string{pb.OversightService_PrepareReview_FullMethodName, pb.OversightService_ApproveModel_FullMethodName, pb.OversightService_RejectModel_FullMethodName} {
		p[m] = []pki.Role{pki.RoleApprover}
	}
	// Console sign-in: every person's role, never a client's or the coordinator's.
	p[pb.ConsoleService_Login_FullMethodName] = []pki.Role{pki.RoleOwner, pki.RoleApprover, pki.RoleAdmin}
	for _, m := range []string{pb.AdminService_StartRun_FullMethodName, pb.AdminService_GetRun_FullMethodName,
		pb.AdminService_ListRuns_FullMethodName, pb.AdminService_StopRun_FullMethodName,
		reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName, reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName} {
		p[m] = []pki.Role{pki.RoleAdmin}
	}
	for _, m := range []string{healthpb.Health_Check_FullMethodName, healthpb.Health_Watch_FullMethodName, healthpb.Health_List_FullMethodName} {
		p[m] = pki.Roles()
	}
	return p
}

// Allows reports whether role may call method.
func (p Policy) Allows(method string, role pki.Role) bool { return slices.Contains(p[method], role) }

// Edge is what the coordinator checks at its network edge before a request reaches it: mutual
// TLS, the caller's role, revocation, a per-caller rate limit and the message size. Request
// fields are checked in every case (see NewGRPCServer).
type Edge struct {
	// TLS is the server side of mutual TLS (pki.ServerTLSConfig). Nil serves plaintext, where
	// callers have no identity and no role is checked: only for an explicit --insecure.
	TLS *tls.Config
	// Policy says which roles may call which method; nil means DefaultPolicy().
	Policy Policy
	// Revoked reports a revoked identity. It is asked on every call, so a certificate revoked
	// while its connection is open is refused on its next call. May be nil.
	Revoked func(pki.Identity) bool
	// RateLimit is each caller's budget: per certificate identity, or with plaintext per
	// client_id (or peer address). The zero value does not limit.
	RateLimit RateLimit
	// MaxRecvMsgBytes bounds one request message; 0 keeps gRPC's default (4 MiB).
	MaxRecvMsgBytes int
	// Admission bounds the results received and decoded at once; nil means one with
	// DefaultMaxConcurrentSubmits.
	Admission *Admission
	// Now is the rate limiter's and the rejection log's clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a warn line for every refused connection (a failed TLS handshake: no
	// certificate, an unknown CA, plaintext against TLS) and every refused call (revoked, wrong
	// role, another client's id, over the rate limit), with the peer's address and a
	// RejectReason, at most one per peer host and reason every RejectLogEvery; nil means
	// slog.Default().
	Logger *slog.Logger
	// RejectLogEvery is the least time between two log lines for the same peer host and
	// reason; the later line counts the refusals in between. 0 means DefaultRejectLogEvery.
	RejectLogEvery time.Duration
}

// ServerOptions turns the edge into options for NewGRPCServer.
func (e Edge) ServerOptions() ([]grpc.ServerOption, error) {
	if err := e.RateLimit.Validate(); err != nil {
		return nil, err
	}
	if e.MaxRecvMsgBytes < 0 {
		return nil, fmt.Errorf("max_message_bytes: must be >= 0, got %d", e.MaxRecvMsgBytes)
	}
	if e.RejectLogEvery < 0 {
		return nil, fmt.Errorf("edge: RejectLogEvery: must be >= 0, got %v", e.RejectLogEvery)
	}
	log := e.Logger
	if log == nil {
		log = slog.Default()
	}
	g := &guard{policy: e.Policy, revoked: e.Revoked, secure: e.TLS != nil, rejects: newRejectLog(log, e.Now, e.RejectLogEvery)}
	if g.policy == nil {
		g.policy = DefaultPolicy()
	}
	if e.RateLimit.Enabled() {
		g.limiter = NewRateLimiter(e.RateLimit, e.Now)
	}
	var opts []grpc.ServerOption
	if e.TLS != nil {
		if e.TLS.ClientAuth != tls.RequireAndVerifyClientCert || e.TLS.MinVersion < tls.VersionTLS13 {
			return nil, fmt.Errorf("edge: the TLS configuration must require and verify client certificates over TLS 1.3 (use pki.ServerTLSConfig)")
		}
		// No read buffer of gRPC's own: the TLS connection holds each record it reads, and
		// another 32 KiB per connection in front of it would pin 160 MiB at 5,000 clients.
		creds := edgeCreds{TransportCredentials: credentials.NewTLS(edgeTLSConfig(e.TLS)), rejects: g.rejects}
		opts = append(opts, grpc.Creds(creds), grpc.ReadBufferSize(0))
	} else {
		opts = append(opts, grpc.Creds(plaintextEdgeCreds{TransportCredentials: insecure.NewCredentials(), rejects: g.rejects}))
	}
	if e.MaxRecvMsgBytes > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(e.MaxRecvMsgBytes))
	}
	adm := e.Admission
	if adm == nil {
		var err error
		if adm, err = NewAdmission(DefaultMaxConcurrentSubmits); err != nil {
			return nil, err
		}
	}
	opts = append(opts, adm.ServerOption(), grpc.ChainUnaryInterceptor(g.unary), grpc.ChainStreamInterceptor(g.stream))
	return opts, nil
}

// DialTLS connects to a coordinator over mutual TLS 1.3 with a party's kit files; the
// coordinator's certificate must name addr's host and carry the coordinator role.
//
// A call that fails because of the connection or the caller's certificate returns a
// *ConnError whose Fault says why (another CA, plaintext at the other end, a wrong port, a
// revoked certificate, the coordinator down) and whether retrying can help.
func DialTLS(addr string, files pki.TLSFiles, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	cfg, err := pki.ClientTLSConfig(files)
	if err != nil {
		return nil, fmt.Errorf("dial coordinator %s: %w", addr, err)
	}
	return DialTLSConfig(addr, cfg, opts...)
}

// DialTLSConfig is DialTLS with a TLS configuration the caller built (pki.ClientTLSConfig
// builds fedprop's); its calls' errors are explained the same way.
func DialTLSConfig(addr string, cfg *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return Dial(addr, append(newConnWatch(addr, true).options(credentials.NewTLS(cfg)), opts...)...)
}

type identityKey struct{}

// IdentityFromContext is the verified caller of a request on a mutual-TLS coordinator.
func IdentityFromContext(ctx context.Context) (pki.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(pki.Identity)
	return id, ok
}

// clientIDRequest is every client-service request: each names the client it acts for.
type clientIDRequest interface{ GetClientId() string }

// guard is the interceptor pair behind Edge.
type guard struct {
	policy  Policy
	revoked func(pki.Identity) bool
	secure  bool
	limiter *RateLimiter
	rejects *rejectLog
}

func (g *guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, id, reason, err := g.admit(ctx, info.FullMethod, req)
	if err == nil && g.secure {
		if err = g.checkActsAsItself(id, req); err != nil {
			reason = RejectOtherClient
		}
	}
	if err != nil {
		g.refused(ctx, info.FullMethod, id, reason, err)
		return nil, err
	}
	return handler(ctx, req)
}

func (g *guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, id, reason, err := g.admit(ss.Context(), info.FullMethod, nil)
	if err != nil {
		g.refused(ctx, info.FullMethod, id, reason, err)
		return err
	}
	return handler(srv, &guardedStream{ServerStream: ss, ctx: ctx, g: g, id: id, method: info.FullMethod})
}

// refused logs a refused call (rate-limited per peer host and reason, see rejectLog).
func (g *guard) refused(ctx context.Context, method string, id pki.Identity, reason RejectReason, err error) {
	caller := id.String()
	switch {
	case !g.secure:
		caller = "(plaintext: no identity)"
	case id == (pki.Identity{}):
		caller = "(no certificate)"
	}
	g.rejects.reject(ctx, peerAddr(ctx), reason, "method", method, "caller", caller, "err", err)
}

// admit authenticates the caller, refuses revoked certificates, spends the caller's rate
// budget and applies the role policy. A refusal comes with its reason for the log.
func (g *guard) admit(ctx context.Context, method string, req any) (context.Context, pki.Identity, RejectReason, error) {
	var (
		id  pki.Identity
		key string
	)
	if g.secure {
		var err error
		id, err = peerIdentity(ctx)
		if err != nil {
			return ctx, id, RejectNoCertificate, status.Error(codes.Unauthenticated, err.Error())
		}
		if g.revoked != nil && g.revoked(id) {
			return ctx, id, RejectRevoked, status.Errorf(codes.Unauthenticated, "%v: %s (serial %s)", pki.ErrRevoked, id, id.Serial)
		}
		key = id.String()
		ctx = context.WithValue(ctx, identityKey{}, id)
	} else {
		key = plaintextKey(ctx, req)
	}
	if g.limiter != nil && !g.limiter.Allow(key) {
		return ctx, id, RejectRateLimited, status.Errorf(codes.ResourceExhausted, "rate limit: %s exceeds %g requests per second (burst %d); slow down and retry",
			key, g.limiter.limit.PerSecond, int(g.limiter.burst))
	}
	if g.secure && !g.policy.Allows(method, id.Role) {
		return ctx, id, RejectWrongRole, status.Errorf(codes.PermissionDenied, "role %s (%s) may not call %s", id.Role, id.Name, method)
	}
	return ctx, id, "", nil
}

// checkActsAsItself refuses a client certificate acting for another client id.
func (g *guard) checkActsAsItself(id pki.Identity, req any) error {
	if id.Role != pki.RoleClient {
		return nil
	}
	r, ok := req.(clientIDRequest)
	if !ok {
		return nil
	}
	if got := r.GetClientId(); got != id.Name {
		return status.Errorf(codes.PermissionDenied, "field client_id: %q is not the caller: the certificate is for client %q", got, id.Name)
	}
	return nil
}

func peerIdentity(ctx context.Context) (pki.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return pki.Identity{}, fmt.Errorf("%w: the connection carries no TLS client certificate", pki.ErrNoIdentity)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.Identity{}, fmt.Errorf("%w: the connection is not TLS (%s)", pki.ErrNoIdentity, p.AuthInfo.AuthType())
	}
	return pki.PeerIdentity(info.State)
}

// plaintextKey is a plaintext caller's rate-limit key: the client id it claims, or its host.
func plaintextKey(ctx context.Context, req any) string {
	if r, ok := req.(clientIDRequest); ok && r.GetClientId() != "" {
		return "client_id/" + r.GetClientId()
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return "addr/" + host
		}
		return "addr/" + p.Addr.String()
	}
	return "unknown"
}

// guardedStream carries the caller's identity and checks that every message a client sends
// acts for that client.
type guardedStream struct {
	grpc.ServerStream
	ctx    context.Context
	g      *guard
	id     pki.Identity
	method string
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.g.secure {
		if err := s.g.checkActsAsItself(s.id, m); err != nil {
			s.g.refused(s.ctx, s.method, s.id, RejectOtherClient, err)
			return err
		}
	}
	return nil
}
