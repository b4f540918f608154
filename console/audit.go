package console

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
)

// auditFilter is the audit page's query: each field empty for all.
type auditFilter struct{ Run, Version, Actor, Kind string }

type auditRow struct {
	Seq                                                 uint64
	Time, Actor, Role, Kind, KindClass, Subject, Reason string
	Signed, Hash                                        string
	VersionLink                                         uint64
	Broken                                              bool
}

type auditData struct {
	Filter              auditFilter
	Verified            bool
	Problem             string
	BreakSeq            uint64
	Head                audit.Head
	Entries, Decisions  int
	Rows                []auditRow
	Runs, Actors, Kinds []string
	Versions            []string
}

// verifyLog checks the log as `fedprop audit verify` does: the chain against the head the store
// records (and the head the gate holds), each version's recorded head, every decision's
// signature against the CA and the content hash it signed. It returns the entries (read even
// when they do not verify), the problem and the entry it names.
func (c *Console) verifyLog(r *http.Request) (entries []audit.Entry, head audit.Head, decisions int, problem error, at uint64, err error) {
	ctx := r.Context()
	recs := c.cfg.Backend.Store()
	entries, head, err = recs.AuditLog(ctx)
	if err != nil {
		return nil, head, 0, nil, 0, err
	}
	if as, ok := recs.Store.(store.AuditedStore); ok {
		sum, verr := coordinator.VerifyAudit(ctx, as, c.cfg.Verifier)
		decisions, problem = sum.Decisions, verr
	} else {
		problem = audit.Verify(entries, &head)
		if problem == nil {
			decisions, problem = audit.VerifyDecisions(c.cfg.Verifier, entries)
		}
	}
	if problem == nil && c.cfg.Backend.AuditHead() != head {
		problem = &audit.ChainError{Seq: head.Seq, Reason: "the store's head is not the head the coordinator holds: the store was changed behind it"}
	}
	var chain *audit.ChainError
	var dec *audit.DecisionError
	switch {
	case errors.As(problem, &chain):
		at = chain.Seq
	case errors.As(problem, &dec):
		at = dec.Seq
	}
	return entries, head, decisions, problem, at, nil
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f := auditFilter{Run: q.Get("run"), Version: q.Get("version"), Actor: q.Get("actor"), Kind: q.Get("kind")}
	entries, head, decisions, problem, at, err := c.verifyLog(r)
	if err != nil {
		c.internal(w, s, err)
		return
	}
	versions, err := c.cfg.Backend.Store().Versions(r.Context())
	if err != nil {
		c.internal(w, s, err)
		return
	}
	runOf := map[uint64]string{}
	for _, v := range versions {
		runOf[v.Version] = v.RunID
	}
	d := auditData{Filter: f, Verified: problem == nil, BreakSeq: at, Head: head, Entries: len(entries), Decisions: decisions}
	if problem != nil {
		d.Problem = problem.Error()
	}
	runs, actors, kinds, vers := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		ver, isVersion := audit.ParseVersionSubject(e.Subject)
		run := e.Subject
		if isVersion {
			run = runOf[ver]
			vers[strconv.FormatUint(ver, 10)] = true
		}
		if run != "" {
			runs[run] = true
		}
		actors[e.Actor], kinds[string(e.Action)] = true, true
		switch {
		case f.Run != "" && run != f.Run,
			f.Version != "" && (!isVersion || strconv.FormatUint(ver, 10) != f.Version),
			f.Actor != "" && e.Actor != f.Actor,
			f.Kind != "" && string(e.Action) != f.Kind:
			continue
		}
		row := auditRow{Seq: e.Seq, Time: e.Time.UTC().Format("2006-01-02 15:04:05"), Actor: e.Actor, Role: e.Role, Kind: string(e.Action),
			KindClass: strings.ReplaceAll(string(e.Action), ".", "-"), Subject: e.Subject, Reason: e.Reason, Hash: e.Hash, Broken: at != 0 && e.Seq == at, Signed: "—"}
		if isVersion {
			row.VersionLink = ver
		}
		switch {
		case e.Delegation != nil:
			row.Signed = "approver key, delegated to a console session"
		case e.Signature != nil:
			row.Signed = "approver key (CLI)"
		}
		d.Rows = append(d.Rows, row)
	}
	d.Runs, d.Actors, d.Kinds, d.Versions = sortedKeys(runs), sortedKeys(actors), sortedKeys(kinds), sortedKeys(vers)
	slices.SortFunc(d.Versions, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	c.render(w, http.StatusOK, "audit", view{Title: "Audit log", Nav: "audit", Session: viewOf(s), Data: d})
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
