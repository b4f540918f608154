// Package console is fedprop's oversight console: a web console the coordinator serves
// (console.listen, off by default) for model owners, approvers and administrators. Its pages
// are rendered on the server from html/template, its assets are embedded in the binary, and it
// needs no network beyond the coordinator: runs and their per-round charts, each version's
// model card with a diff against the approved version, the review form, the audit log with its
// verification status, and the federation's clients.
//
// Sign-in needs no password database. A person runs `fedprop console login` with their
// certificate kit; it makes a session key, signs a delegation of signing to it with the
// certificate's key (pki.Delegation), and sends that over the mutual-TLS API
// (transport/grpc's ConsoleService), which answers with a single-use login token bound to the
// certificate (IssueLogin). The login link carries the token in its query and the session's
// private key in its fragment, which browsers never send: the coordinator never holds the key.
// Opening the link starts a session (an HttpOnly, Secure, SameSite=Strict cookie) that acts
// with the certificate's role, is checked against the deny list on every request and ends with
// the delegation.
//
// An approver's decision is signed in the browser by the session key, over the very statement
// `fedprop model approve` signs (audit.DecisionStatement), and goes into the audit log with
// the delegation: release/audit verifies the delegation against the CA and the decision
// against the delegated key, so neither the coordinator nor a writer of its store can make a
// decision the release gate honours.
package console

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// Backend is what the console reads and asks of the coordinator (coordinator.Server).
type Backend interface {
	ListRuns(ctx context.Context) ([]coordinator.RunInfo, error)
	ModelCard(ctx context.Context, version uint64) (*modelcard.Card, error)
	ModelDocument(ctx context.Context, version uint64) (*modelfile.Document, error)
	ReviewSubject(ctx context.Context, version uint64) (coordinator.ReviewSubject, error)
	Approve(ctx context.Context, who coordinator.Reviewer, d coordinator.Decision) (coordinator.Review, error)
	Reject(ctx context.Context, who coordinator.Reviewer, d coordinator.Decision) (coordinator.Review, error)
	Status(version uint64) coordinator.Review
	AuditHead() audit.Head
	Store() coordinator.Records
}

// Defaults of Config.
const (
	// DefaultLoginTTL is how long a login token may wait to be used: long enough to paste a
	// link into a browser, short enough that a leaked one is soon worthless.
	DefaultLoginTTL = 5 * time.Minute
	// DefaultSessionMaxAge is the longest session the console grants, whatever the
	// delegation asks.
	DefaultSessionMaxAge = 8 * time.Hour
	// maxSessions bounds the sessions and pending logins the console holds.
	maxSessions = 1024
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNoSession: a request without a live session (none, expired, revoked).
	ErrNoSession = errors.New("no console session")
	// ErrBadToken: a login token that is unknown, used before or expired.
	ErrBadToken = errors.New("login token is not valid: unknown, already used or expired")
	// ErrRole: a role the console serves no session to (a client, the coordinator).
	ErrRole = errors.New("this role may not sign in to the console")
)

// Config sets up a Console.
type Config struct {
	// Backend is the coordinator.
	Backend Backend
	// Verifier checks certificates and delegations against the CA. Required: the console
	// serves only a coordinator with mutual TLS.
	Verifier *pki.Verifier
	// Revoked reports a revoked identity (the edge's deny list); asked on every request.
	// May be nil.
	Revoked func(pki.Identity) bool
	// DenyListPath is the deny list file the federation page lists ("" lists none).
	DenyListPath string
	// Federation is what the federation page shows of the clients (nil: an empty ledger).
	Federation *Federation
	// LoginTTL and SessionMaxAge bound tokens and sessions; 0 means the defaults.
	LoginTTL, SessionMaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives sign-ins, refusals and decisions; nil means slog.Default().
	Logger *slog.Logger
	// Version is the fedprop version the footer names.
	Version string
}

// Console serves the oversight console. It is safe for concurrent use.
type Console struct {
	cfg   Config
	pages *pages

	mu       sync.Mutex
	tickets  map[string]*ticket  // login token -> pending login
	sessions map[string]*session // session id (the cookie) -> session
}

// New checks cfg and returns a console.
func New(cfg Config) (*Console, error) {
	if cfg.Backend == nil {
		return nil, errors.New("console: no backend")
	}
	if cfg.Verifier == nil {
		return nil, errors.New("console: no CA to check certificates against: the console needs a coordinator with mutual TLS (tls.ca)")
	}
	if cfg.LoginTTL < 0 || cfg.SessionMaxAge < 0 {
		return nil, fmt.Errorf("console: login TTL and session max age must not be negative")
	}
	if cfg.LoginTTL == 0 {
		cfg.LoginTTL = DefaultLoginTTL
	}
	if cfg.SessionMaxAge == 0 {
		cfg.SessionMaxAge = DefaultSessionMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Federation == nil {
		cfg.Federation = NewFederation(cfg.Now)
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	return &Console{cfg: cfg, pages: p, tickets: map[string]*ticket{}, sessions: map[string]*session{}}, nil
}

// ticket is a pending login: who asked, with which delegation, until when.
type ticket struct {
	id         pki.Identity
	cert       *x509.Certificate
	delegation pki.Delegation
	key        *ecdsa.PublicKey
	expires    time.Time
	sessionEnd time.Time
}

// IssueLogin implements grpctransport.ConsoleLogins: it checks that d was signed with the key
// of cert (the certificate the caller's mutual-TLS connection presented), that the role may use
// the console and the certificate is not revoked, and returns a single-use login token.
func (c *Console) IssueLogin(_ context.Context, cert *x509.Certificate, d pki.Delegation) (grpctransport.ConsoleTicket, error) {
	if cert == nil {
		return grpctransport.ConsoleTicket{}, fmt.Errorf("%w: no certificate", pki.ErrBadSignature)
	}
	now := c.cfg.Now()
	id, err := c.cfg.Verifier.At(now).VerifyDelegation(cert.Raw, d, pki.Identity{})
	if err != nil {
		return grpctransport.ConsoleTicket{}, err
	}
	switch id.Role {
	case pki.RoleOwner, pki.RoleApprover, pki.RoleAdmin:
	default:
		return grpctransport.ConsoleTicket{}, fmt.Errorf("%w: %w: %s", pki.ErrInvalid, ErrRole, id)
	}
	if c.cfg.Revoked != nil && c.cfg.Revoked(id) {
		return grpctransport.ConsoleTicket{}, fmt.Errorf("%w: %s (serial %s)", pki.ErrRevoked, id, id.Serial)
	}
	if !d.NotAfter.After(now) || d.NotAfter.Sub(now) > pki.MaxDelegation+time.Minute {
		return grpctransport.ConsoleTicket{}, fmt.Errorf("%w: the delegation ends at %s: it must end after now and within %v",
			pki.ErrInvalid, d.NotAfter.UTC().Format(time.RFC3339), pki.MaxDelegation)
	}
	key, err := d.SessionPublicKey()
	if err != nil {
		return grpctransport.ConsoleTicket{}, fmt.Errorf("%w: %w", pki.ErrInvalid, err)
	}
	end := earliest(d.NotAfter, now.Add(c.cfg.SessionMaxAge), cert.NotAfter)
	tk := &ticket{id: id, cert: cert, delegation: d, key: key, expires: now.Add(c.cfg.LoginTTL), sessionEnd: end}
	token, err := randomToken()
	if err != nil {
		return grpctransport.ConsoleTicket{}, err
	}
	c.mu.Lock()
	c.sweepLocked(now)
	if len(c.tickets) >= maxSessions {
		c.mu.Unlock()
		return grpctransport.ConsoleTicket{}, fmt.Errorf("%w: too many pending console logins; try again in a few minutes", pki.ErrInvalid)
	}
	c.tickets[token] = tk
	c.mu.Unlock()
	c.cfg.Logger.Info("console login token issued", "identity", id.String(), "serial", id.Serial, "session_end", end.UTC().Format(time.RFC3339))
	return grpctransport.ConsoleTicket{Token: token, Expires: tk.expires, SessionExpires: end, Identity: id}, nil
}

func earliest(t time.Time, more ...time.Time) time.Time {
	for _, u := range more {
		if u.Before(t) {
			t = u
		}
	}
	return t
}

// sweepLocked forgets expired tickets and sessions.
func (c *Console) sweepLocked(now time.Time) {
	for k, t := range c.tickets {
		if !now.Before(t.expires) {
			delete(c.tickets, k)
		}
	}
	for k, s := range c.sessions {
		if !now.Before(s.expires) {
			delete(c.sessions, k)
		}
	}
}

// TLSConfig is the console's HTTPS configuration: the certificate browsers see (the
// coordinator's by default), TLS 1.2 or later, no client certificate (a person's certificate
// stays with `fedprop console login`; the browser holds only the session).
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("console certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// Serve serves h over HTTPS on lis until ctx ends; the HTTP server's own complaints (a
// failed handshake, a client that hung up) go to log at debug level.
func Serve(ctx context.Context, lis net.Listener, h http.Handler, cfg *tls.Config, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	srv := &http.Server{Handler: h, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(lis, "", "") }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
