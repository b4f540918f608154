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

	"github.com/fedprop/fedprop/audit"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/modelcard"
	"github.com/fedprop/fedprop/modelfile"
)

// Sentinels of the human gate.
var (
	// ErrNotApproved: a version no approver has approved was asked for as a released model.
	ErrNotApproved = errors.New("not approved")
	// ErrFlagged: the fairness policy flagged the version; approving it needs an override.
	ErrFlagged = errors.New("flagged by the fairness policy")
	// ErrReviewed: the version already has a decision.
	ErrReviewed = errors.New("already reviewed")
)

// Reviewer is who approves or rejects: from the caller's certificate.
type Reviewer struct {
	Name, Role string
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
// the log is the record, the map only its index.
type oversight struct {
	mu      sync.Mutex
	log     *audit.Log
	reviews map[uint64]Review
}

func subjectOf(version uint64) string { return "version " + strconv.FormatUint(version, 10) }

func newOversight(ctx context.Context, store audit.Store) (*oversight, error) {
	if store == nil {
		store = &audit.MemStore{}
	}
	log, err := audit.Open(ctx, store, audit.Options{})
	if err != nil {
		return nil, err
	}
	entries, err := store.Entries(ctx)
	if err != nil {
		return nil, err
	}
	o := &oversight{log: log, reviews: map[uint64]Review{}}
	for _, e := range entries {
		v, ok := strings.CutPrefix(e.Subject, "version ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			continue
		}
		switch e.Action {
		case audit.ActionApprove, audit.ActionOverride:
			o.reviews[n] = Review{Status: modelcard.StatusApproved, Actor: e.Actor, Role: e.Role, Reason: e.Reason, Override: e.Action == audit.ActionOverride, Entry: e}
		case audit.ActionReject:
			o.reviews[n] = Review{Status: modelcard.StatusRejected, Actor: e.Actor, Role: e.Role, Reason: e.Reason, Entry: e}
		}
	}
	return o, nil
}

func (o *oversight) status(version uint64) Review {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r, ok := o.reviews[version]; ok {
		return r
	}
	return Review{Status: modelcard.StatusCandidate}
}

func (o *oversight) record(ctx context.Context, r audit.Record) (audit.Entry, error) {
	return o.log.Append(ctx, r)
}

// Status is a version's release state: candidate, approved or rejected.
func (s *Server) Status(version uint64) Review { return s.oversight.status(version) }

// AuditHead is the audit log's newest sequence number and hash: store it elsewhere to detect a
// deleted tail (`fedprop audit verify --head`).
func (s *Server) AuditHead() audit.Head { return s.oversight.log.Head() }

// Approve releases a candidate version. A version the fairness policy flagged needs override
// and a reason that says why; every decision goes into the audit log.
func (s *Server) Approve(ctx context.Context, version uint64, who Reviewer, reason string, override bool) (Review, error) {
	return s.review(ctx, version, who, reason, override, true)
}

// Reject refuses a candidate version for release.
func (s *Server) Reject(ctx context.Context, version uint64, who Reviewer, reason string) (Review, error) {
	return s.review(ctx, version, who, reason, false, false)
}

func (s *Server) review(ctx context.Context, version uint64, who Reviewer, reason string, override, approve bool) (Review, error) {
	if strings.TrimSpace(reason) == "" {
		return Review{}, fmt.Errorf("version %d: reason: %w: a decision needs a reason", version, ErrInvalid)
	}
	v, err := s.store.Version(ctx, version)
	if err != nil {
		return Review{}, err
	}
	o := s.oversight
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev, ok := o.reviews[version]; ok {
		return prev, fmt.Errorf("version %d is already %s (by %s): %w", version, prev.Status, prev.Actor, ErrReviewed)
	}
	flagged := v.FairnessVerdict != nil && v.FairnessVerdict.Flagged
	action := audit.ActionReject
	status := modelcard.StatusRejected
	if approve {
		action, status = audit.ActionApprove, modelcard.StatusApproved
		if flagged && !override {
			var gaps []string
			for _, vi := range v.FairnessVerdict.Violations {
				gaps = append(gaps, vi.String())
			}
			return Review{}, fmt.Errorf("version %d: %w (%s): approve with an override and a reason that says why", version, ErrFlagged, strings.Join(gaps, "; "))
		}
		if override {
			if !flagged {
				return Review{}, fmt.Errorf("version %d: override: %w: the version is not flagged; approve it without an override", version, ErrInvalid)
			}
			action = audit.ActionOverride
		}
	}
	e, err := o.log.Append(ctx, audit.Record{Actor: who.Name, Role: who.Role, Action: action, Subject: subjectOf(version), Reason: reason})
	if err != nil {
		return Review{}, err
	}
	r := Review{Status: status, Actor: who.Name, Role: who.Role, Reason: reason, Override: action == audit.ActionOverride, Entry: e}
	o.reviews[version] = r
	s.log.Info("model version reviewed", "version", version, "status", status, "actor", who.Name, "override", r.Override,
		"audit_seq", e.Seq, "audit_hash", e.Hash)
	return r, nil
}

// ReleasedVersion resolves what a model owner may pull: version 0 is the latest approved (the
// latest of all with candidate); an explicit version must be approved unless candidate.
func (s *Server) ReleasedVersion(ctx context.Context, version uint64, candidate bool) (uint64, error) {
	if version != 0 {
		if _, err := s.store.Version(ctx, version); err != nil {
			return 0, err
		}
		if st := s.Status(version).Status; !candidate && st != modelcard.StatusApproved {
			return 0, fmt.Errorf("version %d is %s: %w (pull it as a candidate explicitly to review it)", version, st, ErrNotApproved)
		}
		return version, nil
	}
	versions, err := s.store.Versions(ctx)
	if err != nil {
		return 0, err
	}
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i].Version
		if candidate || s.Status(v).Status == modelcard.StatusApproved {
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

func cardPrivacy(p *modelfile.Privacy) modelcard.Privacy {
	if p == nil {
		return modelcard.Privacy{Mechanism: "none"}
	}
	out := modelcard.Privacy{Epsilon: p.Epsilon, Delta: p.Delta, ClipNorm: p.ClipNorm, NoiseMultiplier: p.NoiseMultiplier,
		Accountant: fmt.Sprintf("Rényi DP of the Poisson-subsampled Gaussian mechanism, %s conversion; q=%g, %d steps", p.Conversion, p.SamplingRate, p.Steps)}
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
