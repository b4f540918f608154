package governance

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
)

// AuditSummary is what CheckAudit checked.
type AuditSummary struct {
	// Entries is the length of the log, Head its head as the store records it.
	Entries int
	Head    audit.Head
	// Decisions counts the signed decisions verified, Versions the versions whose recorded
	// audit head was checked against the log.
	Decisions, Versions int
}

// Problems are every problem CheckAudit found when asked for all of them.
type Problems []error

func (p Problems) Error() string {
	msgs := make([]string, len(p))
	for i, e := range p {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap gives errors.Is and errors.As every problem.
func (p Problems) Unwrap() []error { return p }

// ProblemRecord names the store record a problem CheckAudit reported is about.
func ProblemRecord(err error) string {
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

// CheckAudit reads and checks the log an audited ledger keeps: every entry's chain against the
// head the store records; each version's recorded audit head against the log (a log rewritten
// after a commit no longer holds it); and, with v or unless all, every decision's signature
// against the CA and the content hash it signed against the version's now. With all set it
// goes on past the problems it can go on past and returns them together as Problems; otherwise
// it returns the first: a *audit.ChainError, *audit.DecisionError or *store.CorruptError,
// each naming its entry or record.
func CheckAudit(ctx context.Context, l Ledger, v *pki.Verifier, all bool) ([]audit.Entry, audit.Head, AuditSummary, error) {
	entries, head, err := l.AuditLog(ctx)
	if err != nil {
		return nil, head, AuditSummary{}, err
	}
	sum := AuditSummary{Entries: len(entries), Head: head}
	if err := audit.Verify(entries, &head); err != nil {
		return nil, head, sum, fmt.Errorf("the log and the head the store records (%s) disagree: %w", head, err)
	}
	var problems Problems
	report := func(err error) error {
		if !all {
			return err
		}
		problems = append(problems, err)
		return nil
	}
	versions, err := l.Heads(ctx)
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
			h, err := l.ContentHash(ctx, n)
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
