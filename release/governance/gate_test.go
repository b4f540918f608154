package governance_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/governance"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/store"
)

// ledger is a store of versions by content and their fairness flags, keeping no audit log of
// its own (the gate's sink keeps it): the smallest Ledger the gate runs on.
type ledger struct {
	content map[uint64]string
	flagged map[uint64][]string
}

func (l *ledger) Audited() bool { return false }
func (l *ledger) AuditLog(context.Context) ([]audit.Entry, audit.Head, error) {
	return nil, audit.Head{}, fmt.Errorf("no audit log")
}
func (l *ledger) AppendAudit(context.Context, []audit.Entry) error { return fmt.Errorf("no audit log") }

func (l *ledger) ContentHash(_ context.Context, v uint64) (string, error) {
	c, ok := l.content[v]
	if !ok {
		return "", fmt.Errorf("version %d: %w", v, store.ErrNotFound)
	}
	h := sha256.Sum256([]byte(c))
	return hex.EncodeToString(h[:]), nil
}

func (l *ledger) Heads(context.Context) ([]governance.VersionHead, error) {
	var out []governance.VersionHead
	for v := uint64(1); v <= uint64(len(l.content)); v++ {
		out = append(out, governance.VersionHead{Version: v})
	}
	return out, nil
}

func (l *ledger) Violations(_ context.Context, v uint64) ([]string, error) {
	if _, ok := l.content[v]; !ok {
		return nil, fmt.Errorf("version %d: %w", v, store.ErrNotFound)
	}
	return l.flagged[v], nil
}

type fixture struct {
	t      *testing.T
	ca     *pki.CA
	ledger *ledger
	sink   *audit.MemStore
}

func newFixture(t *testing.T) *fixture {
	ca, err := pki.NewCA(pki.InitOptions{Name: "test"})
	require.NoError(t, err)
	return &fixture{t: t, ca: ca, sink: &audit.MemStore{}, ledger: &ledger{
		content: map[uint64]string{1: "weights one", 2: "weights two"},
		flagged: map[uint64][]string{1: {"age: demographic parity gap 0.31 > 0.2"}},
	}}
}

func (f *fixture) open(verifier *pki.Verifier) (*governance.Gate, error) {
	return governance.Open(context.Background(), f.ledger, governance.Config{Verifier: verifier, Now: time.Now, Sink: f.sink})
}

func (f *fixture) verifier() *pki.Verifier { return pki.NewVerifier(f.ca.Certificate()) }

func (f *fixture) signer(role pki.Role, name string) *pki.Signer {
	cred, err := f.ca.Issue(pki.IssueRequest{Role: role, Name: name})
	require.NoError(f.t, err)
	s, err := cred.Signer()
	require.NoError(f.t, err)
	return s
}

// decision signs action on version's current content hash.
func (f *fixture) decision(g *governance.Gate, s *pki.Signer, action audit.Action, version uint64, reason string) governance.Decision {
	subject, err := g.Subject(context.Background(), version)
	require.NoError(f.t, err)
	signed, err := audit.SignDecision(s, action, audit.VersionSubject(version), subject.ContentHash, reason)
	require.NoError(f.t, err)
	return governance.Decision{Version: version, Reason: reason, Override: action == audit.ActionOverride,
		ContentHash: subject.ContentHash, Signature: signed}
}

// TestTheGateReleasesOnlyWhatAnApproverSignedAndStillHolds walks a version through the gate:
// nothing is released before a decision, a flagged version needs an override, a decision is
// taken once, and a version whose content changed after its approval is no longer released.
func TestTheGateReleasesOnlyWhatAnApproverSignedAndStillHolds(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	g, err := f.open(f.verifier())
	require.NoError(t, err)
	officer := f.signer(pki.RoleApprover, "risk-officer")
	who := governance.Reviewer{Name: "risk-officer", Role: string(pki.RoleApprover)}

	_, err = g.Released(ctx, 0, false)
	require.ErrorIs(t, err, store.ErrNotFound, "nothing approved yet")
	_, err = g.Released(ctx, 2, false)
	require.ErrorIs(t, err, governance.ErrNotApproved)
	v, err := g.Released(ctx, 0, true)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), v, "the latest candidate, asked for as one")

	_, err = g.Approve(ctx, who, f.decision(g, officer, audit.ActionApprove, 1, "looks fine"))
	require.ErrorIs(t, err, governance.ErrFlagged)
	_, err = g.Approve(ctx, who, f.decision(g, officer, audit.ActionOverride, 2, "not flagged"))
	require.ErrorIs(t, err, governance.ErrInvalidDecision)
	r, err := g.Approve(ctx, who, f.decision(g, officer, audit.ActionOverride, 1, "gap explained by the branch mix"))
	require.NoError(t, err)
	assert.True(t, r.Override)
	assert.Equal(t, modelcard.StatusApproved, g.Status(1).Status)
	_, err = g.Reject(ctx, who, f.decision(g, officer, audit.ActionReject, 1, "second thoughts"))
	require.ErrorIs(t, err, governance.ErrReviewed)

	v, err = g.Released(ctx, 0, false)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), v)

	// Someone with write access changes version 1 after its approval: no read releases it.
	f.ledger.content[1] = "weights one, edited"
	_, err = g.Released(ctx, 1, false)
	require.ErrorIs(t, err, governance.ErrNotApproved)
	require.ErrorIs(t, err, governance.ErrBadSignature)
	// Nor does a gate opened on the log afterwards start on it.
	_, err = f.open(f.verifier())
	require.ErrorIs(t, err, governance.ErrBadSignature)
}

// TestTheGateHonoursOnlyDecisionsItCanVerify: a decision signed by an owner (not an approver),
// one signed over another hash, and any decision at all without a CA are refused, and a
// decision forged into the log keeps the gate from opening.
func TestTheGateHonoursOnlyDecisionsItCanVerify(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	g, err := f.open(f.verifier())
	require.NoError(t, err)
	who := governance.Reviewer{Name: "owner", Role: string(pki.RoleOwner)}

	_, err = g.Approve(ctx, who, f.decision(g, f.signer(pki.RoleOwner, "owner"), audit.ActionApprove, 2, "mine"))
	require.ErrorIs(t, err, governance.ErrBadSignature)
	d := f.decision(g, f.signer(pki.RoleApprover, "risk-officer"), audit.ActionApprove, 2, "ok")
	d.ContentHash = "0000000000000000000000000000000000000000000000000000000000000000"
	_, err = g.Approve(ctx, governance.Reviewer{Name: "risk-officer", Role: string(pki.RoleApprover)}, d)
	var de *audit.DecisionError
	require.ErrorAs(t, err, &de)

	noCA, err := f.open(nil)
	require.NoError(t, err)
	_, err = noCA.Approve(ctx, who, f.decision(noCA, f.signer(pki.RoleApprover, "risk-officer"), audit.ActionApprove, 2, "ok"))
	require.ErrorIs(t, err, governance.ErrNoCA)

	// A decision appended to the log by someone who signed it with their own CA's key.
	other, err := pki.NewCA(pki.InitOptions{Name: "forger"})
	require.NoError(t, err)
	cred, err := other.Issue(pki.IssueRequest{Role: pki.RoleApprover, Name: "risk-officer"})
	require.NoError(t, err)
	forger, err := cred.Signer()
	require.NoError(t, err)
	subject, err := g.Subject(ctx, 2)
	require.NoError(t, err)
	signed, err := audit.SignDecision(forger, audit.ActionApprove, audit.VersionSubject(2), subject.ContentHash, "forged")
	require.NoError(t, err)
	log, err := audit.Open(ctx, f.sink, audit.Options{Now: time.Now})
	require.NoError(t, err)
	_, err = log.Append(ctx, audit.Record{Actor: "risk-officer", Role: string(pki.RoleApprover), Action: audit.ActionApprove,
		Subject: audit.VersionSubject(2), Reason: "forged", Digest: subject.ContentHash, Signature: &signed})
	require.NoError(t, err)
	_, err = f.open(f.verifier())
	require.ErrorIs(t, err, governance.ErrBadSignature)
}
