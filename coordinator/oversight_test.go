package coordinator_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/store/mem"
)

// gate is a coordinator's store on disk and the CA its approvers' certificates come from.
type gate struct {
	t      *testing.T
	path   string
	ca     *pki.CA
	opened []*bolt.Store
}

func newGate(t *testing.T) *gate {
	ca, err := pki.NewCA(pki.InitOptions{Name: "test"})
	require.NoError(t, err)
	g := &gate{t: t, path: filepath.Join(t.TempDir(), "fedprop.db"), ca: ca}
	t.Cleanup(g.stop)
	s := coordinator.Records{Store: g.open()}
	flagged := &fairness.Verdict{Flagged: true, Violations: []fairness.Violation{{Attribute: "age", Metric: fairness.MetricDemographicParity,
		Threshold: 0.5, Gap: 0.31, Limit: 0.2, MaxGroup: ">=60", MinGroup: "30-60"}}}
	ctx := context.Background()
	require.NoError(t, s.Commit(ctx, coordinator.ModelVersion{Version: 1, RunID: "r", Round: 1, Weights: []float64{-2.69}, FairnessVerdict: flagged},
		coordinator.RunState{ID: "r", LastRound: 1, LatestVersion: 1}))
	require.NoError(t, s.Commit(ctx, coordinator.ModelVersion{Version: 2, RunID: "r", Round: 2, Weights: []float64{-2.71}},
		coordinator.RunState{ID: "r", LastRound: 2, LatestVersion: 2}))
	g.stop()
	return g
}

// open opens the store; stop closes it.
func (g *gate) open() *bolt.Store {
	s, err := bolt.Open(g.path)
	require.NoError(g.t, err)
	g.opened = append(g.opened, s)
	return s
}

// stop closes every store open, as a stopped coordinator does.
func (g *gate) stop() {
	for _, s := range g.opened {
		_ = s.Close()
	}
	g.opened = nil
}

func (g *gate) verifier() *pki.Verifier { return pki.NewVerifier(g.ca.Certificate()) }

// start starts a coordinator on the store.
func (g *gate) start() (*coordinator.Server, error) {
	s := g.open()
	return coordinator.NewServer(context.Background(), s, nil, coordinator.ServerConfig{Reviewers: g.verifier(), Logger: quiet()})
}

func (g *gate) signer(role pki.Role, name string) *pki.Signer {
	cred, err := g.ca.Issue(pki.IssueRequest{Role: role, Name: name})
	require.NoError(g.t, err)
	s, err := cred.Signer()
	require.NoError(g.t, err)
	return s
}

// decide is what `fedprop model approve` does: fetch the version's content hash, sign.
func (g *gate) decide(srv *coordinator.Server, s *pki.Signer, action audit.Action, version uint64, reason string) coordinator.Decision {
	subject, err := srv.ReviewSubject(context.Background(), version)
	require.NoError(g.t, err)
	signed, err := audit.SignDecision(s, action, audit.VersionSubject(version), subject.ContentHash, reason)
	require.NoError(g.t, err)
	return coordinator.Decision{Version: version, Reason: reason, Override: action == audit.ActionOverride, ContentHash: subject.ContentHash, Signature: signed}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var approver = coordinator.Reviewer{Name: "risk-officer", Role: "approver"}

func TestAFlaggedVersionNeedsAnOverrideThatRecordsItsReason(t *testing.T) {
	ctx := context.Background()
	g := newGate(t)
	srv, err := g.start()
	require.NoError(t, err)
	risk := g.signer(pki.RoleApprover, "risk-officer")

	_, err = srv.Approve(ctx, approver, g.decide(srv, risk, audit.ActionApprove, 1, "fine"))
	require.ErrorIs(t, err, coordinator.ErrFlagged)
	assert.Contains(t, err.Error(), "age: demographic_parity_difference 0.3100")
	assert.Equal(t, "candidate", srv.Status(1).Status, "a refused approval changes nothing")

	_, err = srv.Approve(ctx, approver, g.decide(srv, risk, audit.ActionOverride, 2, "fine"))
	require.ErrorIs(t, err, coordinator.ErrInvalid, "an override of a version that is not flagged is refused")

	r, err := srv.Approve(ctx, approver, g.decide(srv, risk, audit.ActionOverride, 1, "gap driven by 337 customers over 60; campaign excludes them"))
	require.NoError(t, err)
	assert.Equal(t, "approved", r.Status)
	assert.True(t, r.Override)
	assert.Equal(t, audit.ActionOverride, r.Entry.Action)
	assert.Equal(t, "version 1", r.Entry.Subject)
	assert.NotNil(t, r.Entry.Signature, "the decision is logged with the approver's signature")
	head := srv.AuditHead()

	// A restarted coordinator reads the decisions back from the store, and verifies them.
	g.stop()
	entries, stored, err := coordinator.Records{Store: g.open()}.AuditLog(ctx)
	require.NoError(t, err)
	assert.Equal(t, head, stored, "the head lives in the store")
	assert.Equal(t, audit.ActionOverride, entries[len(entries)-1].Action)
	assert.Contains(t, entries[len(entries)-1].Reason, "campaign excludes them")
	g.stop()
	again, err := g.start()
	require.NoError(t, err)
	assert.Equal(t, "approved", again.Status(1).Status)
	assert.True(t, again.Status(1).Override)
	v, err := again.ReleasedVersion(ctx, 0, false)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), v, "the latest approved, not the newer candidate")
}

// TestDecisionsMustBeSignedByTheCallingApprover: the coordinator takes only a decision signed,
// over the version's current content hash, by the approver who calls.
func TestDecisionsMustBeSignedByTheCallingApprover(t *testing.T) {
	ctx := context.Background()
	g := newGate(t)
	srv, err := g.start()
	require.NoError(t, err)
	risk := g.signer(pki.RoleApprover, "risk-officer")
	good := g.decide(srv, risk, audit.ActionApprove, 2, "validated on the Q3 holdout")
	cases := []struct {
		name string
		d    func() coordinator.Decision
		want string
	}{
		{"signed by an owner", func() coordinator.Decision {
			return g.decide(srv, g.signer(pki.RoleOwner, "risk-officer"), audit.ActionApprove, 2, good.Reason)
		}, "signed by owner/risk-officer"},
		{"signed by another approver", func() coordinator.Decision {
			return g.decide(srv, g.signer(pki.RoleApprover, "someone-else"), audit.ActionApprove, 2, good.Reason)
		}, "want approver/risk-officer"},
		{"the reason changed after signing", func() coordinator.Decision { d := good; d.Reason += "!"; return d }, "does not match"},
		{"a rejection's signature on an approval", func() coordinator.Decision {
			d := g.decide(srv, risk, audit.ActionReject, 2, good.Reason)
			return d
		}, "does not match"},
		{"signed for another content hash", func() coordinator.Decision {
			d := good
			d.ContentHash = "0" + d.ContentHash[1:]
			return d
		}, "signed for content hash 0"},
		{"no signature", func() coordinator.Decision { d := good; d.Signature = pki.Signed{}; return d }, "no certificate or signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := srv.Approve(ctx, approver, tc.d())
			require.ErrorIs(t, err, coordinator.ErrBadSignature)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, "candidate", srv.Status(2).Status)
		})
	}
	for field, d := range map[string]coordinator.Decision{
		"content_hash": {Version: 2, Reason: "ok", ContentHash: "not a hash", Signature: good.Signature},
		"certificate":  {Version: 2, Reason: "ok", ContentHash: good.ContentHash, Signature: pki.Signed{Certificate: make([]byte, 17<<10), Signature: []byte{1}}},
		"signature":    {Version: 2, Reason: "ok", ContentHash: good.ContentHash, Signature: pki.Signed{Certificate: []byte{1}, Signature: make([]byte, 300)}},
	} {
		_, err := srv.Approve(ctx, approver, d)
		require.ErrorIs(t, err, coordinator.ErrInvalid, field)
		require.ErrorIs(t, err, coordinator.ErrInvalidDecision, field)
		assert.Contains(t, err.Error(), field+": ")
	}
	r, err := srv.Approve(ctx, approver, good)
	require.NoError(t, err)
	assert.Equal(t, "approved", r.Status)
	_, err = srv.Approve(ctx, approver, good)
	require.ErrorIs(t, err, coordinator.ErrReviewed)
}

// TestAForgedApprovalIsRefusedAtStart is issue 12's "stop the coordinator, append a
// well-formed approved entry with a recomputed chain, restart": the forger holds the store
// and appends through the store's own audited path (so chain, head and checksums are all
// right), but cannot sign as an approver. The coordinator refuses to start, naming the entry.
func TestAForgedApprovalIsRefusedAtStart(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		forge func(g *gate, d coordinator.Decision) audit.Record
		want  string
	}{
		{"no signature", func(_ *gate, d coordinator.Decision) audit.Record {
			return audit.Record{Actor: "risk-officer", Role: "approver", Action: audit.ActionApprove, Subject: "version 2", Reason: "ok", Digest: d.ContentHash}
		}, "no signature"},
		{"signed by an owner's key", func(g *gate, d coordinator.Decision) audit.Record {
			signed, err := audit.SignDecision(g.signer(pki.RoleOwner, "model-owner"), audit.ActionApprove, "version 2", d.ContentHash, "ok")
			require.NoError(t, err)
			return audit.Record{Actor: "model-owner", Role: "approver", Action: audit.ActionApprove, Subject: "version 2", Reason: "ok", Digest: d.ContentHash, Signature: &signed}
		}, "signed by owner/model-owner"},
		{"an approver's signature of version 1 moved to version 2", func(g *gate, d coordinator.Decision) audit.Record {
			signed, err := audit.SignDecision(g.signer(pki.RoleApprover, "risk-officer"), audit.ActionOverride, "version 1", d.ContentHash, "ok")
			require.NoError(t, err)
			return audit.Record{Actor: "risk-officer", Role: "approver", Action: audit.ActionApprove, Subject: "version 2", Reason: "ok", Digest: d.ContentHash, Signature: &signed}
		}, "does not match"},
		{"an approver's signature over another version's content", func(g *gate, d coordinator.Decision) audit.Record {
			other := "0" + d.ContentHash[1:]
			signed, err := audit.SignDecision(g.signer(pki.RoleApprover, "risk-officer"), audit.ActionApprove, "version 2", other, "ok")
			require.NoError(t, err)
			return audit.Record{Actor: "risk-officer", Role: "approver", Action: audit.ActionApprove, Subject: "version 2", Reason: "ok", Digest: other, Signature: &signed}
		}, "the version changed after the decision"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(t)
			srv, err := g.start()
			require.NoError(t, err)
			d := g.decide(srv, g.signer(pki.RoleApprover, "unused"), audit.ActionApprove, 1, "x")
			v2, err := srv.ReviewSubject(ctx, 2)
			require.NoError(t, err)
			d.ContentHash = v2.ContentHash
			g.stop()

			s := coordinator.Records{Store: g.open()}
			entries, head, err := s.AuditLog(ctx)
			require.NoError(t, err)
			forged, err := audit.NewLog(nil, head, audit.Options{}).AppendWith(ctx, []audit.Record{tc.forge(g, d)},
				func(es []audit.Entry) error { return s.AppendAudit(ctx, es) })
			require.NoError(t, err)
			after, head, err := s.AuditLog(ctx)
			require.NoError(t, err)
			require.NoError(t, audit.Verify(after, &head), "the forged chain and head are well formed")
			require.Len(t, after, len(entries)+1)
			g.stop()

			_, err = g.start()
			require.ErrorIs(t, err, coordinator.ErrBadSignature)
			assert.Contains(t, err.Error(), "audit entry "+store.EntryKey(forged[0].Seq))
			assert.Contains(t, err.Error(), tc.want)

			g.stop()
			_, err = coordinator.VerifyAudit(ctx, g.open(), g.verifier())
			require.ErrorIs(t, err, coordinator.ErrBadSignature, "audit verify fails on it too")
		})
	}
}

// TestAStoreWhoseChainAndHeadDisagreeIsRefused: the newest entry deleted behind the store's
// back, with or without moving the store's head back, stops the coordinator from starting.
// The head file beside the store catches both first; a forger who removes it too is still
// caught, by the store's head or by the head version 3 recorded at its commit.
func TestAStoreWhoseChainAndHeadDisagreeIsRefused(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		moveHead bool
		want     string
	}{
		{"the newest entry deleted", false, "were deleted"},
		{"the newest entry deleted and the head moved back", true, "version 3 recorded as the log's head"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(t)
			s := coordinator.Records{Store: g.open()}
			_, head, err := s.AuditLog(ctx)
			require.NoError(t, err)
			// Version 3 commits with its log entry, as the driver writes it.
			es, err := audit.NewLog(nil, head, audit.Options{}).AppendWith(ctx, []audit.Record{{Actor: "c", Action: audit.ActionCommit, Subject: "version 3"}},
				func(es []audit.Entry) error {
					return s.CommitAudited(ctx, coordinator.ModelVersion{Version: 3, RunID: "r", Round: 3, Weights: []float64{1}, AuditHead: audit.HeadOf(es).String()},
						coordinator.RunState{ID: "r", LastRound: 3, LatestVersion: 3}, es)
				})
			require.NoError(t, err)
			g.stop()
			_, err = g.start()
			require.NoError(t, err, "untouched, it starts")
			g.stop()

			last := es[0]
			db, err := bbolt.Open(g.path, 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
				if err := tx.Bucket([]byte("audit")).Delete(binary.BigEndian.AppendUint64(nil, last.Seq)); err != nil {
					return err
				}
				if !tc.moveHead {
					return nil
				}
				prev := audit.Head{Seq: last.Seq - 1, Hash: last.PrevHash}
				return tx.Bucket([]byte("meta")).Put([]byte("audit_head"), store.SealRecord(store.RecordHead, "", []byte(prev.String())))
			}))
			require.NoError(t, db.Close())

			_, err = bolt.Open(g.path)
			require.ErrorIs(t, err, coordinator.ErrCorrupt, "the head file beside the store catches it")
			require.NoError(t, os.Remove(g.path+bolt.HeadFileSuffix))

			_, err = g.start()
			require.ErrorIs(t, err, audit.ErrTampered)
			assert.Contains(t, err.Error(), "entry "+store.EntryKey(last.Seq))
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestWithoutACANoDecisionIsTakenOrHonoured: a coordinator without mutual TLS cannot tell a
// forged decision from a real one.
func TestWithoutACANoDecisionIsTakenOrHonoured(t *testing.T) {
	ctx := context.Background()
	g := newGate(t)
	srv, err := g.start()
	require.NoError(t, err)
	d := g.decide(srv, g.signer(pki.RoleApprover, "risk-officer"), audit.ActionApprove, 2, "ok")
	_, err = srv.Approve(ctx, approver, d)
	require.NoError(t, err)
	g.stop()

	_, err = coordinator.NewServer(ctx, g.open(), nil, coordinator.ServerConfig{Logger: quiet()})
	require.ErrorIs(t, err, coordinator.ErrBadSignature)
	assert.Contains(t, err.Error(), "without mutual TLS")

	plain, err := coordinator.NewServer(ctx, mem.New(), nil, coordinator.ServerConfig{Logger: quiet()})
	require.NoError(t, err)
	_, err = plain.Approve(ctx, approver, d)
	require.ErrorIs(t, err, coordinator.ErrNoCA)
}

// TestAStoreThatKeepsItsLogTakesNoSeparateOne: ServerConfig.Audit is for stores without a log.
func TestAStoreThatKeepsItsLogTakesNoSeparateOne(t *testing.T) {
	g := newGate(t)
	_, err := coordinator.NewServer(context.Background(), g.open(), nil, coordinator.ServerConfig{Audit: &audit.MemStore{}, Logger: quiet()})
	require.ErrorIs(t, err, coordinator.ErrBadConfig)
}

// swappedStore serves another version's content under an approved version's number, as a
// store edited while the coordinator runs would.
type swappedStore struct {
	store.Store
	swap map[uint64]coordinator.ModelVersion
}

func (s swappedStore) Version(ctx context.Context, n uint64) (store.Version, error) {
	if v, ok := s.swap[n]; ok {
		return coordinator.EncodeVersion(v)
	}
	return s.Store.Version(ctx, n)
}

// TestAPullVerifiesTheApprovalAgain: an approval holds for the content it was signed for; a
// version whose content changed after it is not released.
func TestAPullVerifiesTheApprovalAgain(t *testing.T) {
	ctx := context.Background()
	g := newGate(t)
	store := swappedStore{Store: mem.New(), swap: map[uint64]coordinator.ModelVersion{}}
	require.NoError(t, coordinator.Records{Store: store}.Commit(ctx, coordinator.ModelVersion{Version: 1, RunID: "r", Round: 1, Weights: []float64{-2.69}},
		coordinator.RunState{ID: "r", LastRound: 1, LatestVersion: 1}))
	srv, err := coordinator.NewServer(ctx, store, nil, coordinator.ServerConfig{Reviewers: g.verifier(), Logger: quiet()})
	require.NoError(t, err)
	_, err = srv.Approve(ctx, approver, g.decide(srv, g.signer(pki.RoleApprover, "risk-officer"), audit.ActionApprove, 1, "ok"))
	require.NoError(t, err)
	v, err := srv.ReleasedVersion(ctx, 0, false)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), v)

	store.swap[1] = coordinator.ModelVersion{Version: 1, RunID: "r", Round: 1, Weights: []float64{-2.99}}
	_, err = srv.ReleasedVersion(ctx, 0, false)
	require.ErrorIs(t, err, coordinator.ErrNotApproved)
	assert.Contains(t, err.Error(), "the version changed after the decision")
	_, err = srv.ReleasedVersion(ctx, 1, false)
	require.ErrorIs(t, err, coordinator.ErrNotApproved)
}
