package grpctransport

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
)

// ConsoleLogins is what the console service needs of the oversight console (console.Console):
// it checks a caller's delegation and issues a single-use login token bound to the caller's
// certificate.
type ConsoleLogins interface {
	IssueLogin(ctx context.Context, cert *x509.Certificate, d pki.Delegation) (ConsoleTicket, error)
}

// ConsoleTicket is a login token and what it opens.
type ConsoleTicket struct {
	// Token opens one console session, once, before Expires.
	Token   string
	Expires time.Time
	// SessionExpires is when the session it opens ends.
	SessionExpires time.Time
	// Identity is who the session acts for.
	Identity pki.Identity
}

// RegisterConsoleService adds the console service to g: only a coordinator that serves the
// oversight console registers it, and elsewhere Login is Unimplemented.
func RegisterConsoleService(g *grpc.Server, logins ConsoleLogins) {
	pb.RegisterConsoleServiceServer(g, &consoleService{logins: logins})
}

// consoleService signs people in to the oversight console.
type consoleService struct {
	pb.UnimplementedConsoleServiceServer
	logins ConsoleLogins
}

// Login implements pb.ConsoleServiceServer: the caller's certificate (the edge has checked its
// role and revocation) vouches for the delegation; the console checks it was signed with that
// certificate's key and returns a login token.
func (s *consoleService) Login(ctx context.Context, req *pb.ConsoleLoginRequest) (*pb.ConsoleLoginResponse, error) {
	cert, err := peerCertificate(ctx)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if n := req.GetNotAfterUnix(); n <= 0 || n > maxUnixSeconds {
		return nil, status.Errorf(codes.InvalidArgument, "field not_after_unix: %d is not a time", n)
	}
	d := pki.Delegation{SessionKey: req.GetSessionKey(), NotAfter: time.Unix(req.GetNotAfterUnix(), 0).UTC(), Nonce: req.GetNonce(),
		Signature: req.GetDelegationSignature()}
	if err := d.CheckSize(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	t, err := s.logins.IssueLogin(ctx, cert, d)
	switch {
	case errors.Is(err, pki.ErrBadSignature):
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, pki.ErrRevoked):
		return nil, status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, pki.ErrInvalid):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pb.ConsoleLoginResponse{Token: t.Token, ExpiresUnix: t.Expires.Unix(), SessionExpiresUnix: t.SessionExpires.Unix(),
		Name: t.Identity.Name, Role: string(t.Identity.Role)}, nil
}

// maxUnixSeconds is the year 9999: a larger not_after is no time the console could compare.
const maxUnixSeconds = 253402300799

// peerCertificate is the caller's verified certificate.
func peerCertificate(ctx context.Context) (*x509.Certificate, error) {
	if c := callerCertificate(ctx); c != nil {
		return c, nil
	}
	return nil, errors.New("console sign-in needs mutual TLS: the connection carries no verified client certificate")
}

// ConsoleClient signs in to the oversight console over the coordinator's API.
type ConsoleClient struct {
	rpc pb.ConsoleServiceClient
}

// NewConsoleClient wraps a connection made with the person's own kit (DialTLS).
func NewConsoleClient(conn grpc.ClientConnInterface) *ConsoleClient {
	return &ConsoleClient{rpc: pb.NewConsoleServiceClient(conn)}
}

// Login sends the delegation, signed with the key of the certificate the connection
// authenticates with, and returns the login token.
func (c *ConsoleClient) Login(ctx context.Context, d pki.Delegation) (ConsoleTicket, error) {
	r, err := c.rpc.Login(ctx, &pb.ConsoleLoginRequest{SessionKey: d.SessionKey, NotAfterUnix: d.NotAfter.Unix(), Nonce: d.Nonce,
		DelegationSignature: d.Signature})
	if err != nil {
		return ConsoleTicket{}, fromStatus(err)
	}
	role, err := pki.ParseRole(r.GetRole())
	if err != nil {
		return ConsoleTicket{}, err
	}
	return ConsoleTicket{Token: r.GetToken(), Expires: time.Unix(r.GetExpiresUnix(), 0).UTC(),
		SessionExpires: time.Unix(r.GetSessionExpiresUnix(), 0).UTC(), Identity: pki.Identity{Name: r.GetName(), Role: role}}, nil
}
