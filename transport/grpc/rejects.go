package grpctransport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/fedprop/fedprop/pki"
)

// RejectReason is why the coordinator's edge refused a connection or a call, as its log names it.
type RejectReason string

// The reasons, from the TLS handshake (before any call) and from the edge's checks on each call.
const (
	// RejectNoCertificate: a TLS client that presented no certificate.
	RejectNoCertificate RejectReason = "no certificate"
	// RejectUnknownCA: a client certificate from another CA.
	RejectUnknownCA RejectReason = "unknown CA"
	// RejectBadCertificate: a client certificate of this CA that does not verify (expired, not
	// for client authentication) or carries no fedprop identity.
	RejectBadCertificate RejectReason = "bad certificate"
	// RejectCoordinatorCertificate: the client aborted the handshake because it does not accept
	// the coordinator's certificate: its tls.ca is another CA's (a whole kit from another CA
	// ends here, before the client shows its own certificate), or it dialled an address the
	// certificate does not name. A TLS client's alert does not say which.
	RejectCoordinatorCertificate RejectReason = "client refused the coordinator's certificate"
	// RejectRevoked: a certificate on the deny list.
	RejectRevoked RejectReason = "revoked"
	// RejectWrongRole: a role the policy does not allow for the method.
	RejectWrongRole RejectReason = "wrong role"
	// RejectOtherClient: a client certificate acting for another client id.
	RejectOtherClient RejectReason = "acts as another client"
	// RejectRateLimited: a caller over its request budget.
	RejectRateLimited RejectReason = "rate limited"
	// RejectPlaintext: a plaintext client (--insecure) against a TLS coordinator.
	RejectPlaintext RejectReason = "plaintext against TLS"
	// RejectTLS: a TLS client against a plaintext (--insecure) coordinator.
	RejectTLS RejectReason = "TLS against plaintext"
	// RejectHandshake: any other failed TLS handshake (an old TLS version, a timeout).
	RejectHandshake RejectReason = "handshake failed"
)

// DefaultRejectLogEvery is how often the edge logs the same peer refused for the same reason:
// the first refusal at once, then at most one line per interval carrying the count of refusals
// it did not log. A minute bounds a flood to 1,440 lines a day per peer and reason, while a
// client that keeps retrying (an older agent backs off to 15 s, client.AgentConfig.MaxBackoff)
// still shows every minute with its count.
const DefaultRejectLogEvery = time.Minute

// maxRejectKeys bounds the peers and reasons the rejection log remembers. A flood from more
// distinct addresses than this is logged per reason under the peer "(many peers)", so memory
// stays bounded while a line still says what happens.
const maxRejectKeys = 4096

// manyPeers is the peer a rejection is logged under once maxRejectKeys are remembered.
const manyPeers = "(many peers)"

// rejectLog writes one warn line per refused connection or call, rate-limited per peer host
// and reason. It is safe for concurrent use.
type rejectLog struct {
	log   *slog.Logger
	now   func() time.Time
	every time.Duration

	mu        sync.Mutex
	seen      map[rejectKey]*rejectEntry
	lastSweep time.Time
}

// rejectKey is what the log limits on: the peer's host, not its port, since every connection
// comes from a new port.
type rejectKey struct {
	host   string
	reason RejectReason
}

type rejectEntry struct {
	last       time.Time
	suppressed int
}

func newRejectLog(log *slog.Logger, now func() time.Time, every time.Duration) *rejectLog {
	if now == nil {
		now = time.Now
	}
	if every <= 0 {
		every = DefaultRejectLogEvery
	}
	return &rejectLog{log: log, now: now, every: every, seen: map[rejectKey]*rejectEntry{}}
}

// reject logs that addr was refused for reason, unless the same host was logged for the same
// reason within the interval: then it only counts it, for the next line's "suppressed".
func (r *rejectLog) reject(ctx context.Context, addr net.Addr, reason RejectReason, attrs ...any) {
	from, host := "unknown", "unknown"
	if addr != nil {
		from, host = addr.String(), addr.String()
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	r.mu.Lock()
	now := r.now()
	key := rejectKey{host: host, reason: reason}
	e, ok := r.seen[key]
	if !ok && len(r.seen) >= maxRejectKeys {
		// At most one sweep a second: a flood from many hosts must not cost a scan of the
		// whole map per refusal.
		if now.Sub(r.lastSweep) >= time.Second {
			r.sweep(now)
			r.lastSweep = now
		}
		if len(r.seen) >= maxRejectKeys {
			key.host = manyPeers
			e, ok = r.seen[key]
		}
	}
	if ok && now.Sub(e.last) < r.every {
		e.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := 0
	if ok {
		suppressed = e.suppressed
	}
	r.seen[key] = &rejectEntry{last: now}
	r.mu.Unlock()
	line := append([]any{"peer", from, "reason", string(reason)}, attrs...)
	if key.host == manyPeers {
		line = append(line, "counted_as", manyPeers)
	}
	line = append(line, "suppressed", suppressed, "log_every", r.every.String())
	r.log.WarnContext(ctx, "connection refused at the edge", line...)
}

// sweep forgets entries older than the interval; their next refusal is logged at once anyway.
// A suppressed count they held is lost, which the interval bounds: at most one interval's worth
// of refusals from a peer that then stopped.
func (r *rejectLog) sweep(now time.Time) {
	for k, e := range r.seen {
		if now.Sub(e.last) >= r.every {
			delete(r.seen, k)
		}
	}
}

// TLS alerts (RFC 8446 section 6) a client sends when it refuses the coordinator's certificate.
const (
	alertBadCertificate     tls.AlertError = 42
	alertCertificateRevoked tls.AlertError = 44
	alertCertificateExpired tls.AlertError = 45
	alertCertificateUnknown tls.AlertError = 46
	alertUnknownCA          tls.AlertError = 48
	alertAccessDenied       tls.AlertError = 49
	alertCertificateNeeded  tls.AlertError = 116
)

// remoteAlert is the TLS alert the peer sent, when err is one. crypto/tls reports a received
// alert over TCP as a *net.OpError with Op "remote error" around a value of its unexported
// alert type (a uint8), and as a tls.AlertError only over QUIC, so both forms are read here,
// by type and field, never by the message.
func remoteAlert(err error) (tls.AlertError, bool) {
	var a tls.AlertError
	if errors.As(err, &a) {
		return a, true
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, false
	}
	if v := reflect.ValueOf(op.Err); v.Kind() == reflect.Uint8 {
		return tls.AlertError(v.Uint()), true
	}
	return 0, false
}

// errNoClientCertificate is the handshake's error for a client with no certificate (see
// edgeTLSConfig): crypto/tls's own says so only in its text.
var errNoClientCertificate = errors.New("the client presented no certificate")

// edgeTLSConfig is cfg as the edge serves it, with the same guarantee and typed errors: a
// client certificate is verified against the CA when given (VerifyClientCertIfGiven), and a
// connection without a verified one is refused by VerifyConnection, which runs on every
// handshake, resumed ones included. crypto/tls with RequireAndVerifyClientCert refuses the same
// connections, but with an untyped error, so the log could not say "no certificate" without
// matching text. cfg's own VerifyConnection (the fedprop identity) runs after.
func edgeTLSConfig(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	c.ClientAuth = tls.VerifyClientCertIfGiven
	inner := cfg.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errNoClientCertificate
		}
		if len(cs.VerifiedChains) == 0 {
			return fmt.Errorf("%w: the client certificate is not verified", pki.ErrNoIdentity)
		}
		if inner != nil {
			return inner(cs)
		}
		return nil
	}
	return c
}

// serverHandshakeReason classifies a failed server-side TLS handshake. quiet reports a
// connection closed before or during the handshake with nothing to say about it (a TCP health
// probe, a client giving up): logged at debug, not warn.
func serverHandshakeReason(err error) (reason RejectReason, quiet bool) {
	var (
		header tls.RecordHeaderError
		verify *tls.CertificateVerificationError
		netErr net.Error
	)
	alert, isAlert := remoteAlert(err)
	switch {
	case errors.As(err, &header) && header.Conn != nil:
		// The first bytes were no TLS record: an HTTP/2 preface ("PRI * HTTP/2.0") from a
		// plaintext gRPC client, or some other protocol.
		return RejectPlaintext, false
	case errors.Is(err, errNoClientCertificate):
		return RejectNoCertificate, false
	case errors.As(err, &verify):
		var unknown x509.UnknownAuthorityError
		if errors.As(verify.Err, &unknown) {
			return RejectUnknownCA, false
		}
		return RejectBadCertificate, false
	case errors.Is(err, pki.ErrNoIdentity):
		return RejectBadCertificate, false
	case isAlert && certificateAlert(alert):
		// During the server's handshake a client alerts only about the coordinator's
		// certificate: it has not been asked to trust anything else.
		return RejectCoordinatorCertificate, false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return RejectHandshake, true
	case errors.As(err, &netErr) && netErr.Timeout():
		return RejectHandshake, false
	}
	return RejectHandshake, false
}

// edgeCreds is the server's TLS credentials with every failed handshake logged: the handshake
// happens when a connection is accepted, before any call reaches an interceptor, so a client
// with a wrong kit would otherwise leave no trace above gRPC's own logger.
type edgeCreds struct {
	credentials.TransportCredentials
	rejects *rejectLog
}

// ServerHandshake implements credentials.TransportCredentials.
func (c edgeCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		reason, quiet := serverHandshakeReason(err)
		if quiet {
			c.rejects.log.Debug("connection closed during the TLS handshake", "peer", raw.RemoteAddr().String(), "err", err)
		} else {
			c.rejects.reject(context.Background(), raw.RemoteAddr(), reason, "err", err)
		}
	}
	return conn, info, err
}

// Clone implements credentials.TransportCredentials.
func (c edgeCreds) Clone() credentials.TransportCredentials {
	return edgeCreds{TransportCredentials: c.TransportCredentials.Clone(), rejects: c.rejects}
}

// tlsRecordHandshake is the first byte of a TLS connection: a handshake record (the ClientHello).
const tlsRecordHandshake = 0x16

// plaintextEdgeCreds is a plaintext (--insecure) server's credentials: no security, but a
// client that opens with a TLS ClientHello is logged as TLS against plaintext. The connection
// then goes on to gRPC unchanged, which answers with its HTTP/2 settings frame and closes it:
// that answer is how the client tells a plaintext coordinator from a broken one.
type plaintextEdgeCreds struct {
	credentials.TransportCredentials
	rejects *rejectLog
}

// ServerHandshake implements credentials.TransportCredentials. It returns no AuthInfo, as a
// server without credentials does.
func (c plaintextEdgeCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var first [1]byte
	n, err := raw.Read(first[:]) // gRPC has set the handshake deadline on raw
	if n == 0 {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, io.EOF) {
			err = io.EOF // gRPC's word for a connection closed before anything happened
		}
		return nil, nil, err
	}
	if first[0] == tlsRecordHandshake {
		c.rejects.reject(context.Background(), raw.RemoteAddr(), RejectTLS, "err", "the client opened with a TLS handshake; this coordinator serves plaintext (insecure)")
	}
	return &prefixedConn{Conn: raw, prefix: first[:n]}, nil, nil
}

// Clone implements credentials.TransportCredentials.
func (c plaintextEdgeCreds) Clone() credentials.TransportCredentials {
	return plaintextEdgeCreds{TransportCredentials: c.TransportCredentials.Clone(), rejects: c.rejects}
}

// prefixedConn gives back bytes already read from the connection before the rest.
type prefixedConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// peerAddr is a call's peer address, nil when the context carries none.
func peerAddr(ctx context.Context) net.Addr {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr
	}
	return nil
}
