package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The files of a CA directory and of a provisioning kit.
const (
	// CACertFile is the CA certificate every party trusts.
	CACertFile = "ca.pem"
	// CAKeyFile is the CA's private key; it never leaves the CA directory.
	CAKeyFile = "ca-key.pem"
)

// CertFile is the file name of NAME's certificate in a kit.
func CertFile(name string) string { return name + ".pem" }

// KeyFile is the file name of NAME's private key in a kit.
func KeyFile(name string) string { return name + "-key.pem" }

// Default lifetimes.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so that a peer whose clock runs a little slow accepts a
	// certificate issued a moment ago.
	clockSkew = 5 * time.Minute
)

// uriScheme is the scheme of the URI SAN fedprop://ROLE/NAME.
const uriScheme = "fedprop"

// CA is a loaded certificate authority: its certificate and private key.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
}

// InitOptions configure a new CA. The zero value is usable.
type InitOptions struct {
	// Name goes into the CA's CommonName ("NAME CA"); default "fedprop".
	Name string
	// ValidFor is the CA's lifetime; default DefaultCAValidity.
	ValidFor time.Duration
	// Now is the issuing time; zero means the current time.
	Now time.Time
}

// NewCA creates a CA in memory.
func NewCA(opts InitOptions) (*CA, error) {
	if opts.Name == "" {
		opts.Name = "fedprop"
	}
	if opts.ValidFor == 0 {
		opts.ValidFor = DefaultCAValidity
	}
	if opts.ValidFor < 0 {
		return nil, fmt.Errorf("%w: CA validity %v is negative", ErrInvalid, opts.ValidFor)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: opts.Name + " CA", Organization: []string{"fedprop"}},
		NotBefore:             opts.Now.Add(-clockSkew),
		NotAfter:              opts.Now.Add(opts.ValidFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		// SubjectKeyId is left to x509.CreateCertificate, which derives it for CAs.
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// InitCA creates a CA and writes ca.pem and ca-key.pem (mode 0600) into dir, which it creates
// (mode 0700) when missing. It never overwrites: an existing CA file is ErrExists.
func InitCA(dir string, opts InitOptions) (*CA, error) {
	ca, err := NewCA(opts)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	if err := writeFiles([]fileSpec{
		{filepath.Join(dir, CACertFile), ca.certPEM, 0o644},
		{filepath.Join(dir, CAKeyFile), keyPEM, 0o600},
	}); err != nil {
		return nil, fmt.Errorf("init CA in %s: %w", dir, err)
	}
	return ca, nil
}

// LoadCA reads the CA written by InitCA. The key file must not be readable by group or others.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath) // #nosec G304 -- the CA directory is the operator's choice
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	cert, err := parseCertPEM(certPEM, certPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load CA: %s: %w: not a CA certificate", certPath, ErrInvalid)
	}
	info, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load CA: %s: %w: mode %v lets others read the CA key (chmod 600 it)", keyPath, ErrInvalid, info.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath) // #nosec G304 -- the CA directory is the operator's choice
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	key, err := parseKeyPEM(keyPEM, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("load CA: %s does not belong to %s: %w", keyPath, certPath, ErrInvalid)
	}
	return &CA{cert: cert, certPEM: certPEM, key: key}, nil
}

// Certificate is the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM is the CA's certificate in PEM, the ca.pem of every kit.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// IssueRequest asks for one party's certificate.
type IssueRequest struct {
	Role Role
	Name string
	// Hosts are the DNS names and IP addresses a coordinator is dialled at; default
	// localhost, 127.0.0.1 and ::1. Only coordinator certificates carry them.
	Hosts []string
	// ValidFor is the certificate's lifetime (default DefaultCertValidity), cut to the CA's.
	ValidFor time.Duration
	// Now is the issuing time; zero means the current time.
	Now time.Time
}

// Credential is an issued certificate with its private key.
type Credential struct {
	Identity    Identity
	Certificate *x509.Certificate
	CertPEM     []byte
	KeyPEM      []byte
}

// Issue makes a certificate for req's role and name, signed by the CA.
func (ca *CA) Issue(req IssueRequest) (*Credential, error) {
	if _, err := ParseRole(string(req.Role)); err != nil {
		return nil, err
	}
	if err := ValidName(req.Name); err != nil {
		return nil, err
	}
	if req.ValidFor == 0 {
		req.ValidFor = DefaultCertValidity
	}
	if req.ValidFor < 0 {
		return nil, fmt.Errorf("%w: validity %v is negative", ErrInvalid, req.ValidFor)
	}
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	if len(req.Hosts) > 0 && req.Role != RoleCoordinator {
		return nil, fmt.Errorf("%w: hosts are for coordinator certificates, not %s", ErrInvalid, req.Role)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: req.Name, OrganizationalUnit: []string{string(req.Role)}, Organization: []string{"fedprop"}},
		NotBefore:             req.Now.Add(-clockSkew),
		NotAfter:              req.Now.Add(req.ValidFor),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{identityURI(req.Role, req.Name)},
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	if req.Role == RoleCoordinator {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		hosts := req.Hosts
		if len(hosts) == 0 {
			hosts = []string{"localhost", "127.0.0.1", "::1"}
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
				continue
			}
			if h == "" || strings.ContainsAny(h, " /:@") {
				return nil, fmt.Errorf("%w: host %q is neither an IP address nor a DNS name", ErrInvalid, h)
			}
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue %s certificate for %s: %w", req.Role, req.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	id, err := IdentityOf(cert)
	if err != nil {
		return nil, err
	}
	return &Credential{
		Identity:    id,
		Certificate: cert,
		CertPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:      keyPEM,
	}, nil
}

// KitFiles names the files of NAME's provisioning kit in dir.
func KitFiles(dir, name string) TLSFiles {
	return TLSFiles{CA: filepath.Join(dir, CACertFile), Cert: filepath.Join(dir, CertFile(name)), Key: filepath.Join(dir, KeyFile(name))}
}

// WriteKit writes cred's provisioning kit into dir: ca.pem, NAME.pem and NAME-key.pem (mode
// 0600). It never overwrites a certificate or key; an existing ca.pem must be this CA's.
func (ca *CA) WriteKit(dir string, cred *Credential) (TLSFiles, error) {
	kit := KitFiles(dir, cred.Identity.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return TLSFiles{}, fmt.Errorf("create kit directory: %w", err)
	}
	files := []fileSpec{{kit.Cert, cred.CertPEM, 0o644}, {kit.Key, cred.KeyPEM, 0o600}}
	existing, err := os.ReadFile(kit.CA)
	switch {
	case err == nil:
		if !bytes.Equal(existing, ca.certPEM) {
			return TLSFiles{}, fmt.Errorf("write kit: %s: %w and holds another CA's certificate", kit.CA, ErrExists)
		}
	case errors.Is(err, fs.ErrNotExist):
		files = append(files, fileSpec{kit.CA, ca.certPEM, 0o644})
	default:
		return TLSFiles{}, fmt.Errorf("write kit: %w", err)
	}
	if err := writeFiles(files); err != nil {
		return TLSFiles{}, fmt.Errorf("write kit for %s: %w", cred.Identity, err)
	}
	return kit, nil
}

// IdentityOf reads the role and name a certificate carries. The CommonName, the single
// OrganizationalUnit and every fedprop:// URI SAN must agree.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrNoIdentity)
	}
	name := cert.Subject.CommonName
	if err := ValidName(name); err != nil {
		return Identity{}, fmt.Errorf("%w: common name: %w", ErrNoIdentity, err)
	}
	if len(cert.Subject.OrganizationalUnit) != 1 {
		return Identity{}, fmt.Errorf("%w: %d organizational units, want exactly one role", ErrNoIdentity, len(cert.Subject.OrganizationalUnit))
	}
	role, err := ParseRole(cert.Subject.OrganizationalUnit[0])
	if err != nil {
		return Identity{}, fmt.Errorf("%w: organizational unit: %w", ErrNoIdentity, err)
	}
	for _, u := range cert.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		if want := identityURI(role, name); u.String() != want.String() {
			return Identity{}, fmt.Errorf("%w: URI %s disagrees with role %s and name %s", ErrNoIdentity, u, role, name)
		}
	}
	if cert.SerialNumber == nil {
		return Identity{}, fmt.Errorf("%w: no serial number", ErrNoIdentity)
	}
	return Identity{Name: name, Role: role, Serial: cert.SerialNumber.Text(16)}, nil
}

func identityURI(role Role, name string) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: string(role), Path: "/" + name}
}

func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	for {
		s, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if s.Sign() > 0 {
			return s, nil
		}
	}
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCertPEM(data []byte, name string) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: %w: no PEM CERTIFICATE block", name, ErrInvalid)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return cert, nil
}

func parseKeyPEM(data []byte, name string) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: %w: no PEM PRIVATE KEY block", name, ErrInvalid)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: %w: not an ECDSA key", name, ErrInvalid)
	}
	return key, nil
}

type fileSpec struct {
	path string
	data []byte
	perm os.FileMode
}

// writeFiles creates every file or none: it refuses when any exists, and removes what it
// wrote when a later write fails.
func writeFiles(files []fileSpec) error {
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			return fmt.Errorf("%s: %w (nothing was overwritten)", f.path, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	var written []string
	for _, f := range files {
		if err := writeExcl(f.path, f.data, f.perm); err != nil {
			for _, p := range written {
				_ = os.Remove(p)
			}
			return err
		}
		written = append(written, f.path)
	}
	return nil
}

func writeExcl(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm) // #nosec G304 -- a kit directory the operator chose; O_EXCL never overwrites
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w (nothing was overwritten)", path, ErrExists)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
