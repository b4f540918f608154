package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIssueCarriesRoleAndNameInSubjectAndURI(t *testing.T) {
	ca, err := NewCA(InitOptions{})
	require.NoError(t, err)
	for _, role := range Roles() {
		t.Run(string(role), func(t *testing.T) {
			cred, err := ca.Issue(IssueRequest{Role: role, Name: "party-" + string(role)})
			require.NoError(t, err)
			c := cred.Certificate
			assert.Equal(t, "party-"+string(role), c.Subject.CommonName)
			assert.Equal(t, []string{string(role)}, c.Subject.OrganizationalUnit)
			require.Len(t, c.URIs, 1)
			assert.Equal(t, "fedprop://"+string(role)+"/party-"+string(role), c.URIs[0].String())
			pub, ok := c.PublicKey.(*ecdsa.PublicKey)
			require.True(t, ok)
			assert.Equal(t, elliptic.P256(), pub.Curve)
			assert.False(t, c.IsCA)
			assert.Contains(t, c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
			assert.Equal(t, Identity{Name: "party-" + string(role), Role: role, Serial: c.SerialNumber.Text(16)}, cred.Identity)
			_, err = c.Verify(x509.VerifyOptions{Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			require.NoError(t, err)
			if role == RoleCoordinator {
				assert.Contains(t, c.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
				assert.Equal(t, []string{"localhost"}, c.DNSNames)
				assert.Len(t, c.IPAddresses, 2)
			} else {
				assert.NotContains(t, c.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
				assert.Empty(t, c.DNSNames)
			}
		})
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	ca, err := NewCA(InitOptions{})
	require.NoError(t, err)
	cases := []struct {
		name string
		req  IssueRequest
		msg  string
	}{
		{"unknown role", IssueRequest{Role: "root", Name: "a"}, `role "root"`},
		{"empty role", IssueRequest{Name: "a"}, `role ""`},
		{"empty name", IssueRequest{Role: RoleClient}, "name is empty"},
		{"slash in name", IssueRequest{Role: RoleClient, Name: "a/b"}, "character '/'"},
		{"space in name", IssueRequest{Role: RoleClient, Name: "a b"}, "character ' '"},
		{"leading dot", IssueRequest{Role: RoleClient, Name: ".hidden"}, "must start with a letter or digit"},
		{"too long", IssueRequest{Role: RoleClient, Name: strings.Repeat("a", MaxNameLen+1)}, "at most 128"},
		{"hosts on a client", IssueRequest{Role: RoleClient, Name: "a", Hosts: []string{"x"}}, "hosts are for coordinator"},
		{"bad host", IssueRequest{Role: RoleCoordinator, Name: "c", Hosts: []string{"a b"}}, "neither an IP"},
		{"negative validity", IssueRequest{Role: RoleClient, Name: "a", ValidFor: -time.Hour}, "negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.Issue(tc.req)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestIssueCutsValidityToTheCAsAndTakesHosts(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := NewCA(InitOptions{ValidFor: 48 * time.Hour, Now: now})
	require.NoError(t, err)
	cred, err := ca.Issue(IssueRequest{Role: RoleCoordinator, Name: "coord", Hosts: []string{"fedprop.bank.example", "10.0.0.7"}, ValidFor: 1000 * time.Hour, Now: now})
	require.NoError(t, err)
	assert.Equal(t, ca.Certificate().NotAfter, cred.Certificate.NotAfter)
	assert.Equal(t, []string{"fedprop.bank.example"}, cred.Certificate.DNSNames)
	require.Len(t, cred.Certificate.IPAddresses, 1)
	assert.Equal(t, "10.0.0.7", cred.Certificate.IPAddresses[0].String())
}

func TestInitCAWritesPrivateKeysAndNeverOverwrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := InitCA(dir, InitOptions{Name: "bank"})
	require.NoError(t, err)
	assert.Equal(t, "bank CA", ca.Certificate().Subject.CommonName)
	assertMode(t, filepath.Join(dir, CAKeyFile), 0o600)
	assertMode(t, dir, 0o700)

	_, err = InitCA(dir, InitOptions{})
	require.ErrorIs(t, err, ErrExists)
	loaded, err := LoadCA(dir)
	require.NoError(t, err)
	assert.True(t, loaded.Certificate().Equal(ca.Certificate()), "a second init left the first CA in place")

	cred, err := loaded.Issue(IssueRequest{Role: RoleClient, Name: "branch-001"})
	require.NoError(t, err)
	kit, err := loaded.WriteKit(dir, cred)
	require.NoError(t, err)
	assert.Equal(t, KitFiles(dir, "branch-001"), kit)
	assertMode(t, kit.Key, 0o600)
	again, err := loaded.Issue(IssueRequest{Role: RoleClient, Name: "branch-001"})
	require.NoError(t, err)
	_, err = loaded.WriteKit(dir, again)
	require.ErrorIs(t, err, ErrExists)
	key, err := os.ReadFile(kit.Key)
	require.NoError(t, err)
	assert.Equal(t, cred.KeyPEM, key, "the existing key was not overwritten")

	// A kit directory that trusts another CA is not silently re-pointed.
	other, err := NewCA(InitOptions{})
	require.NoError(t, err)
	otherCred, err := other.Issue(IssueRequest{Role: RoleOwner, Name: "owner"})
	require.NoError(t, err)
	_, err = other.WriteKit(dir, otherCred)
	require.ErrorIs(t, err, ErrExists)
	_, err = os.Stat(filepath.Join(dir, "owner.pem"))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing of a refused kit is written")

	require.NoError(t, os.Chmod(filepath.Join(dir, CAKeyFile), 0o644))
	_, err = LoadCA(dir)
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "chmod 600")
}

func TestLoadCARefusesAKeyThatIsNotTheCAs(t *testing.T) {
	dir := t.TempDir()
	_, err := InitCA(dir, InitOptions{})
	require.NoError(t, err)
	other := t.TempDir()
	_, err = InitCA(other, InitOptions{})
	require.NoError(t, err)
	key, err := os.ReadFile(filepath.Join(other, CAKeyFile))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, CAKeyFile), key, 0o600))
	_, err = LoadCA(dir)
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "does not belong")
}

func TestIdentityOfRefusesCertificatesWithoutAConsistentIdentity(t *testing.T) {
	cases := []struct {
		name string
		subj pkix.Name
		uri  string
	}{
		{"no role", pkix.Name{CommonName: "a"}, ""},
		{"two roles", pkix.Name{CommonName: "a", OrganizationalUnit: []string{"client", "admin"}}, ""},
		{"unknown role", pkix.Name{CommonName: "a", OrganizationalUnit: []string{"root"}}, ""},
		{"bad name", pkix.Name{CommonName: "a b", OrganizationalUnit: []string{"client"}}, ""},
		{"URI for another name", pkix.Name{CommonName: "a", OrganizationalUnit: []string{"client"}}, "fedprop://client/b"},
		{"URI for another role", pkix.Name{CommonName: "a", OrganizationalUnit: []string{"client"}}, "fedprop://admin/a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := IdentityOf(selfSigned(t, tc.subj, tc.uri))
			require.ErrorIs(t, err, ErrNoIdentity)
		})
	}
	id, err := IdentityOf(selfSigned(t, pkix.Name{CommonName: "a", OrganizationalUnit: []string{"owner"}}, "https://example.com/other"))
	require.NoError(t, err, "URIs of other schemes are ignored")
	assert.Equal(t, "owner/a", id.String())
	_, err = IdentityOf(nil)
	require.ErrorIs(t, err, ErrNoIdentity)
}

func TestMutualTLS13Handshake(t *testing.T) {
	dir := t.TempDir()
	ca, err := InitCA(dir, InitOptions{})
	require.NoError(t, err)
	kit := func(role Role, name string) TLSFiles {
		cred, err := ca.Issue(IssueRequest{Role: role, Name: name})
		require.NoError(t, err)
		k, err := ca.WriteKit(dir, cred)
		require.NoError(t, err)
		return k
	}
	server := kit(RoleCoordinator, "coord")
	client := kit(RoleClient, "bank-a")

	foreignDir := t.TempDir()
	foreign, err := InitCA(foreignDir, InitOptions{})
	require.NoError(t, err)
	fc, err := foreign.Issue(IssueRequest{Role: RoleClient, Name: "bank-a"})
	require.NoError(t, err)
	fk, err := foreign.WriteKit(foreignDir, fc)
	require.NoError(t, err)
	foreignClient := fk

	_, err = ServerTLSConfig(client)
	require.ErrorIs(t, err, ErrInvalid, "a coordinator needs a coordinator certificate")
	_, err = ServerTLSConfig(TLSFiles{CA: server.CA, Cert: server.Cert})
	require.ErrorIs(t, err, ErrInvalid)
	_, err = ClientTLSConfig(TLSFiles{CA: server.CA, Cert: foreignClient.Cert, Key: foreignClient.Key})
	require.ErrorContains(t, err, "is not signed by tls.ca", "a certificate not signed by the configured CA is refused at load")

	scfg, err := ServerTLSConfig(server)
	require.NoError(t, err)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	require.NoError(t, err)
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()

	// exchange handshakes and reads one message: with TLS 1.3 a refused client certificate
	// shows on the client's first read.
	exchange := func(cfg *tls.Config) error {
		conn, err := tls.Dial("tcp", lis.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
		buf := make([]byte, 2)
		_, err = conn.Read(buf)
		return err
	}
	ccfg, err := ClientTLSConfig(client)
	require.NoError(t, err)
	require.NoError(t, exchange(ccfg))

	cases := []struct {
		name string
		cfg  func() *tls.Config
	}{
		{"no client certificate", func() *tls.Config { c := ccfg.Clone(); c.Certificates = nil; return c }},
		{"certificate of another CA", func() *tls.Config {
			pair, err := tls.LoadX509KeyPair(foreignClient.Cert, foreignClient.Key)
			require.NoError(t, err)
			c := ccfg.Clone()
			c.Certificates = []tls.Certificate{pair}
			return c
		}},
		{"TLS 1.2", func() *tls.Config {
			c := ccfg.Clone()
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Error(t, exchange(tc.cfg()))
		})
	}
}

func TestClientRefusesAServerThatIsNotACoordinator(t *testing.T) {
	ca, err := NewCA(InitOptions{})
	require.NoError(t, err)
	// An owner certificate with a server key usage, as a misissuing CA might make: the client
	// still refuses it because the role is not coordinator.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "owner", OrganizationalUnit: []string{"owner"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}})
	require.NoError(t, err)
	t.Cleanup(func() { lis.Close() })
	go func() {
		c, err := lis.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, CACertFile), ca.CertPEM(), 0o644))
	cred, err := ca.Issue(IssueRequest{Role: RoleClient, Name: "bank-a"})
	require.NoError(t, err)
	kit, err := ca.WriteKit(dir, cred)
	require.NoError(t, err)
	cfg, err := ClientTLSConfig(kit)
	require.NoError(t, err)
	_, err = tls.Dial("tcp", lis.Addr().String(), cfg)
	require.ErrorIs(t, err, ErrNoIdentity)
	assert.Contains(t, err.Error(), "owner/owner")
}

func pool(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Certificate())
	return p
}

func selfSigned(t *testing.T, subj pkix.Name, uri string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: subj, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	if uri != "" {
		u, err := url.Parse(uri)
		require.NoError(t, err)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, want, info.Mode().Perm(), path)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
