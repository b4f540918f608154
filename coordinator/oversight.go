package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/governance"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/store"
)

// The human gate lives in release/governance; the coordinator's server drives it over the
// store (ledger) and re-exports its vocabulary, so that callers of the server keep one import.

// Sentinels of the human gate (governance's).
var (
	// ErrNotApproved: a version no approver has approved was asked for as a released model.
	ErrNotApproved = governance.ErrNotApproved
	// ErrFlagged: the fairness policy flagged the version; approving it needs an override.
	ErrFlagged = governance.ErrFlagged
	// ErrReviewed: the version already has a decision.
	ErrReviewed = governance.ErrReviewed
	// ErrNoCA: the coordinator has no CA certificate to check approvers' signatures against
	// (it serves without mutual TLS), so it takes no decision and honours none.
	ErrNoCA = governance.ErrNoCA
	// ErrBadSignature: a decision that is not signed by its approver over the version's
	// content hash (audit.ErrBadSignature; the error is an *audit.DecisionError).
	ErrBadSignature = governance.ErrBadSignature
	// ErrInvalidDecision: a malformed decision request; the message names the field.
	ErrInvalidDecision = governance.ErrInvalidDecision
)

// Reviewer is who approves or rejects: from the caller's certificate.
type Reviewer = governance.Reviewer

// Decision is an approver's signed decision.
type Decision = governance.Decision

// ReviewSubject is what an approver signs a decision about.
type ReviewSubject = governance.ReviewSubject

// Review is the human decision on a version, as the audit log records it.
type Review = governance.Review

// AuditSummary is what VerifyAudit checked.
type AuditSummary = governance.AuditSummary

// ledger is the coordinator's store as the gate reads and writes it.
type ledger struct{ Records }

func (l ledger) Heads(ctx context.Context) ([]governance.VersionHead, error) {
	versions, err := l.Versions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]governance.VersionHead, len(versions))
	for i, v := range versions {
		out[i] = governance.VersionHead{Version: v.Version, AuditHead: v.AuditHead}
	}
	return out, nil
}

func (l ledger) Violations(ctx context.Context, version uint64) ([]string, error) {
	v, err := l.Version(ctx, version)
	if err != nil {
		return nil, err
	}
	if v.FairnessVerdict == nil || !v.FairnessVerdict.Flagged {
		return nil, nil
	}
	out := make([]string, 0, len(v.FairnessVerdict.Violations))
	for _, vi := range v.FairnessVerdict.Violations {
		out = append(out, vi.String())
	}
	return out, nil
}

// newGate opens the release gate over the server's store.
func newGate(ctx context.Context, st Records, cfg ServerConfig, log func(string, ...any)) (*governance.Gate, error) {
	g, err := governance.Open(ctx, ledger{st}, governance.Config{Verifier: cfg.Reviewers, Now: cfg.Now, Sink: cfg.Audit,
		Observer: cfg.Observer, Log: log})
	if errors.Is(err, governance.ErrSinkWithAuditedLedger) {
		return nil, fmt.Errorf("%w: ServerConfig.Audit is for a store that keeps no audit log; this store keeps its own", ErrBadConfig)
	}
	return g, err
}

// VerifyAudit checks the audit log a store.AuditedStore keeps, as the coordinator does at
// every start: every entry against its checksum and its hash, and the chain against the head
// the store records; each version's recorded audit head against the log; and every decision's
// signature against the CA (v) and the content hash it signed against the version's. It
// returns the first problem: a *audit.ChainError, *audit.DecisionError or
// *store.CorruptError, each naming its entry or record.
func VerifyAudit(ctx context.Context, s store.AuditedStore, v *pki.Verifier) (AuditSummary, error) {
	_, _, sum, err := governance.CheckAudit(ctx, ledger{Records{Store: s}}, v, false)
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
	_, _, sum, err := governance.CheckAudit(ctx, ledger{Records{Store: s}}, v, true)
	out.Decisions, out.SignaturesChecked = sum.Decisions, v != nil
	var all governance.Problems
	switch {
	case errors.As(err, &all):
		for _, p := range all {
			out.Damaged = append(out.Damaged, store.Damage{Record: governance.ProblemRecord(p), Err: p})
		}
	case err != nil:
		out.Damaged = append(out.Damaged, store.Damage{Record: governance.ProblemRecord(err), Err: err})
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
			out = append(out, store.Damage{Record: governance.ProblemRecord(err), Err: err})
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

// persist writes what the core asks (a commit, or a run record) with the audit entries it
// implies (the pending run start, the commit, the run's stop): one transaction when the store
// keeps the log.
func (s *Server) persist(ctx context.Context, a Actions) error {
	g := s.gate
	recs := g.TakePending()
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
		err := g.Write(ctx, recs, func(es []audit.Entry) error {
			v.AuditHead = audit.HeadOf(es).String()
			if g.Audited() {
				return s.store.CommitAudited(ctx, v, *a.Run, es)
			}
			return s.store.Commit(ctx, v, *a.Run)
		})
		if err != nil {
			return fmt.Errorf("commit version %d: %w", v.Version, err)
		}
		s.crashPoint("committed")
	case a.Run != nil:
		err := g.Write(ctx, recs, func(es []audit.Entry) error {
			if g.Audited() {
				return s.store.SaveRunAudited(ctx, *a.Run, es)
			}
			return s.store.SaveRun(ctx, *a.Run)
		})
		if err != nil {
			return fmt.Errorf("save run %s: %w", a.Run.ID, err)
		}
	case len(recs) > 0:
		err := g.Write(ctx, recs, func(es []audit.Entry) error {
			if g.Audited() {
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
func (s *Server) Status(version uint64) Review { return s.gate.Status(version) }

// AuditHead is the audit log's newest sequence number and hash. With a store.AuditedStore the
// store records it with every entry; `fedprop audit verify` checks the log against it.
func (s *Server) AuditHead() audit.Head { return s.gate.Head() }

// ReviewSubject tells an approver what to sign: the version's content hash, and where it
// stands.
func (s *Server) ReviewSubject(ctx context.Context, version uint64) (ReviewSubject, error) {
	return s.gate.Subject(ctx, version)
}

// Approve releases a candidate version through the gate (governance.Gate.Approve). A
// malformed decision is an error wrapping both ErrInvalidDecision and the protocol's
// ErrInvalid.
func (s *Server) Approve(ctx context.Context, who Reviewer, d Decision) (Review, error) {
	r, err := s.gate.Approve(ctx, who, d)
	return r, asInvalid(err)
}

// Reject refuses a candidate version for release (governance.Gate.Reject), its errors as
// Approve's.
func (s *Server) Reject(ctx context.Context, who Reviewer, d Decision) (Review, error) {
	r, err := s.gate.Reject(ctx, who, d)
	return r, asInvalid(err)
}

// invalidDecision is a malformed decision as the protocol reports it: a caller's bad input
// (ErrInvalid), whatever package found it.
type invalidDecision struct{ err error }

func (e invalidDecision) Error() string   { return e.err.Error() }
func (e invalidDecision) Unwrap() []error { return []error{e.err, ErrInvalid} }

func asInvalid(err error) error {
	if errors.Is(err, ErrInvalidDecision) {
		return invalidDecision{err}
	}
	return err
}

// ReleasedVersion resolves what a model owner may pull (governance.Gate.Released): version 0
// is the latest approved (the latest of all with candidate); an explicit version must be
// approved unless candidate, and its approval is verified again.
func (s *Server) ReleasedVersion(ctx context.Context, version uint64, candidate bool) (uint64, error) {
	return s.gate.Released(ctx, version, candidate)
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
