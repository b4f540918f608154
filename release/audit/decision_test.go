package audit_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
)

const digest = "3f9a0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f5a6b7c8d9e0f1a2b3c4"

type testCA struct {
	t  *testing.T
	ca *pki.CA
}

// caEpoch is when the test CAs and their certificates begin: before the log's clock (2025).
var caEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T) *testCA {
	ca, err := pki.NewCA(pki.InitOptions{Name: "test", Now: caEpoch})
	require.NoError(t, err)
	return &testCA{t: t, ca: ca}
}

func (c *testCA) signer(role pki.Role, name string) *pki.Signer {
	cred, err := c.ca.Issue(pki.IssueRequest{Role: role, Name: name, Now: caEpoch})
	require.NoError(c.t, err)
	s, err := cred.Signer()
	require.NoError(c.t, err)
	return s
}

func (c *testCA) verifier() *pki.Verifier { return pki.NewVerifier(c.ca.Certificate()) }

// decision logs a signed decision after two coordinator entries and returns the log's entries.
func decision(t *testing.T, s *pki.Signer, actor string, action audit.Action, reason string) []audit.Entry {
	t.Helper()
	signed, err := audit.SignDecision(s, action, audit.VersionSubject(3), digest, reason)
	require.NoError(t, err)
	store := &audit.MemStore{}
	writeLog(t, store, []audit.Record{
		{Actor: "coordinator", Role: "coordinator", Action: audit.ActionRunStart, Subject: "run-1"},
		{Actor: "coordinator", Role: "coordinator", Action: audit.ActionCommit, Subject: audit.VersionSubject(3)},
		{Actor: actor, Role: "approver", Action: action, Subject: audit.VersionSubject(3), Reason: reason, Digest: digest, Signature: &signed},
	})
	entries, err := store.Entries(context.Background())
	require.NoError(t, err)
	return entries
}

// TestDecisionSignatures is issue 12's done-when: an approval signed by an approver verifies;
// the same entry with one byte changed, or re-signed by an owner's key, fails and names the
// entry, whether or not the forger also recomputed the chain.
func TestDecisionSignatures(t *testing.T) {
	ca := newTestCA(t)
	alice := ca.signer(pki.RoleApprover, "alice")
	good := decision(t, alice, "alice", audit.ActionApprove, "AUC 0.77 on the Q3 holdout")
	require.NoError(t, audit.Verify(good, nil))
	n, err := audit.VerifyDecisions(ca.verifier(), good)
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	// rechain recomputes the hashes from entry 3 on, as a forger with write access would.
	rechain := func(es []audit.Entry) []audit.Entry {
		es[2].Hash = es[2].ComputeHash()
		return es
	}
	edit := func(f func(e *audit.Entry)) func() []audit.Entry {
		return func() []audit.Entry {
			es := append([]audit.Entry(nil), good...)
			f(&es[2])
			return rechain(es)
		}
	}
	resign := func(s *pki.Signer, actor string, action audit.Action) func() []audit.Entry {
		return func() []audit.Entry {
			es := append([]audit.Entry(nil), good...)
			signed, err := audit.SignDecision(s, action, es[2].Subject, es[2].Digest, es[2].Reason)
			require.NoError(t, err)
			es[2].Signature, es[2].Actor = &signed, actor
			return rechain(es)
		}
	}
	other := newTestCA(t)
	cases := []struct {
		name    string
		entries func() []audit.Entry
		want    string
	}{
		{"one byte of the reason changed", edit(func(e *audit.Entry) { e.Reason = strings.Replace(e.Reason, "Q3", "Q4", 1) }), "does not match"},
		{"one hex digit of the content hash changed", edit(func(e *audit.Entry) { e.Digest = "4" + e.Digest[1:] }), "does not match"},
		{"the version changed", edit(func(e *audit.Entry) { e.Subject = audit.VersionSubject(4) }), "does not match"},
		{"an approval turned into an override", edit(func(e *audit.Entry) { e.Action = audit.ActionOverride }), "does not match"},
		{"one byte of the signature changed", edit(func(e *audit.Entry) {
			sig := *e.Signature
			sig.Signature = bytes.Clone(sig.Signature)
			sig.Signature[len(sig.Signature)-1] ^= 1
			e.Signature = &sig
		}), "does not match"},
		{"the signature removed", edit(func(e *audit.Entry) { e.Signature = nil }), "no signature"},
		{"the actor changed to another approver", edit(func(e *audit.Entry) { e.Actor = "bob" }), "want approver/bob"},
		{"re-signed by an owner's key", resign(ca.signer(pki.RoleOwner, "model-owner"), "model-owner", audit.ActionApprove), "signed by owner/model-owner"},
		{"re-signed by an owner's key, actor kept", resign(ca.signer(pki.RoleOwner, "model-owner"), "alice", audit.ActionApprove), "signed by owner/model-owner"},
		{"re-signed by the coordinator's key", resign(ca.signer(pki.RoleCoordinator, "coordinator"), "coordinator", audit.ActionApprove), "want approver/coordinator"},
		{"signed by an approver of another CA", resign(other.signer(pki.RoleApprover, "alice"), "alice", audit.ActionApprove), "certificate of alice"},
		{"a role that is not approver", edit(func(e *audit.Entry) { e.Role = "owner" }), `role is "owner"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es := tc.entries()
			require.NoError(t, audit.Verify(es, nil), "the forger recomputed the chain")
			_, err := audit.VerifyDecisions(ca.verifier(), es)
			require.ErrorIs(t, err, audit.ErrBadSignature)
			var de *audit.DecisionError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, uint64(3), de.Seq)
			assert.Contains(t, err.Error(), "audit entry 3")
			assert.Contains(t, err.Error(), tc.want)

			// Without recomputing the chain, the chain names the entry first.
			es[2].Hash = good[2].Hash
			if es[2].ComputeHash() != es[2].Hash {
				var ce *audit.ChainError
				require.ErrorAs(t, audit.Verify(es, nil), &ce)
				assert.Equal(t, uint64(3), ce.Seq)
			}
		})
	}
}

func TestADecisionOutlivesItsSignersCertificate(t *testing.T) {
	ca := newTestCA(t)
	issued := caEpoch.Add(48 * time.Hour)
	cred, err := ca.ca.Issue(pki.IssueRequest{Role: pki.RoleApprover, Name: "alice", Now: issued, ValidFor: 24 * time.Hour})
	require.NoError(t, err)
	s, err := cred.Signer()
	require.NoError(t, err)
	signed, err := audit.SignDecision(s, audit.ActionReject, audit.VersionSubject(3), digest, "drift")
	require.NoError(t, err)
	e := audit.Entry{Seq: 1, Time: issued.Add(time.Hour).UTC(), Actor: "alice", Role: "approver", Action: audit.ActionReject,
		Subject: audit.VersionSubject(3), Reason: "drift", Digest: digest, Signature: &signed}
	_, err = audit.VerifyDecision(ca.verifier(), e)
	require.NoError(t, err, "checked as of the decision's time")
	e.Time = time.Now().UTC()
	_, err = audit.VerifyDecision(ca.verifier(), e)
	require.ErrorIs(t, err, audit.ErrBadSignature, "a decision dated after the certificate expired does not verify")
}

func TestSignedEntriesChainAndRoundTrip(t *testing.T) {
	ca := newTestCA(t)
	es := decision(t, ca.signer(pki.RoleApprover, "alice"), "alice", audit.ActionReject, "drift in the >=60 band")
	var buf bytes.Buffer
	require.NoError(t, audit.WriteEntries(&buf, es))
	back, err := audit.ReadEntries(context.Background(), &buf)
	require.NoError(t, err)
	assert.Equal(t, es, back)
	require.NoError(t, audit.Verify(back, ptr(audit.HeadOf(es))))

	// The hash covers the signature: stripping it breaks the chain.
	stripped := append([]audit.Entry(nil), es...)
	stripped[2].Signature, stripped[2].Digest = nil, ""
	require.ErrorIs(t, audit.Verify(stripped, nil), audit.ErrTampered)

	_, err = audit.SignDecision(ca.signer(pki.RoleApprover, "alice"), audit.ActionCommit, "version 3", digest, "x")
	require.ErrorIs(t, err, audit.ErrInvalid, "only decisions are signed as decisions")
	_, err = audit.SignDecision(ca.signer(pki.RoleApprover, "alice"), audit.ActionApprove, "version 3", "abc", "x")
	require.ErrorIs(t, err, audit.ErrInvalid)
}

func TestVersionSubject(t *testing.T) {
	for _, tc := range []struct {
		s  string
		n  uint64
		ok bool
	}{
		{"version 12", 12, true}, {audit.VersionSubject(1), 1, true}, {"version 0", 0, false}, {"version 012", 0, false},
		{"version -1", 0, false}, {"run-1", 0, false}, {"version ", 0, false},
	} {
		n, ok := audit.ParseVersionSubject(tc.s)
		assert.Equal(t, tc.ok, ok, tc.s)
		assert.Equal(t, tc.n, n, tc.s)
	}
}

func TestFollows(t *testing.T) {
	store := &audit.MemStore{}
	writeLog(t, store, records)
	es, err := store.Entries(context.Background())
	require.NoError(t, err)
	require.NoError(t, audit.Follows(audit.Head{}, es))
	require.NoError(t, audit.Follows(audit.HeadOf(es[:2]), es[2:]))
	require.ErrorIs(t, audit.Follows(audit.HeadOf(es[:1]), es[2:]), audit.ErrFork)
	require.ErrorIs(t, audit.Follows(audit.Head{Seq: 2, Hash: es[0].Hash}, es[2:]), audit.ErrFork)
	es[3].Reason = "edited"
	require.ErrorIs(t, audit.Follows(audit.HeadOf(es[:2]), es[2:]), audit.ErrTampered)
}
