package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles names the three files of a party's kit.
type TLSFiles struct {
	// CA is the CA certificate (ca.pem) the peer's certificate must chain to; it may hold
	// several certificates while a CA is rotated.
	CA string
	// Cert and Key are the party's own certificate and private key.
	Cert, Key string
}

// Missing lists the configuration keys (tls.ca, tls.cert, tls.key) that are empty.
func (f TLSFiles) Missing() []string {
	var out []string
	for _, kv := range []struct{ key, val string }{{"tls.ca", f.CA}, {"tls.cert", f.Cert}, {"tls.key", f.Key}} {
		if kv.val == "" {
			out = append(out, kv.key)
		}
	}
	return out
}

// Set reports whether any of the three files is named.
func (f TLSFiles) Set() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// ServerTLSConfig is the coordinator's side of mutual TLS: TLS 1.3 only, a client certificate
// required and verified against the CA, and refused during the handshake when it carries no
// fedprop identity. files.Cert must be a coordinator certificate.
//
// Revocation is not checked here but on every call (transport/grpc's Edge): a revoked
// certificate is then refused with a status that says so, where a refused TLS 1.3 handshake
// shows the client only a broken connection.
func ServerTLSConfig(files TLSFiles) (*tls.Config, error) {
	pool, own, err := loadKit(files)
	if err != nil {
		return nil, err
	}
	if own.id.Role != RoleCoordinator {
		return nil, fmt.Errorf("tls.cert %s: %w: it is a %s certificate; a coordinator needs a coordinator certificate", files.Cert, ErrInvalid, own.id.Role)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{own.pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := PeerIdentity(cs)
			return err
		},
	}, nil
}

// ClientTLSConfig is the side of mutual TLS that dials a coordinator: TLS 1.3 only, the
// server verified against the CA (and its address against the certificate's hosts), and
// accepted only when its certificate is a coordinator's.
func ClientTLSConfig(files TLSFiles) (*tls.Config, error) {
	pool, own, err := loadKit(files)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{own.pair},
		RootCAs:      pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := PeerIdentity(cs)
			if err != nil {
				return err
			}
			if id.Role != RoleCoordinator {
				return fmt.Errorf("%w: the server presented a %s certificate, not a coordinator's", ErrNoIdentity, id)
			}
			return nil
		},
	}, nil
}

// PeerIdentity is the identity of the verified certificate a TLS peer presented.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, fmt.Errorf("%w: the peer presented no verified certificate", ErrNoIdentity)
	}
	return IdentityOf(cs.VerifiedChains[0][0])
}

type ownCert struct {
	pair tls.Certificate
	id   Identity
}

func loadKit(files TLSFiles) (*x509.CertPool, ownCert, error) {
	if missing := files.Missing(); len(missing) > 0 {
		return nil, ownCert{}, fmt.Errorf("%w: %v not set", ErrInvalid, missing)
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		return nil, ownCert{}, fmt.Errorf("tls.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, ownCert{}, fmt.Errorf("tls.ca %s: %w: no PEM certificate in it", files.CA, ErrInvalid)
	}
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		return nil, ownCert{}, fmt.Errorf("tls.cert %s, tls.key %s: %w", files.Cert, files.Key, err)
	}
	if pair.Leaf == nil {
		return nil, ownCert{}, fmt.Errorf("tls.cert %s: %w: no certificate", files.Cert, ErrInvalid)
	}
	id, err := IdentityOf(pair.Leaf)
	if err != nil {
		return nil, ownCert{}, fmt.Errorf("tls.cert %s: %w", files.Cert, err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			return nil, ownCert{}, fmt.Errorf("tls.cert %s is not signed by tls.ca %s: %w", files.Cert, files.CA, err)
		}
		return nil, ownCert{}, fmt.Errorf("tls.cert %s: %w", files.Cert, err)
	}
	return pool, ownCert{pair: pair, id: id}, nil
}
