package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrBadSignature is wrapped by every statement that does not verify: a certificate that does
// not chain to the CA, a signature that does not match, or a signer other than the one
// required.
var ErrBadSignature = errors.New("statement does not verify")

// maxStatementCert bounds the certificate a signed statement carries.
const maxStatementCert = 16 << 10

// Signed is a statement's signature by a party's certificate key, with the certificate, so
// that anyone holding the CA certificate can check who vouched for it. The coordinator relays
// Signed values; it cannot make them.
type Signed struct {
	// Certificate is the signer's certificate, DER.
	Certificate []byte `json:"certificate"`
	// Signature is ECDSA over SHA-256 of the domain-separated statement, ASN.1.
	Signature []byte `json:"signature"`
}

// Signer signs statements with the private key of a party's own certificate.
type Signer struct {
	key  crypto.Signer
	cert []byte
	id   Identity
}

// LoadSigner reads a party's certificate and key (the files of its TLS kit) and checks that the
// certificate chains to files.CA.
func LoadSigner(files TLSFiles) (*Signer, error) {
	_, own, err := loadKit(files)
	if err != nil {
		return nil, err
	}
	key, ok := own.pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("tls.key %s: %w: not a signing key", files.Key, ErrInvalid)
	}
	return &Signer{key: key, cert: own.pair.Leaf.Raw, id: own.id}, nil
}

// Signer returns a signer with the credential's certificate and key (tests, in-process
// tools).
func (c *Credential) Signer() (*Signer, error) {
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok || pair.Leaf == nil {
		return nil, fmt.Errorf("%w: not a signing key pair", ErrInvalid)
	}
	return &Signer{key: key, cert: pair.Leaf.Raw, id: c.Identity}, nil
}

// Identity is who the signer's certificate speaks for.
func (s *Signer) Identity() Identity { return s.id }

// digest is SHA-256 over the domain label and each part, length-prefixed, so that no statement
// of one kind can be read as another.
func digest(domain string, parts ...[]byte) []byte {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(domain))))
	h.Write([]byte(domain))
	for _, p := range parts {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(p))))
		h.Write(p)
	}
	return h.Sum(nil)
}

// Sign signs the statement made of parts under domain.
func (s *Signer) Sign(domain string, parts ...[]byte) (Signed, error) {
	sig, err := s.key.Sign(rand.Reader, digest(domain, parts...), crypto.SHA256)
	if err != nil {
		return Signed{}, fmt.Errorf("sign %s: %w", domain, err)
	}
	return Signed{Certificate: append([]byte(nil), s.cert...), Signature: sig}, nil
}

// Verifier checks signed statements against the CA.
type Verifier struct {
	roots *x509.CertPool
	now   func() time.Time
}

// NewVerifier trusts certificates issued by ca.
func NewVerifier(ca *x509.Certificate) *Verifier {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &Verifier{roots: pool, now: time.Now}
}

// LoadVerifier trusts the CA certificate in the PEM file at path.
func LoadVerifier(path string) (*Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls.ca %s: %w: no PEM certificate in it", path, ErrInvalid)
	}
	return &Verifier{roots: pool, now: time.Now}, nil
}

// At returns a verifier that checks certificates' validity at t instead of now: a statement
// recorded when it was made (an approval in the audit log) stays verifiable after the
// signer's certificate has expired.
func (v *Verifier) At(t time.Time) *Verifier {
	return &Verifier{roots: v.roots, now: func() time.Time { return t }}
}

// Verify checks that s signs the statement made of parts under domain with a certificate the
// CA issued, and returns who signed it. want, when its Name or Role is set, is the identity the
// signer must have.
func (v *Verifier) Verify(s Signed, want Identity, domain string, parts ...[]byte) (Identity, error) {
	if len(s.Certificate) == 0 || len(s.Certificate) > maxStatementCert || len(s.Signature) == 0 {
		return Identity{}, fmt.Errorf("%w: no certificate or signature", ErrBadSignature)
	}
	cert, err := x509.ParseCertificate(s.Certificate)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: certificate: %w", ErrBadSignature, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.roots, CurrentTime: v.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Identity{}, fmt.Errorf("%w: certificate of %s: %w", ErrBadSignature, cert.Subject.CommonName, err)
	}
	id, err := IdentityOf(cert)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	if (want.Name != "" && id.Name != want.Name) || (want.Role != "" && id.Role != want.Role) {
		return id, fmt.Errorf("%w: signed by %s, want %s", ErrBadSignature, id, want)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return id, fmt.Errorf("%w: %s's certificate key is not ECDSA", ErrBadSignature, id)
	}
	if !ecdsa.VerifyASN1(pub, digest(domain, parts...), s.Signature) {
		return id, fmt.Errorf("%w: %s's signature does not match the %s statement", ErrBadSignature, id, domain)
	}
	return id, nil
}
