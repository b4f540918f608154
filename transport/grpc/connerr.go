package grpctransport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/pki"
)

// ConnFault is why a coordinator cannot be used from this end, as far as the connection or
// the coordinator's answer tells. Some faults pass (a coordinator restarting refuses
// connections for a while); the others (Permanent) need a person to change a configuration.
type ConnFault int

// The faults. Those from FaultUnknownAuthority on are permanent.
const (
	// FaultRefused: nothing listens at the address (connection refused): the coordinator is
	// down or restarting.
	FaultRefused ConnFault = iota + 1
	// FaultUnreachable: no connection for another network reason (no route, a timeout, DNS).
	FaultUnreachable
	// FaultClosed: the coordinator closed a connection before it answered.
	FaultClosed
	// FaultHandshake: a TLS handshake failed in a way nothing else here names.
	FaultHandshake
	// FaultUnavailable: the coordinator answered UNAVAILABLE (stopping, starting).
	FaultUnavailable
	// FaultDeadline: a call ran out of time.
	FaultDeadline
	// FaultUnknownAuthority: the coordinator's certificate is not signed by this party's CA
	// (tls.ca): the kit is from another federation's CA.
	FaultUnknownAuthority
	// FaultCertificateRefused: the coordinator refused this party's certificate during the
	// handshake (another CA, expired, no certificate).
	FaultCertificateRefused
	// FaultCoordinatorCertificate: the coordinator's certificate is signed by the CA but does
	// not fit: not for the address dialled, expired, or not a coordinator's.
	FaultCoordinatorCertificate
	// FaultPlaintextToTLS: this party dials plaintext (--insecure) and the coordinator speaks TLS.
	FaultPlaintextToTLS
	// FaultTLSToPlaintext: this party dials TLS and the coordinator speaks plaintext gRPC.
	FaultTLSToPlaintext
	// FaultNotGRPC: the address answers in a protocol that is neither TLS nor gRPC (a wrong port).
	FaultNotGRPC
	// FaultNotCoordinator: the address speaks gRPC but has not the method called
	// (UNIMPLEMENTED): another service, or a coordinator of another version.
	FaultNotCoordinator
	// FaultUnauthenticated: the coordinator refuses the certificate on every call
	// (UNAUTHENTICATED): revoked, or without a fedprop identity.
	FaultUnauthenticated
	// FaultPermissionDenied: the certificate may not make the call (PERMISSION_DENIED): its role
	// is not allowed, or it is a client certificate acting for another client id.
	FaultPermissionDenied
)

var faultNames = map[ConnFault]string{
	FaultRefused:                "connection refused",
	FaultUnreachable:            "unreachable",
	FaultClosed:                 "connection closed before the coordinator answered",
	FaultHandshake:              "TLS handshake failed",
	FaultUnavailable:            "coordinator unavailable",
	FaultDeadline:               "call timed out",
	FaultUnknownAuthority:       "the coordinator's certificate is signed by an unknown authority",
	FaultCertificateRefused:     "the coordinator refused this party's certificate",
	FaultCoordinatorCertificate: "the coordinator's certificate does not fit",
	FaultPlaintextToTLS:         "plaintext (insecure) against a TLS coordinator",
	FaultTLSToPlaintext:         "TLS against a plaintext (insecure) coordinator",
	FaultNotGRPC:                "the address does not speak gRPC",
	FaultNotCoordinator:         "the address is not a fedprop coordinator",
	FaultUnauthenticated:        "the coordinator refuses this certificate",
	FaultPermissionDenied:       "the coordinator refuses this call to this certificate",
}

func (f ConnFault) String() string {
	if s, ok := faultNames[f]; ok {
		return s
	}
	return "fault " + strconv.Itoa(int(f))
}

// Permanent reports whether f needs a configuration changed: retrying cannot cure it.
func (f ConnFault) Permanent() bool { return f >= FaultUnknownAuthority }

// ConnError is a failed connection or call to the coordinator at Addr, with its Fault. It
// keeps the call's gRPC status (status.Code and status.FromError see it unchanged), and
// unwraps to its cause: the TLS or network error of the connection, or the status error.
type ConnError struct {
	// Addr is the coordinator's address as dialled.
	Addr  string
	Fault ConnFault
	// Err is the cause.
	Err error
	// detail completes the hint of FaultNotGRPC: what the address answered.
	detail string
	// status is the call's gRPC status; nil for an error not from a call.
	status *status.Status
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("coordinator %s: %s: %v", e.Addr, e.Fault, e.Err)
}

// Unwrap returns the cause.
func (e *ConnError) Unwrap() error { return e.Err }

// GRPCStatus is the call's status, so that status.Code(err) is the code the call ended with.
func (e *ConnError) GRPCStatus() *status.Status {
	if e.status == nil {
		return status.New(codes.Unknown, e.Error())
	}
	return e.status
}

// Permanent reports whether retrying cannot cure the error (client.Agent stops on it).
func (e *ConnError) Permanent() bool { return e.Fault.Permanent() }

// Hint is one line for the operator: what to change, for a permanent fault.
func (e *ConnError) Hint() string {
	switch e.Fault {
	case FaultUnknownAuthority:
		return "tls.ca must be the CA certificate that issued the coordinator's certificate (the federation's ca.pem); this party's kit comes from another CA"
	case FaultCertificateRefused:
		return "use the kit the federation's operator issued for this party from the coordinator's CA (fedprop ca issue): the coordinator does not accept this certificate (another CA, expired or missing)"
	case FaultCoordinatorCertificate:
		return "dial the coordinator by a host name or IP address its certificate names, or ask its operator to reissue its certificate (expired, or not a coordinator's)"
	case FaultPlaintextToTLS:
		return "the coordinator serves mutual TLS: remove insecure: true (--insecure) and set tls.ca, tls.cert and tls.key to this party's kit"
	case FaultTLSToPlaintext:
		return "the coordinator serves plaintext (insecure): ask its operator to serve mutual TLS, or set insecure: true (--insecure) on a trusted test network only"
	case FaultNotGRPC:
		return "check the coordinator address: " + e.Addr + " answers " + e.detail + ", not gRPC; the coordinator's gRPC port is its listen address (7070 by default), not its metrics port"
	case FaultNotCoordinator:
		return "check the coordinator address: " + e.Addr + " speaks gRPC but has not this method (another service, or a coordinator of another fedprop version)"
	case FaultUnauthenticated:
		return "the coordinator refuses this certificate on every call (revoked, or without a fedprop identity): ask the federation's operator for a new kit"
	case FaultPermissionDenied:
		return "the certificate's role or name does not fit the call: a client needs a client certificate issued for its own id (the id setting)"
	}
	return ""
}

// WaitingFor says, for a passing fault, what a party retrying is waiting for.
func (e *ConnError) WaitingFor() string {
	switch e.Fault {
	case FaultRefused:
		return "the coordinator to accept connections at " + e.Addr + " (connection refused: it is not running, or restarting)"
	case FaultUnreachable:
		return "a network path to " + e.Addr
	case FaultClosed:
		return "the coordinator at " + e.Addr + " to answer a connection (it closed one before answering: starting, stopping or overloaded)"
	case FaultHandshake:
		return "a TLS handshake with " + e.Addr + " to succeed"
	case FaultUnavailable:
		return "the coordinator at " + e.Addr + " to become available (stopping, starting or overloaded)"
	case FaultDeadline:
		return "an answer from the coordinator at " + e.Addr + " (a call timed out)"
	}
	return ""
}

// connWatch records how the latest connection attempt to one coordinator ended, so that a
// call failing with UNAVAILABLE can say why: gRPC's own error carries the cause as text only.
// It observes the dial (dial, when gRPC would not go through a proxy), the TLS handshake
// (watchedCreds) and the coordinator's first bytes (watchedConn). It is safe for concurrent use.
type connWatch struct {
	addr   string
	secure bool
	// direct reports that the watch dials itself (no proxy), so every attempt passes through
	// it and the record is never older than the latest attempt; through a proxy only the
	// handshakes are seen.
	direct bool

	mu   sync.Mutex
	last *ConnError // the latest attempt's fault; nil after one that worked
}

func newConnWatch(addr string, secure bool) *connWatch {
	w := &connWatch{addr: addr, secure: secure}
	// gRPC goes through the proxy the environment names for the address (HTTPS_PROXY,
	// NO_PROXY), and a dialer of our own would bypass it: dial only when gRPC would not use one.
	proxy, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "https", Host: addr}})
	w.direct = err == nil && proxy == nil
	return w
}

func (w *connWatch) fail(f ConnFault, err error, detail string) {
	w.mu.Lock()
	w.last = &ConnError{Addr: w.addr, Fault: f, Err: err, detail: detail}
	w.mu.Unlock()
}

func (w *connWatch) ok() {
	w.mu.Lock()
	w.last = nil
	w.mu.Unlock()
}

func (w *connWatch) lastFault() *ConnError {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		return nil
	}
	c := *w.last
	return &c
}

// dialer is what gRPC's default dialer does (TCP with the system's keep-alive settings), with
// the outcome recorded.
func (w *connWatch) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	switch {
	case err == nil:
		w.ok()
	case errors.Is(err, syscall.ECONNREFUSED):
		w.fail(FaultRefused, err, "")
	case ctx.Err() == nil:
		w.fail(FaultUnreachable, err, "")
	}
	return conn, err
}

// options are the dial options that install the watch.
func (w *connWatch) options(creds credentials.TransportCredentials) []grpc.DialOption {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(watchedCreds{TransportCredentials: creds, w: w}),
		grpc.WithChainUnaryInterceptor(w.unary), grpc.WithChainStreamInterceptor(w.stream)}
	if w.direct {
		opts = append(opts, grpc.WithContextDialer(w.dial))
	}
	return opts
}

func (w *connWatch) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return w.explain(invoker(ctx, method, req, reply, cc, opts...))
}

func (w *connWatch) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, w.explain(err)
	}
	return &watchedStream{ClientStream: s, w: w}, nil
}

// watchedStream explains the errors of a stream's messages as the watch explains calls.
type watchedStream struct {
	grpc.ClientStream
	w *connWatch
}

func (s *watchedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return s.w.explain(err)
}

// explain turns a call's error into a ConnError when its code says something about the
// connection or the caller: UNAVAILABLE with the latest attempt's fault, DEADLINE_EXCEEDED,
// and the refusals of the coordinator's edge. Other errors (the protocol's) are left alone.
func (w *connWatch) explain(err error) error {
	if err == nil {
		return nil
	}
	var already *ConnError
	if errors.As(err, &already) {
		return err
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &ConnError{Addr: w.addr, Err: err, status: s}
	switch s.Code() {
	case codes.Unavailable:
		e.Fault = FaultUnavailable
		if last := w.lastFault(); last != nil {
			e.Fault, e.Err, e.detail = last.Fault, last.Err, last.detail
		}
	case codes.DeadlineExceeded:
		e.Fault = FaultDeadline
	case codes.Unauthenticated:
		e.Fault = FaultUnauthenticated
	case codes.PermissionDenied:
		e.Fault = FaultPermissionDenied
	case codes.Unimplemented:
		e.Fault = FaultNotCoordinator
	default:
		return err
	}
	return e
}

// watchedCreds records the outcome of every client handshake and watches the coordinator's
// first bytes on the connection it returns.
type watchedCreds struct {
	credentials.TransportCredentials
	w *connWatch
}

// ClientHandshake implements credentials.TransportCredentials.
func (c watchedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if !c.w.direct {
		c.w.ok() // a new attempt: what the watch held is older than it
	}
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		f, detail := clientHandshakeFault(err)
		c.w.fail(f, err, detail)
		return nil, nil, err
	}
	return &watchedConn{Conn: conn, w: c.w, raw: raw.RemoteAddr()}, info, nil
}

// Clone implements credentials.TransportCredentials.
func (c watchedCreds) Clone() credentials.TransportCredentials {
	return watchedCreds{TransportCredentials: c.TransportCredentials.Clone(), w: c.w}
}

// certificateAlert reports whether a is an alert a TLS peer sends when it refuses the other's
// certificate (the numbers are in rejects.go).
func certificateAlert(a tls.AlertError) bool {
	switch a {
	case alertBadCertificate, alertCertificateRevoked, alertCertificateExpired, alertCertificateUnknown, alertUnknownCA, alertAccessDenied, alertCertificateNeeded:
		return true
	}
	return false
}

// clientHandshakeFault classifies a failed client-side handshake, with what the server
// answered for FaultNotGRPC.
func clientHandshakeFault(err error) (ConnFault, string) {
	var (
		header tls.RecordHeaderError
		verify *tls.CertificateVerificationError
		netErr net.Error
	)
	alert, isAlert := remoteAlert(err)
	switch {
	case errors.As(err, &header):
		// The server's first bytes were no TLS record: an HTTP/2 settings frame is a plaintext
		// gRPC server; anything else is another protocol.
		if isSettingsFrame(header.RecordHeader[:]) {
			return FaultTLSToPlaintext, ""
		}
		return FaultNotGRPC, quoteStart(header.RecordHeader[:])
	case errors.As(err, &verify):
		var unknown x509.UnknownAuthorityError
		if errors.As(verify.Err, &unknown) {
			return FaultUnknownAuthority, ""
		}
		return FaultCoordinatorCertificate, ""
	case errors.Is(err, pki.ErrNoIdentity):
		return FaultCoordinatorCertificate, ""
	case isAlert && certificateAlert(alert):
		return FaultCertificateRefused, ""
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return FaultClosed, ""
	case errors.As(err, &netErr) && netErr.Timeout():
		return FaultUnreachable, ""
	}
	return FaultHandshake, ""
}

// http2FrameSettings is the type of the frame every HTTP/2 server sends first (RFC 9113 3.4).
const http2FrameSettings = 0x4

// isSettingsFrame reports whether b starts an HTTP/2 frame header of a SETTINGS frame on stream
// 0: 3 bytes of length (a few settings: the first byte 0), the type, the flags (0: not an ack).
func isSettingsFrame(b []byte) bool {
	return len(b) >= 5 && b[0] == 0 && b[3] == http2FrameSettings && b[4] == 0
}

// quoteStart shows the first bytes a server answered, for a hint ("HTTP/1.1 400", "SSH-2.0").
func quoteStart(b []byte) string {
	if len(b) > 16 {
		b = b[:16]
	}
	return strconv.QuoteToASCII(string(b))
}

// watchedConn checks the coordinator's first bytes after the handshake: a TLS alert there is
// the coordinator refusing this party's certificate (TLS 1.3 verifies it after the client's
// handshake has ended), and anything but an HTTP/2 settings frame is not gRPC. After that it
// only passes reads through.
type watchedConn struct {
	net.Conn
	w   *connWatch
	raw net.Addr // the address dialled, for a plaintext connection's probe

	settled atomic.Bool
	head    []byte // the first bytes, until there are five to judge
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.settled.Load() {
		return n, err
	}
	c.head = append(c.head, p[:n]...)
	switch {
	case len(c.head) >= 5:
		c.settled.Store(true)
		if isSettingsFrame(c.head) {
			c.w.ok()
		} else {
			c.w.fail(FaultNotGRPC, fmt.Errorf("the server's first bytes are %s, not an HTTP/2 settings frame", quoteStart(c.head)), quoteStart(c.head))
		}
	case err != nil:
		c.settled.Store(true)
		c.firstReadFailed(err)
	}
	return n, err
}

// firstReadFailed records why the coordinator said nothing before the connection failed.
func (c *watchedConn) firstReadFailed(err error) {
	_, isAlert := remoteAlert(err)
	switch {
	case c.w.secure && isAlert:
		// After a completed TLS 1.3 handshake, an alert before the first byte is the
		// coordinator refusing this party's certificate, whichever alert it chose.
		c.w.fail(FaultCertificateRefused, err, "")
	case !c.w.secure && len(c.head) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) && c.w.direct && speaksTLS(c.raw):
		// A TLS server closes a connection whose first bytes are no TLS record without a
		// word: ask it with a ClientHello of our own whether that is what it is.
		c.w.fail(FaultPlaintextToTLS, fmt.Errorf("the coordinator closed the plaintext connection and answers a TLS handshake: %w", err), "")
	case errors.Is(err, net.ErrClosed):
		// gRPC closed it itself (a client shutting down): nothing to learn.
	default:
		c.w.fail(FaultClosed, err, "")
	}
}

// probeTimeout bounds speaksTLS: a TLS server answers a ClientHello at once.
const probeTimeout = 3 * time.Second

// errProbeAnswered stops a probe's handshake once the server's first byte is read.
var errProbeAnswered = errors.New("probe answered")

// speaksTLS reports whether addr answers a TLS ClientHello with a TLS handshake record. The
// probe stops at the answer's first byte: it completes no handshake and sends nothing but the
// ClientHello, so the server logs at most a connection closed during its handshake.
func speaksTLS(addr net.Addr) bool {
	if addr == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return false
	}
	defer raw.Close()
	rec := &firstByteConn{Conn: raw}
	// The probe verifies nothing because it trusts nothing: it reads one byte and hangs up.
	probe := tls.Client(rec, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) // #nosec G402 -- a protocol probe: no data is sent, nothing is trusted
	_ = probe.HandshakeContext(ctx)
	return rec.first == tlsRecordHandshake
}

// firstByteConn keeps the first byte the server sends and ends the read there.
type firstByteConn struct {
	net.Conn
	first int
	read  bool
}

func (c *firstByteConn) Read(p []byte) (int, error) {
	if c.read {
		return 0, errProbeAnswered
	}
	n, err := c.Conn.Read(p[:min(len(p), 1)])
	if n > 0 {
		c.read, c.first = true, int(p[0])
		return 0, errProbeAnswered
	}
	c.first = -1
	return 0, err
}
