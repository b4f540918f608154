package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/pki"
)

// TestPreImageIsWhatSignaturesHash: a signature made over SHA-256 of PreImage, as WebCrypto
// makes one, verifies as the Signer's would.
func TestPreImageIsWhatSignaturesHash(t *testing.T) {
	ca, err := pki.NewCA(pki.InitOptions{})
	require.NoError(t, err)
	cred, err := ca.Issue(pki.IssueRequest{Role: pki.RoleApprover, Name: "risk-officer"})
	require.NoError(t, err)
	s, err := cred.Signer()
	require.NoError(t, err)
	v := pki.NewVerifier(ca.Certificate())
	session, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	d, err := s.Delegate(&session.PublicKey, now.Add(time.Hour), now)
	require.NoError(t, err)
	sum := sha256.Sum256(pki.PreImage("test/v1", []byte("a"), []byte("")))
	sig, err := ecdsa.SignASN1(rand.Reader, session, sum[:])
	require.NoError(t, err)
	signed := pki.Signed{Certificate: cred.Certificate.Raw, Signature: sig}
	id, err := v.VerifyDelegated(signed, d, pki.Identity{Role: pki.RoleApprover}, "test/v1", []byte("a"), []byte(""))
	require.NoError(t, err)
	assert.Equal(t, "risk-officer", id.Name)

	cases := []struct {
		name string
		v    *pki.Verifier
		d    func() pki.Delegation
		sig  []byte
		want string
	}{
		{"another statement", v, func() pki.Delegation { return d }, nil, "does not sign"},
		{"after the delegation", v.At(now.Add(2 * time.Hour)), func() pki.Delegation { return d }, sig, "ended"},
		{"a delegation to another key", v, func() pki.Delegation {
			other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			od, err := s.Delegate(&other.PublicKey, now.Add(time.Hour), now)
			require.NoError(t, err)
			return od
		}, sig, "does not sign"},
		{"a delegation with a longer life than signed", v, func() pki.Delegation {
			e := d
			e.NotAfter = e.NotAfter.Add(time.Hour)
			return e
		}, sig, "delegation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := signed
			if tc.sig == nil {
				sum := sha256.Sum256(pki.PreImage("test/v1", []byte("b")))
				s.Signature, err = ecdsa.SignASN1(rand.Reader, session, sum[:])
				require.NoError(t, err)
			}
			_, err := tc.v.VerifyDelegated(s, tc.d(), pki.Identity{Role: pki.RoleApprover}, "test/v1", []byte("a"), []byte(""))
			require.ErrorIs(t, err, pki.ErrBadSignature)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err = s.Delegate(&session.PublicKey, now.Add(9*time.Hour), now)
	require.ErrorIs(t, err, pki.ErrInvalid, "at most pki.MaxDelegation")
}
