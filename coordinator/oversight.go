package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/store"
)

// Sentinels of the human gate.
var (
	// ErrNotApproved: a version no approver has approved was asked for as a released model.
	ErrNotApproved = errors.New("not approved")
	// ErrFlagged: the fairness policy flagged the version; approving it needs an override.
	ErrFlagged = errors.New("flagged by the fairness policy")
	// ErrReviewed: the version already has a decision.
	ErrReviewed = errors.New("already reviewed")
	// ErrNoCA: the coordinator has no CA certificate to check approvers' signatures against
	// (it serves without mutual TLS), so it takes no decision and honours none.
	ErrNoCA = errors.New("no CA certificate to check approvers' signatures against")
	// ErrBadSignature: a decision that is not signed by its approver over the version's
	// content hash (audit.ErrBadSignature; the error is an *audit.DecisionError).
	ErrBadSignature = audit.ErrBadSignature
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

// oversight keeps every version's release state, derived from the hash-chained audit log:
// the log is the record, the map only its index, and only decisions whose signatures verify
// against the CA enter it.
type oversight struct {
	mu  sync.Mutex
	log *audit.Log
	// audited says the store keeps the log itself (store.AuditedStore); otherwise sink is the
	// log's store, written after the state it records.
	audited  bool
	sink     audit.Store
	verifier *pki.Verifier
	reviews  map[uint64]Review
	// pending holds records that go into the log with the next state the driver writes (a
	// run's start, with the run's first record).
	pending []audit.Record
	// observer hears of every entry appended.
	observer Observer
}

// auditedLog is the log of a store.AuditedStore as an audit.Store, for the decisions, which
// record no other state.
type auditedLog struct{ s Records }

func (l auditedLog) Append(ctx context.Context, e audit.Entry) error {
	return l.s.AppendAudit(ctx, []audit.Entry{e})
}

func (l auditedLog) Entries(ctx context.Context) ([]audit.Entry, error) {
	es, _, err := l.s.AuditLog(ctx)
	return es, err
}

func newOversight(ctx context.Context, st Records, cfg ServerConfig) (*oversight, error) {
	o := &oversight{verifier: cfg.Reviewers, reviews: map[uint64]Review{}, observer: cfg.Observer}
	opts := audit.Options{Now: cfg.Now}
	var entries []audit.Entry
	if st.Audited() {
		if cfg.Audit != nil {
			return nil, fmt.Errorf("%w: ServerConfig.Audit is for a store that keeps no audit log; this store keeps its own", ErrBadConfig)
		}
		var head audit.Head
		var err error
		if entries, head, _, err = checkAudit(ctx, st, cfg.Reviewers, false); err != nil {
			return nil, o.refuse(err)
		}
		o.audited, o.log = true, audit.NewLog(auditedLog{st}, head, opts)
	} else {
		o.sink = cfg.Audit
		if o.sink == nil {
			o.sink = &audit.MemStore{}
		}
		var err error
		if o.log, err = audit.Open(ctx, o.sink, opts); err != nil {
			return nil, err
		}
		if entries, err = o.sink.Entries(ctx); err != nil {
			return nil, err
		}
		hash := func(version uint64) (string, error) { return st.ContentHash(ctx, version) }
		for _, e := range entries {
			if err := verifyDecision(o.verifier, e, hash); err != nil {
				return nil, o.refuse(err)
			}
		}
	}
	for _, e := range entries {
		if !audit.IsDecision(e.Action) {
			continue
		}
		n, _ := audit.ParseVersionSubject(e.Subject) // verified above
		if prev, ok := o.reviews[n]; ok {
			return nil, o.refuse(&audit.DecisionError{Seq: e.Seq, Action: e.Action, Subject: e.Subject,
				Reason: fmt.Sprintf("the version was already decided by entry %d", prev.Entry.Seq)})
		}
		o.reviews[n] = reviewOf(e)
	}
	return o, nil
}

// refuse explains why a coordinator does not start on its audit log.
func (o *oversight) refuse(err error) error {
	if o.verifier == nil && errors.Is(err, audit.ErrBadSignature) {
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
	case errors.Is(err, ErrNotFound):
		return bad(fmt.Sprintf("the store holds no version %d", n))
	case err != nil:
		return err
	case h != e.Digest:
		return bad(fmt.Sprintf("it was signed for content hash %.12s..., but version %d's is %.12s...: the version changed after the decision", e.Digest, n, h))
	}
	return nil
}

// AuditSummary is what VerifyAudit checked.
type AuditSummary struct {
	// Entries is the length of the log, Head its head as the store records it.
	Entries int
	Head    audit.Head
	// Decisions counts the signed decisions verified, Versions the versions whose recorded
	// audit head was checked against the log.
	Decisions, Versions int
}

// VerifyAudit checks the audit log a store.AuditedStore keeps, as the coordinator does at
// every start: every entry against its checksum and its hash, and the chain against the head
// the store records; each version's recorded audit head against the log; and every decision's
// signature against the CA (v) and the content hash it signed against the version's. It
// returns the first problem: a *audit.ChainError, *audit.DecisionError or
// *store.CorruptError, each naming its entry or record.
func VerifyAudit(ctx context.Context, s store.AuditedStore, v *pki.Verifier) (AuditSummary, error) {
	_, _, sum, err := checkAudit(ctx, Records{Store: s}, v, false)
	return sum, err
}

// CheckStore checks a whole store and names every damaged record: the backend's own check of
// every record (store.Checker), then, when every record reads, that each decodes as the
// coordinator's, then the audit log as VerifyAudit does, with each bad decision and each
// version whose recorded head the log contradicts listed. With v nil, decisions' signatures are
// not checked (SignaturesChecked is false).
func CheckStore(ctx context.Context, s store.AuditedStore, v *pki.Verifier) (StoreCheck, error) {
	var out StoreCheck
	if c, ok := s.(store.Checker); ok {
		rep, err := c.Check(ctx)
		if err != nil {
			return out, err
		}
		out.CheckReport = rep
		if len(rep.Damaged) > 0 {
			return out, nil // the log's checks would only stop at the first damaged record
		}
	}
	if damaged := undecodable(ctx, s); len(damaged) > 0 {
		out.Damaged = damaged
		return out, nil
	}
	_, _, sum, err := checkAudit(ctx, Records{Store: s}, v, true)
	out.Decisions, out.SignaturesChecked = sum.Decisions, v != nil
	var all auditProblems
	switch {
	case errors.As(err, &all):
		for _, p := range all {
			out.Damaged = append(out.Damaged, store.Damage{Record: problemRecord(p), Err: p})
		}
	case err != nil:
		out.Damaged = append(out.Damaged, store.Damage{Record: problemRecord(err), Err: err})
	}
	return out, nil
}

// undecodable names every record of s that reads intact but does not decode as the
// coordinator's (a store checks only the fields it indexes), or whose audit entry's hash does
// not match its content; and a listing that does not read at all.
func undecodable(ctx context.Context, s store.AuditedStore) []store.Damage {
	var out []store.Damage
	add := func(err error) {
		if err != nil {
			out = append(out, store.Damage{Record: problemRecord(err), Err: err})
		}
	}
	runs, err := s.Runs(ctx)
	add(err)
	for _, r := range runs {
		_, err := DecodeRun(r)
		add(err)
	}
	versions, err := s.Versions(ctx)
	add(err)
	for _, v := range versions {
		_, err := DecodeVersion(v)
		add(err)
	}
	entries, _, err := s.AuditLog(ctx)
	add(err)
	for _, e := range entries {
		_, err := DecodeEntry(e)
		add(err)
	}
	return out
}

// StoreCheck is what CheckStore found.
type StoreCheck struct {
	store.CheckReport
	// Decisions counts the decisions whose signatures verified; SignaturesChecked says
	// whether they were checked at all (CheckStore was given a CA).
	Decisions         int
	SignaturesChecked bool
}

// auditProblems are every problem checkAudit found when asked for all.
type auditProblems []error

func (p auditProblems) Error() string {
	msgs := make([]string, len(p))
	for i, e := range p {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (p auditProblems) Unwrap() []error { return p }

// problemRecord names the record a problem is about.
func problemRecord(err error) string {
	var (
		chain    *audit.ChainError
		decision *audit.DecisionError
		corrupt  *store.CorruptError
	)
	switch {
	case errors.As(err, &decision) && decision.Seq > 0:
		return store.RecordName(store.RecordAudit, store.EntryKey(decision.Seq))
	case errors.As(err, &chain):
		return store.RecordName(store.RecordAudit, store.EntryKey(chain.Seq))
	case errors.As(err, &corrupt):
		return corrupt.Record
	}
	return "audit log"
}

// checkAudit reads and checks the log of s (see VerifyAudit). With all set it goes on past
// problems it can go on past (bad decisions, versions whose recorded head the log
// contradicts) and returns them together as auditProblems; otherwise it returns the first.
func checkAudit(ctx context.Context, s Records, v *pki.Verifier, all bool) ([]audit.Entry, audit.Head, AuditSummary, error) {
	entries, head, err := s.AuditLog(ctx)
	if err != nil {
		return nil, head, AuditSummary{}, err
	}
	sum := AuditSummary{Entries: len(entries), Head: head}
	if err := audit.Verify(entries, &head); err != nil {
		return nil, head, sum, fmt.Errorf("the log and the head the store records (%s) disagree: %w", head, err)
	}
	var problems auditProblems
	report := func(err error) error {
		if !all {
			return err
		}
		problems = append(problems, err)
		return nil
	}
	versions, err := s.Versions(ctx)
	if err != nil {
		return nil, head, sum, err
	}
	for _, mv := range versions {
		if mv.AuditHead == "" {
			continue
		}
		sum.Versions++
		h, err := audit.ParseHead(mv.AuditHead)
		if err == nil && (h.Seq == 0 || h.Seq > uint64(len(entries)) || entries[h.Seq-1].Hash != h.Hash) {
			err = &audit.ChainError{Seq: h.Seq, Reason: fmt.Sprintf("is not the entry version %d recorded as the log's head when it was committed (%s): the log was rewritten after that commit", mv.Version, h)}
		}
		if err != nil {
			if err := report(fmt.Errorf("version %d: %w", mv.Version, err)); err != nil {
				return nil, head, sum, err
			}
		}
	}
	if v != nil || !all {
		hashes := map[uint64]string{}
		hash := func(n uint64) (string, error) {
			if h, ok := hashes[n]; ok {
				return h, nil
			}
			h, err := s.ContentHash(ctx, n)
			hashes[n] = h
			return h, err
		}
		for _, e := range entries {
			if !audit.IsDecision(e.Action) {
				continue
			}
			if err := verifyDecision(v, e, hash); err != nil {
				if err := report(err); err != nil {
					return nil, head, sum, err
				}
				continue
			}
			sum.Decisions++
		}
	}
	if len(problems) > 0 {
		return nil, head, sum, problems
	}
	return entries, head, sum, nil
}

func (o *oversight) status(version uint64) Review {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r, ok := o.reviews[version]; ok {
		return r
	}
	return Review{Status: modelcard.StatusCandidate}
}

// pend queues r to go into the log with the next state the driver writes.
func (o *oversight) pend(r audit.Record) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = append(o.pending, r)
}

func (o *oversight) takePending() []audit.Record {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.pending
	o.pending = nil
	return p
}

// write appends recs to the log together with the state write stores: in write's own
// transaction when the store keeps the log (write receives the entries to store), else to the
// log's own store once write has succeeded.
func (o *oversight) write(ctx context.Context, recs []audit.Record, write func([]audit.Entry) error) error {
	es, err := o.log.AppendWith(ctx, recs, func(es []audit.Entry) error {
		if err := write(es); err != nil {
			return err
		}
		if o.audited {
			return nil
		}
		for _, e := range es {
			if err := o.sink.Append(ctx, e); err != nil {
				return fmt.Errorf("append audit entry %d: %w", e.Seq, err)
			}
		}
		return nil
	})
	for _, e := range es {
		o.observer.Audited(e.Action)
	}
	return err
}

// persist writes what the core asks (a commit, or a run record) with the audit entries it
// implies (the pending run start, the commit, the run's stop): one transaction when the store
// keeps the log.
func (s *Server) persist(ctx context.Context, a Actions) error {
	o := s.oversight
	recs := o.takePending()
	if a.Commit != nil {
		recs = append(recs, audit.Record{Actor: s.cfg.ID, Role: "coordinator", Action: audit.ActionCommit,
			Subject: audit.VersionSubject(a.Commit.Version), Reason: fmt.Sprintf("run %s round %d, candidate", a.Commit.RunID, a.Commit.Round)})
	}
	if a.Run != nil && a.Run.Status.Finished() {
		recs = append(recs, audit.Record{Actor: s.cfg.ID, Role: "coordinator", Action: audit.ActionRunStop, Subject: a.Run.ID,
			Reason: string(a.Run.Status) + ": " + a.Run.Message})
	}
	switch {
	case a.Commit != nil:
		v := *a.Commit
		v.Created = s.cfg.Now().UTC()
		s.crashPoint("commit")
		err := o.write(ctx, recs, func(es []audit.Entry) error {
			v.AuditHead = audit.HeadOf(es).String()
			if o.audited {
				return s.store.CommitAudited(ctx, v, *a.Run, es)
			}
			return s.store.Commit(ctx, v, *a.Run)
		})
		if err != nil {
			return fmt.Errorf("commit version %d: %w", v.Version, err)
		}
		s.crashPoint("committed")
	case a.Run != nil:
		err := o.write(ctx, recs, func(es []audit.Entry) error {
			if o.audited {
				return s.store.SaveRunAudited(ctx, *a.Run, es)
			}
			return s.store.SaveRun(ctx, *a.Run)
		})
		if err != nil {
			return fmt.Errorf("save run %s: %w", a.Run.ID, err)
		}
	case len(recs) > 0:
		err := o.write(ctx, recs, func(es []audit.Entry) error {
			if o.audited {
				return s.store.AppendAudit(ctx, es)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
	}
	return nil
}

// Status is a version's release state: candidate, approved or rejected.
func (s *Server) Status(version uint64) Review { return s.oversight.status(version) }

// AuditHead is the audit log's newest sequence number and hash. With a store.AuditedStore the
// store records it with every entry; `fedprop audit verify` checks the log against it.
func (s *Server) AuditHead() audit.Head { return s.oversight.log.Head() }

// ReviewSubject tells an approver what to sign: the version's content hash, and where it
// stands.
func (s *Server) ReviewSubject(ctx context.Context, version uint64) (ReviewSubject, error) {
	v, err := s.store.Version(ctx, version)
	if err != nil {
		return ReviewSubject{}, err
	}
	h, err := s.store.ContentHash(ctx, version)
	if err != nil {
		return ReviewSubject{}, err
	}
	return ReviewSubject{Version: version, ContentHash: h, Status: s.Status(version).Status,
		Flagged: v.FairnessVerdict != nil && v.FairnessVerdict.Flagged}, nil
}

// Approve releases a candidate version. A version the fairness policy flagged needs an
// override and a reason that says why. The decision must be signed by who, an approver, over
// the version's current content hash; it goes into the audit log with its signature.
func (s *Server) Approve(ctx context.Context, who Reviewer, d Decision) (Review, error) {
	return s.review(ctx, who, d, true)
}

// Reject refuses a candidate version for release; the decision is signed as Approve's.
func (s *Server) Reject(ctx context.Context, who Reviewer, d Decision) (Review, error) {
	d.Override = false
	return s.review(ctx, who, d, false)
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

func (s *Server) review(ctx context.Context, who Reviewer, d Decision, approve bool) (Review, error) {
	version := d.Version
	switch {
	case strings.TrimSpace(d.Reason) == "":
		return Review{}, fmt.Errorf("version %d: reason: %w: a decision needs a reason", version, ErrInvalid)
	case len(d.Reason) > audit.MaxReasonBytes:
		return Review{}, fmt.Errorf("version %d: reason: %w: %d bytes, at most %d", version, ErrInvalid, len(d.Reason), audit.MaxReasonBytes)
	case len(d.Signature.Certificate) > maxDecisionCert:
		return Review{}, fmt.Errorf("version %d: certificate: %w: %d bytes, at most %d", version, ErrInvalid, len(d.Signature.Certificate), maxDecisionCert)
	case len(d.Signature.Signature) > maxDecisionSig:
		return Review{}, fmt.Errorf("version %d: signature: %w: %d bytes, at most %d", version, ErrInvalid, len(d.Signature.Signature), maxDecisionSig)
	case !audit.IsHash(d.ContentHash):
		return Review{}, fmt.Errorf("version %d: content_hash: %w: %q is not 64 lower-case hex digits", version, ErrInvalid, clip(d.ContentHash))
	}
	o := s.oversight
	if o.verifier == nil {
		return Review{}, fmt.Errorf("version %d: %w: decisions need mutual TLS (tls.ca)", version, ErrNoCA)
	}
	v, err := s.store.Version(ctx, version)
	if err != nil {
		return Review{}, err
	}
	hash, err := s.store.ContentHash(ctx, version)
	if err != nil {
		return Review{}, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev, ok := o.reviews[version]; ok {
		return prev, fmt.Errorf("version %d is already %s (by %s): %w", version, prev.Status, prev.Actor, ErrReviewed)
	}
	flagged := v.FairnessVerdict != nil && v.FairnessVerdict.Flagged
	action := audit.ActionReject
	if approve {
		action = audit.ActionApprove
		if flagged && !d.Override {
			var gaps []string
			for _, vi := range v.FairnessVerdict.Violations {
				gaps = append(gaps, vi.String())
			}
			return Review{}, fmt.Errorf("version %d: %w (%s): approve with an override and a reason that says why", version, ErrFlagged, strings.Join(gaps, "; "))
		}
		if d.Override {
			if !flagged {
				return Review{}, fmt.Errorf("version %d: override: %w: the version is not flagged; approve it without an override", version, ErrInvalid)
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
	rec := audit.Record{Time: s.cfg.Now(), Actor: who.Name, Role: who.Role, Action: action, Subject: subject, Reason: d.Reason,
		Digest: hash, Signature: &sig}
	// The entry as it will be logged, checked before it is: signed by who, an approver.
	if _, err := audit.VerifyDecision(o.verifier, audit.Entry{Time: rec.Time.UTC().Round(0), Actor: rec.Actor, Role: rec.Role,
		Action: rec.Action, Subject: rec.Subject, Reason: rec.Reason, Digest: rec.Digest, Signature: rec.Signature}); err != nil {
		return Review{}, err
	}
	e, err := o.log.Append(ctx, rec)
	if err != nil {
		return Review{}, err
	}
	o.observer.Audited(e.Action)
	r := reviewOf(e)
	o.reviews[version] = r
	s.log.Info("model version reviewed", "version", version, "status", r.Status, "actor", who.Name, "override", r.Override,
		"audit_seq", e.Seq, "audit_hash", e.Hash)
	return r, nil
}

// checkRelease verifies, on every read that releases version as approved, that its approval
// still holds: the approver's signature against the CA, and the content hash it signed
// against the version's as stored now.
func (s *Server) checkRelease(ctx context.Context, version uint64) error {
	r := s.Status(version)
	if r.Status != modelcard.StatusApproved {
		return fmt.Errorf("version %d is %s: %w (pull it as a candidate explicitly to review it)", version, r.Status, ErrNotApproved)
	}
	err := verifyDecision(s.oversight.verifier, r.Entry, func(n uint64) (string, error) { return s.store.ContentHash(ctx, n) })
	if err != nil {
		return fmt.Errorf("version %d: its approval does not hold: %w: %w", version, ErrNotApproved, err)
	}
	return nil
}

// ReleasedVersion resolves what a model owner may pull: version 0 is the latest approved (the
// latest of all with candidate); an explicit version must be approved unless candidate. The
// approval of what it releases is verified again, signature and content hash.
func (s *Server) ReleasedVersion(ctx context.Context, version uint64, candidate bool) (uint64, error) {
	if version != 0 {
		if _, err := s.store.Version(ctx, version); err != nil {
			return 0, err
		}
		if !candidate {
			if err := s.checkRelease(ctx, version); err != nil {
				return 0, err
			}
		}
		return version, nil
	}
	versions, err := s.store.Versions(ctx)
	if err != nil {
		return 0, err
	}
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i].Version
		if candidate {
			return v, nil
		}
		if s.Status(v).Status == modelcard.StatusApproved {
			if err := s.checkRelease(ctx, v); err != nil {
				return 0, err
			}
			return v, nil
		}
	}
	if candidate {
		return 0, fmt.Errorf("no version committed yet: %w", ErrNotFound)
	}
	return 0, fmt.Errorf("no approved version yet: %w (pull a candidate explicitly to review it)", ErrNotFound)
}

// ModelCard builds a version's model card: how it was made, how it performs, how fair it is,
// what privacy it keeps, where it comes from and who approved it.
func (s *Server) ModelCard(ctx context.Context, version uint64) (*modelcard.Card, error) {
	if version == 0 {
		v, err := s.store.Latest(ctx)
		if err != nil {
			return nil, err
		}
		version = v.Version
	}
	v, err := s.store.Version(ctx, version)
	if err != nil {
		return nil, err
	}
	run, err := s.store.Run(ctx, v.RunID)
	if err != nil {
		return nil, err
	}
	doc, err := NewModelDocument(v, run)
	if err != nil {
		return nil, err
	}
	versions, err := s.store.Versions(ctx)
	if err != nil {
		return nil, err
	}
	in := modelcard.Input{
		Model:       doc,
		IntendedUse: modelcard.DefaultIntendedUse(doc.Schema),
		Training: modelcard.TrainingData{
			Schema: doc.Schema.Name, SchemaHash: run.SchemaHash, Clients: run.StatsClients, Records: run.StatsRecords,
			ExcludedNoConsent: run.ExcludedNoConsent, ConsentTracked: run.ConsentTracked, ConsentPurpose: consentPurpose(doc.Schema),
			EvaluationClients: v.EvalClients,
		},
		CalibrationBins: 10,
		Policy:          run.Config.Fairness.Policy,
		Lineage: modelcard.Lineage{RunID: v.RunID, ConfigHash: configHash(run.Config), SchemaHash: run.SchemaHash,
			FedpropVersion: s.cfg.Version, ParentVersion: v.Parent, Strategy: run.Config.Strategy.Name, Rounds: run.Config.Rounds, Seed: run.Config.Seed},
		Privacy:           cardPrivacy(v.Privacy),
		SecureAggregation: cardSecAgg(doc.SecureAggregation),
	}
	for _, pv := range versions {
		if pv.RunID == v.RunID && pv.Round <= v.Round {
			in.Rounds = append(in.Rounds, modelcard.RoundMetrics{Round: pv.Round, Contributors: pv.Contributors, Examples: pv.Examples,
				TrainLoss: pv.TrainLoss, Evaluation: pv.Evaluation, EvalClients: pv.EvalClients})
		}
	}
	if len(v.EvalSums) > 0 {
		if ev, err := metrics.EvalSumsFromVector(v.EvalSums, metrics.VectorBins(len(v.EvalSums))); err == nil {
			in.FinalEvaluation = &ev
			in.Training.EvaluationRecords = ev.N
		}
	}
	in.Fairness = v.Fairness
	in.Importance = v.Importance
	r := s.Status(v.Version)
	in.Approval = modelcard.Approval{Status: r.Status, Actor: r.Actor, Role: r.Role, Reason: r.Reason, Override: r.Override}
	if r.Status != modelcard.StatusCandidate {
		in.Approval.Time, in.Approval.AuditSeq, in.Approval.AuditHash = r.Entry.Time, r.Entry.Seq, r.Entry.Hash
	}
	return modelcard.Build(in)
}

func consentPurpose(s *dataset.Schema) string { return s.Consent.Purpose }

// configHash identifies a run's configuration in the card's lineage.
func configHash(c RunConfig) string {
	b, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// accountantName says how a run's epsilon was accounted, for the model card.
func accountantName(conversion string, q float64, steps int) string {
	if conversion == "" || conversion == "pld" {
		return fmt.Sprintf("privacy loss distributions of the Poisson-subsampled Gaussian mechanism (pessimistic discretisation; "+
			"the smaller of that and the Rényi bound); q=%g, %d steps", q, steps)
	}
	return fmt.Sprintf("Rényi DP of the Poisson-subsampled Gaussian mechanism, %s conversion; q=%g, %d steps", conversion, q, steps)
}

func cardPrivacy(p *modelfile.Privacy) modelcard.Privacy {
	if p == nil {
		return modelcard.Privacy{Mechanism: "none"}
	}
	out := modelcard.Privacy{Epsilon: p.Epsilon, Delta: p.Delta, ClipNorm: p.ClipNorm, NoiseMultiplier: p.NoiseMultiplier,
		Accountant: accountantName(p.Conversion, p.SamplingRate, p.Steps)}
	switch p.Mechanism {
	case DPClient:
		out.Mechanism, out.Level = "Gaussian mechanism, DP-FedAvg", "client"
		if p.AdaptiveClip {
			out.Mechanism += " with adaptive clipping"
		}
	case DPRecord:
		out.Mechanism, out.Level = "Gaussian mechanism, DP-SGD (worst client)", "record"
	}
	return out
}

func cardSecAgg(sa modelfile.SecureAggregation) modelcard.SecureAggregation {
	if sa.Mode != SecAggHE {
		return modelcard.SecureAggregation{Mode: "none"}
	}
	return modelcard.SecureAggregation{Mode: "he", Scheme: "threshold multiparty CKKS (lattigo v5 mhe)", Parameters: []modelcard.Parameter{
		{Name: "committee", Value: strconv.Itoa(sa.CommitteeSize)},
		{Name: "threshold T", Value: strconv.Itoa(sa.Threshold)},
		{Name: "min_contributors", Value: strconv.Itoa(sa.MinContributors)},
		{Name: "parameters", Value: sa.Parameters},
	}}
}
