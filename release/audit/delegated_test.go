package audit_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
)

// consoleDecision is a decision as the oversight console records it: the delegation, signed by
// delegator's certificate key, and the decision signed by the session key, logged at the log's
// clock (2025, see clock) by actor.
func consoleDecision(t *testing.T, delegator *pki.Signer, session *ecdsa.PrivateKey, delegated *ecdsa.PublicKey, notAfter time.Time,
	actor string) audit.Entry {
	t.Helper()
	d, err := delegator.Delegate(delegated, notAfter, notAfter.Add(-time.Hour))
	require.NoError(t, err)
	reason := "validated on the Q3 holdout\n\nFairness override: reviewed by the committee"
	sum := sha256.Sum256(audit.DecisionPreImage(audit.ActionApprove, audit.VersionSubject(3), digest, reason))
	sig, err := ecdsa.SignASN1(rand.Reader, session, sum[:])
	require.NoError(t, err)
	cert := bytes.Clone(mustSign(t, delegator).Certificate)
	store := &audit.MemStore{}
	writeLog(t, store, []audit.Record{
		{Actor: "coordinator", Role: "coordinator", Action: audit.ActionCommit, Subject: audit.VersionSubject(3)},
		{Actor: actor, Role: "approver", Action: audit.ActionApprove, Subject: audit.VersionSubject(3), Reason: reason, Digest: digest,
			Signature: &pki.Signed{Certificate: cert, Signature: sig}, Delegation: &d},
	})
	entries, err := store.Entries(context.Background())
	require.NoError(t, err)
	require.NoError(t, audit.Verify(entries, nil), "the chain holds whatever the signatures")
	return entries[1]
}

// mustSign is any statement by s: its certificate, as a Signed carries it.
func mustSign(t *testing.T, s *pki.Signer) pki.Signed {
	signed, err := s.Sign("test/v1")
	require.NoError(t, err)
	return signed
}

// TestDelegatedDecisions: a decision signed in the console by a session key verifies only with a
// valid delegation from an approver's certificate, in force when the decision was logged.
func TestDelegatedDecisions(t *testing.T) {
	ca := newTestCA(t)
	approver := ca.signer(pki.RoleApprover, "risk-officer")
	owner := ca.signer(pki.RoleOwner, "risk-officer")
	session, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	logged := clock()() // the time the log stamps on its first entry
	later := logged.Add(time.Hour)

	cases := []struct {
		name string
		e    func() audit.Entry
		want string // "" verifies
	}{
		{"approver's delegation, session's signature", func() audit.Entry {
			return consoleDecision(t, approver, session, &session.PublicKey, later, "risk-officer")
		}, ""},
		{"a session key no one delegated to", func() audit.Entry {
			return consoleDecision(t, approver, other, &session.PublicKey, later, "risk-officer")
		}, "does not sign"},
		{"no valid delegation signature", func() audit.Entry {
			e := consoleDecision(t, approver, session, &session.PublicKey, later, "risk-officer")
			e.Delegation.Signature[len(e.Delegation.Signature)-1] ^= 1
			return e
		}, "delegation"},
		{"a delegation that ended before the decision", func() audit.Entry {
			return consoleDecision(t, approver, session, &session.PublicKey, logged.Add(-time.Minute), "risk-officer")
		}, "delegation to a session key ended"},
		{"a delegation from an owner's certificate", func() audit.Entry {
			return consoleDecision(t, owner, session, &session.PublicKey, later, "risk-officer")
		}, "want approver/risk-officer"},
		{"an approver's delegation, another actor", func() audit.Entry {
			return consoleDecision(t, approver, session, &session.PublicKey, later, "someone-else")
		}, "want approver/someone-else"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.e()
			id, err := audit.VerifyDecision(ca.verifier(), e)
			if tc.want == "" {
				require.NoError(t, err)
				assert.Equal(t, pki.Identity{Name: "risk-officer", Role: pki.RoleApprover, Serial: id.Serial}, id)
				return
			}
			require.ErrorIs(t, err, audit.ErrBadSignature)
			require.ErrorIs(t, err, pki.ErrBadSignature)
			var de *audit.DecisionError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, e.Seq, de.Seq, "the error names the entry")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestDelegationIsInTheEntryHash: the delegation is part of what the chain covers, and an
// entry with one survives the export format.
func TestDelegationIsInTheEntryHash(t *testing.T) {
	ca := newTestCA(t)
	session, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	e := consoleDecision(t, ca.signer(pki.RoleApprover, "risk-officer"), session, &session.PublicKey, clock()().Add(time.Hour), "risk-officer")
	line, err := audit.EncodeLine(e)
	require.NoError(t, err)
	back, err := audit.ReadEntries(context.Background(), bytes.NewReader(line))
	require.NoError(t, err)
	require.Len(t, back, 1)
	assert.Equal(t, e.Hash, back[0].ComputeHash())
	e.Delegation.NotAfter = e.Delegation.NotAfter.Add(time.Hour)
	assert.NotEqual(t, e.Hash, e.ComputeHash(), "editing the delegation changes the entry's hash")
}
