// Package governance is fedprop's human gate on releases: model owners and risk officers approve
// or reject each committed version with a decision signed by their own key, and only an approved
// version is released as such. The hash-chained audit log (release/audit) is the record: the
// gate's index of decisions is derived from it at every start, a decision enters it only when
// its signature verifies against the CA and signs the version's current content hash, and every
// read that releases a version verifies its approval again, so that a decision forged into the
// store, or a version changed after it was approved, is never honoured.
//
// The gate reads and writes the coordinator's store through Ledger, declared here, so that it
// links none of the coordinator's round machinery; the coordinator's server drives it.
package governance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/store"
)

// Sentinels of the human gate, checked with errors.Is.
var (
	// ErrNotApproved: a version no approver has approved was asked for as a released model.
	ErrNotApproved = errors.New("not approved")
	// ErrFlagged: the fairness policy flagged the version; approving it needs an override.
	ErrFlagged = errors.New("flagged by the fairness policy")
	// ErrReviewed: the version already has a decision.
	ErrReviewed = errors.New("already reviewed")
	// ErrNoCA: the gate has no CA certificate to check approvers' signatures against (the
	// coordinator serves without mutual TLS), so it takes no decision and honours none.
	ErrNoCA = errors.New("no CA certificate to check approvers' signatures against")
	// ErrBadSignature: a decision that is not signed by its approver over the version's
	// content hash (audit.ErrBadSignature; the error is an *audit.DecisionError).
	ErrBadSignature = audit.ErrBadSignature
	// ErrInvalidDecision: a decision request that is malformed (no reason, an oversized
	// signature, an override of a version that is not flagged); the message names the field.
	ErrInvalidDecision = errors.New("invalid decision")
)

// Reviewer is who approves or rejects: from the caller's certificate.
type Reviewer struct {
	Name, Role string
}

// Decision is an approver's signed decision, as their `fedprop model approve` or `reject`
// sends it.
type Decision struct {
	Version uint64
	Reason  string
	// Override approves a version the fairness policy flagged; Reason says why.
	Override bool
	// ContentHash is the version's content hash (ReviewSubject) the approver signed.
	ContentHash string
	// Signature is the approver's signature over audit.DecisionStatement, made with the key
	// of the certificate they call with (audit.SignDecision).
	Signature pki.Signed
	// Delegation, for a decision made in the oversight console, is the approver's delegation
	// of signing to the console session's key, signed with their certificate's key; Signature
	// is then the session key's signature, and Signature.Certificate the approver's.
	Delegation *pki.Delegation
}

// ReviewSubject is what an approver signs a decision about: the version, its content hash and
// where it stands.
type ReviewSubject struct {
	Version     uint64
	ContentHash string
	Status      string
	// Flagged says the fairness policy flagged the version: approving it needs an override.
	Flagged bool
}

// Review is the human decision on a version, as the audit log records it.
type Review struct {
	Status   string
	Actor    string
	Role     string
	Reason   string
	Override bool
	Entry    audit.Entry
}

// VersionHead is a stored version and the audit head recorded when it was committed ("" for a
// version committed before versions recorded one).
type VersionHead struct {
	Version   uint64
	AuditHead string
}

// Ledger is what the gate reads and writes of the coordinator's store. Lookups of a version
// the store does not hold return an error wrapping store.ErrNotFound.
type Ledger interface {
	// Audited reports whether the store keeps the audit log itself, in the transactions of
	// the state it records (store.AuditedStore).
	Audited() bool
	// AuditLog returns every entry, oldest first, and the head the store records.
	AuditLog(ctx context.Context) ([]audit.Entry, audit.Head, error)
	// AppendAudit appends entries alone (a decision records no other state).
	AppendAudit(ctx context.Context, entries []audit.Entry) error
	// ContentHash is a version's content hash, which approvers sign.
	ContentHash(ctx context.Context, version uint64) (string, error)
	// Heads lists every stored version, oldest first, with its recorded audit head.
	Heads(ctx context.Context) ([]VersionHead, error)
	// Violations is what the fairness policy flagged in a version (nil: not flagged).
	Violations(ctx context.Context, version uint64) ([]string, error)
}

// Observer hears of every entry the gate appends, for metrics. It must not block.
type Observer interface {
	Audited(audit.Action)
}

// Config sets up a Gate.
type Config struct {
	// Verifier checks approvers' certificates against the CA; nil means no decision is taken
	// or honoured (ErrNoCA).
	Verifier *pki.Verifier
	// Now stamps entries.
	Now func() time.Time
	// Sink keeps the log of a ledger that keeps none (Audited false); nil keeps it in memory.
	// It must be nil for a ledger that keeps its own.
	Sink audit.Store
	// Observer hears of appended entries; nil hears nothing.
	Observer Observer
	// Log receives one line per decision taken; nil logs nothing.
	Log func(msg string, args ...any)
}

// ErrSinkWithAuditedLedger: Config.Sink was set for a ledger that keeps its own audit log.
var ErrSinkWithAuditedLedger = errors.New("an audit sink is for a store that keeps no audit log; this store keeps its own")

// Gate keeps every version's release state, derived from the hash-chained audit log: the log is
// the record, the map only its index, and only decisions whose signatures verify against the
// CA enter it. It is safe for concurrent use.
type Gate struct {
	ledger Ledger
	cfg    Config

	mu  sync.Mutex
	log *audit.Log
	// audited says the ledger keeps the log itself; otherwise sink is the log's store,
	// written after the state it records.
	audited bool
	sink    audit.Store
	reviews map[uint64]Review
	// pending holds records that go into the log with the next state the driver writes (a
	// run's start, with the run's first record).
	pending []audit.Record
}

// auditedLog is the log of an audited ledger as an audit.Store, for the decisions, which record
// no other state.
type auditedLog struct{ l Ledger }

func (a auditedLog) Append(ctx context.Context, e audit.Entry) error {
	return a.l.AppendAudit(ctx, []audit.Entry{e})
}

func (a auditedLog) Entries(ctx context.Context) ([]audit.Entry, error) {
	es, _, err := a.l.AuditLog(ctx)
	return es, err
}

type nopObserver struct{}

func (nopObserver) Audited(audit.Action) {}

// Open reads and checks the audit log (as CheckAudit does: a coordinator does not start on a
// log that was rewritten, or that holds a decision that does not verify) and indexes its
// decisions.
func Open(ctx context.Context, l Ledger, cfg Config) (*Gate, error) {
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	g := &Gate{ledger: l, cfg: cfg, reviews: map[uint64]Review{}}
	opts := audit.Options{Now: cfg.Now}
	var entries []audit.Entry
	if l.Audited() {
		if cfg.Sink != nil {
			return nil, ErrSinkWithAuditedLedger
		}
		var head audit.Head
		var err error
		if entries, head, _, err = CheckAudit(ctx, l, cfg.Verifier, false); err != nil {
			return nil, g.refuse(err)
		}
		g.audited, g.log = true, audit.NewLog(auditedLog{l}, head, opts)
	} else {
		g.sink = cfg.Sink
		if g.sink == nil {
			g.sink = &audit.MemStore{}
		}
		var err error
		if g.log, err = audit.Open(ctx, g.sink, opts); err != nil {
			return nil, err
		}
		if entries, err = g.sink.Entries(ctx); err != nil {
			return nil, err
		}
		hash := func(version uint64) (string, error) { return l.ContentHash(ctx, version) }
		for _, e := range entries {
			if err := verifyDecision(cfg.Verifier, e, hash); err != nil {
				return nil, g.refuse(err)
			}
		}
	}
	for _, e := range entries {
		if !audit.IsDecision(e.Action) {
			continue
		}
		n, _ := audit.ParseVersionSubject(e.Subject) // verified above
		if prev, ok := g.reviews[n]; ok {
			return nil, g.refuse(&audit.DecisionError{Seq: e.Seq, Action: e.Action, Subject: e.Subject,
				Reason: fmt.Sprintf("the version was already decided by entry %d", prev.Entry.Seq)})
		}
		g.reviews[n] = reviewOf(e)
	}
	return g, nil
}

// refuse explains why a coordinator does not start on its audit log.
func (g *Gate) refuse(err error) error {
	if g.cfg.Verifier == nil && errors.Is(err, audit.ErrBadSignature) {
		return fmt.Errorf("audit log: %w (a coordinator serving without mutual TLS has no CA to check approvers' signatures: serve with tls.ca)", err)
	}
	return fmt.Errorf("audit log: %w", err)
}

func reviewOf(e audit.Entry) Review {
	status := modelcard.StatusApproved
	if e.Action == audit.ActionReject {
		status = modelcard.StatusRejected
	}
	return Review{Status: status, Actor: e.Actor, Role: e.Role, Reason: e.Reason, Override: e.Action == audit.ActionOverride, Entry: e}
}

// verifyDecision checks a decision entry (and passes any other): the approver's signature
// against the CA, and the content hash it signed against the version's now.
func verifyDecision(v *pki.Verifier, e audit.Entry, contentHash func(uint64) (string, error)) error {
	if !audit.IsDecision(e.Action) {
		return nil
	}
	if _, err := audit.VerifyDecision(v, e); err != nil {
		return err
	}
	bad := func(reason string) error {
		return &audit.DecisionError{Seq: e.Seq, Action: e.Action, Subject: e.Subject, Reason: reason}
	}
	n, ok := audit.ParseVersionSubject(e.Subject)
	if !ok {
		return bad("its subject names no version")
	}
	h, err := contentHash(n)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return bad(fmt.Sprintf("the store holds no version %d", n))
	case err != nil:
		return err
	case h != e.Digest:
		return bad(fmt.Sprintf("it was signed for content hash %.12s..., but version %d's is %.12s...: the version changed after the decision", e.Digest, n, h))
	}
	return nil
}

// Audited reports whether the ledger keeps the log itself.
func (g *Gate) Audited() bool { return g.audited }

// Head is the audit log's newest sequence number and hash.
func (g *Gate) Head() audit.Head { return g.log.Head() }

// Status is a version's release state: candidate, approved or rejected.
func (g *Gate) Status(version uint64) Review {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.reviews[version]; ok {
		return r
	}
	return Review{Status: modelcard.StatusCandidate}
}

// Pend queues r to go into the log with the next state the driver writes.
func (g *Gate) Pend(r audit.Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending = append(g.pending, r)
}

// TakePending returns and forgets the queued records.
func (g *Gate) TakePending() []audit.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.pending
	g.pending = nil
	return p
}

// Write appends recs to the log together with the state write stores: in write's own
// transaction when the ledger keeps the log (write receives the entries to store, and must
// store them with the state), else to the log's own sink once write has succeeded.
func (g *Gate) Write(ctx context.Context, recs []audit.Record, write func([]audit.Entry) error) error {
	es, err := g.log.AppendWith(ctx, recs, func(es []audit.Entry) error {
		if err := write(es); err != nil {
			return err
		}
		if g.audited {
			return nil
		}
		for _, e := range es {
			if err := g.sink.Append(ctx, e); err != nil {
				return fmt.Errorf("append audit entry %d: %w", e.Seq, err)
			}
		}
		return nil
	})
	for _, e := range es {
		g.cfg.Observer.Audited(e.Action)
	}
	return err
}

// Subject tells an approver what to sign: the version's content hash, and where it stands.
func (g *Gate) Subject(ctx context.Context, version uint64) (ReviewSubject, error) {
	h, err := g.ledger.ContentHash(ctx, version)
	if err != nil {
		return ReviewSubject{}, err
	}
	violations, err := g.ledger.Violations(ctx, version)
	if err != nil {
		return ReviewSubject{}, err
	}
	return ReviewSubject{Version: version, ContentHash: h, Status: g.Status(version).Status, Flagged: violations != nil}, nil
}

// Approve releases a candidate version. A version the fairness policy flagged needs an
// override and a reason that says why. The decision must be signed by who, an approver, over
// the version's current content hash; it goes into the audit log with its signature.
func (g *Gate) Approve(ctx context.Context, who Reviewer, d Decision) (Review, error) {
	return g.decide(ctx, who, d, true)
}

// Reject refuses a candidate version for release; the decision is signed as Approve's.
func (g *Gate) Reject(ctx context.Context, who Reviewer, d Decision) (Review, error) {
	d.Override = false
	return g.decide(ctx, who, d, false)
}

// Bounds on a decision's signature as it arrives: a certificate is a few hundred bytes, an
// ASN.1 ECDSA P-256 signature at most 72.
const (
	maxDecisionCert = 16 << 10
	maxDecisionSig  = 256
)

// clip shortens a caller's string before an error quotes it.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func (g *Gate) decide(ctx context.Context, who Reviewer, d Decision, approve bool) (Review, error) {
	version := d.Version
	switch {
	case strings.TrimSpace(d.Reason) == "":
		return Review{}, fmt.Errorf("version %d: reason: %w: a decision needs a reason", version, ErrInvalidDecision)
	case len(d.Reason) > audit.MaxReasonBytes:
		return Review{}, fmt.Errorf("version %d: reason: %w: %d bytes, at most %d", version, ErrInvalidDecision, len(d.Reason), audit.MaxReasonBytes)
	case len(d.Signature.Certificate) > maxDecisionCert:
		return Review{}, fmt.Errorf("version %d: certificate: %w: %d bytes, at most %d", version, ErrInvalidDecision, len(d.Signature.Certificate), maxDecisionCert)
	case len(d.Signature.Signature) > maxDecisionSig:
		return Review{}, fmt.Errorf("version %d: signature: %w: %d bytes, at most %d", version, ErrInvalidDecision, len(d.Signature.Signature), maxDecisionSig)
	case d.Delegation != nil && d.Delegation.CheckSize() != nil:
		return Review{}, fmt.Errorf("version %d: delegation: %w: %w", version, ErrInvalidDecision, d.Delegation.CheckSize())
	case !audit.IsHash(d.ContentHash):
		return Review{}, fmt.Errorf("version %d: content_hash: %w: %q is not 64 lower-case hex digits", version, ErrInvalidDecision, clip(d.ContentHash))
	}
	if g.cfg.Verifier == nil {
		return Review{}, fmt.Errorf("version %d: %w: decisions need mutual TLS (tls.ca)", version, ErrNoCA)
	}
	violations, err := g.ledger.Violations(ctx, version)
	if err != nil {
		return Review{}, err
	}
	hash, err := g.ledger.ContentHash(ctx, version)
	if err != nil {
		return Review{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if prev, ok := g.reviews[version]; ok {
		return prev, fmt.Errorf("version %d is already %s (by %s): %w", version, prev.Status, prev.Actor, ErrReviewed)
	}
	flagged := violations != nil
	action := audit.ActionReject
	if approve {
		action = audit.ActionApprove
		if flagged && !d.Override {
			return Review{}, fmt.Errorf("version %d: %w (%s): approve with an override and a reason that says why", version, ErrFlagged, strings.Join(violations, "; "))
		}
		if d.Override {
			if !flagged {
				return Review{}, fmt.Errorf("version %d: override: %w: the version is not flagged; approve it without an override", version, ErrInvalidDecision)
			}
			action = audit.ActionOverride
		}
	}
	subject := audit.VersionSubject(version)
	if d.ContentHash != hash {
		return Review{}, &audit.DecisionError{Action: action, Subject: subject,
			Reason: fmt.Sprintf("it was signed for content hash %.12s..., but the version's is %.12s...: fetch the version's hash again and sign that", d.ContentHash, hash)}
	}
	sig := d.Signature
	rec := audit.Record{Time: g.cfg.Now(), Actor: who.Name, Role: who.Role, Action: action, Subject: subject, Reason: d.Reason,
		Digest: hash, Signature: &sig, Delegation: d.Delegation}
	// The entry as it will be logged, checked before it is: signed by who, an approver.
	if _, err := audit.VerifyDecision(g.cfg.Verifier, audit.Entry{Time: rec.Time.UTC().Round(0), Actor: rec.Actor, Role: rec.Role,
		Action: rec.Action, Subject: rec.Subject, Reason: rec.Reason, Digest: rec.Digest, Signature: rec.Signature,
		Delegation: rec.Delegation}); err != nil {
		return Review{}, err
	}
	e, err := g.log.Append(ctx, rec)
	if err != nil {
		return Review{}, err
	}
	g.cfg.Observer.Audited(e.Action)
	r := reviewOf(e)
	g.reviews[version] = r
	g.cfg.Log("model version reviewed", "version", version, "status", r.Status, "actor", who.Name, "override", r.Override,
		"audit_seq", e.Seq, "audit_hash", e.Hash)
	return r, nil
}

// CheckRelease verifies, on every read that releases version as approved, that its approval
// still holds: the approver's signature against the CA, and the content hash it signed
// against the version's as stored now.
func (g *Gate) CheckRelease(ctx context.Context, version uint64) error {
	r := g.Status(version)
	if r.Status != modelcard.StatusApproved {
		return fmt.Errorf("version %d is %s: %w (pull it as a candidate explicitly to review it)", version, r.Status, ErrNotApproved)
	}
	err := verifyDecision(g.cfg.Verifier, r.Entry, func(n uint64) (string, error) { return g.ledger.ContentHash(ctx, n) })
	if err != nil {
		return fmt.Errorf("version %d: its approval does not hold: %w: %w", version, ErrNotApproved, err)
	}
	return nil
}

// Released resolves what a model owner may pull: version 0 is the latest approved (the latest
// of all with candidate); an explicit version must be approved unless candidate. The approval
// of what it releases is verified again, signature and content hash.
func (g *Gate) Released(ctx context.Context, version uint64, candidate bool) (uint64, error) {
	if version != 0 {
		if _, err := g.ledger.ContentHash(ctx, version); err != nil {
			return 0, err
		}
		if !candidate {
			if err := g.CheckRelease(ctx, version); err != nil {
				return 0, err
			}
		}
		return version, nil
	}
	versions, err := g.ledger.Heads(ctx)
	if err != nil {
		return 0, err
	}
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i].Version
		if candidate {
			return v, nil
		}
		if g.Status(v).Status == modelcard.StatusApproved {
			if err := g.CheckRelease(ctx, v); err != nil {
				return 0, err
			}
			return v, nil
		}
	}
	if candidate {
		return 0, fmt.Errorf("no version committed yet: %w", store.ErrNotFound)
	}
	return 0, fmt.Errorf("no approved version yet: %w (pull a candidate explicitly to review it)", store.ErrNotFound)
}
