package pki_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/pki"
)

func TestSignedStatementsVerifyOnlyAsSigned(t *testing.T) {
	ca, err := pki.NewCA(pki.InitOptions{})
	require.NoError(t, err)
	other, err := pki.NewCA(pki.InitOptions{Name: "other"})
	require.NoError(t, err)
	issue := func(ca *pki.CA, role pki.Role, name string) *pki.Signer {
		cred, err := ca.Issue(pki.IssueRequest{Role: role, Name: name})
		require.NoError(t, err)
		s, err := cred.Signer()
		require.NoError(t, err)
		return s
	}
	alice := issue(ca, pki.RoleClient, "alice")
	v := pki.NewVerifier(ca.Certificate())
	signed, err := alice.Sign("test/v1", []byte("run-1"), []byte("key"))
	require.NoError(t, err)

	id, err := v.Verify(signed, pki.Identity{Name: "alice", Role: pki.RoleClient}, "test/v1", []byte("run-1"), []byte("key"))
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Name)

	tampered := signed
	tampered.Signature = append([]byte(nil), signed.Signature...)
	tampered.Signature[len(tampered.Signature)-1] ^= 1
	outsider, err := issue(other, pki.RoleClient, "alice").Sign("test/v1", []byte("run-1"), []byte("key"))
	require.NoError(t, err)
	cases := []struct {
		name  string
		s     pki.Signed
		want  pki.Identity
		parts [][]byte
		dom   string
	}{
		{"another statement", signed, pki.Identity{Name: "alice"}, [][]byte{[]byte("run-1"), []byte("kez")}, "test/v1"},
		{"parts split differently", signed, pki.Identity{Name: "alice"}, [][]byte{[]byte("run-1k"), []byte("ey")}, "test/v1"},
		{"another domain", signed, pki.Identity{Name: "alice"}, [][]byte{[]byte("run-1"), []byte("key")}, "test/v2"},
		{"another signer required", signed, pki.Identity{Name: "bob"}, [][]byte{[]byte("run-1"), []byte("key")}, "test/v1"},
		{"another role required", signed, pki.Identity{Role: pki.RoleApprover}, [][]byte{[]byte("run-1"), []byte("key")}, "test/v1"},
		{"a flipped bit", tampered, pki.Identity{}, [][]byte{[]byte("run-1"), []byte("key")}, "test/v1"},
		{"a certificate of another CA", outsider, pki.Identity{}, [][]byte{[]byte("run-1"), []byte("key")}, "test/v1"},
		{"nothing", pki.Signed{}, pki.Identity{}, nil, "test/v1"},
		{"garbage certificate", pki.Signed{Certificate: []byte{1, 2}, Signature: []byte{3}}, pki.Identity{}, nil, "test/v1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.s, tc.want, tc.dom, tc.parts...)
			require.ErrorIs(t, err, pki.ErrBadSignature)
		})
	}
}
