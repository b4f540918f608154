package sim

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/release/modelcard"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/sim/privaudit"
)

// Bounds and defaults of the privacy_audit section.
const (
	DefaultAuditShadows = 16
	DefaultAuditTargets = 1000
	MaxAuditShadows     = 1024
	MaxAuditTargets     = 1_000_000
)

// PrivacyAuditConfig is the privacy_audit section: the empirical privacy audit of the run's
// model that `fedprop sim audit` makes (see PrivacyAudit).
type PrivacyAuditConfig struct {
	// Shadows is the number of shadow runs (default 16, at least 4): the same simulation with
	// seeds of its own, each with half the targets in its training data.
	Shadows int `yaml:"shadows" json:"shadows,omitempty"`
	// Targets is the number of training rows attacked (default 1000, or half the training
	// rows when there are fewer than 2000; at most half): half of them are left out of the
	// audited run.
	Targets int `yaml:"targets" json:"targets,omitempty"`
	// Seed draws the targets, their memberships and the shadow runs' seeds (default: seed).
	Seed uint64 `yaml:"seed" json:"seed,omitempty"`
}

func (c PrivacyAuditConfig) validate() error {
	var errs []error
	if c.Shadows != 0 && (c.Shadows < 4 || c.Shadows > MaxAuditShadows) {
		errs = append(errs, fmt.Errorf("privacy_audit.shadows: must be between 4 and %d, got %d", MaxAuditShadows, c.Shadows))
	}
	if c.Targets != 0 && (c.Targets < 2 || c.Targets > MaxAuditTargets) {
		errs = append(errs, fmt.Errorf("privacy_audit.targets: must be between 2 and %d, got %d", MaxAuditTargets, c.Targets))
	}
	return errors.Join(errs...)
}

// withDefaults fills the shadows and the seed; the targets' default depends on the data.
func (c PrivacyAuditConfig) withDefaults(seed uint64) PrivacyAuditConfig {
	if c.Shadows == 0 {
		c.Shadows = DefaultAuditShadows
	}
	if c.Seed == 0 {
		c.Seed = seed
	}
	return c
}

// AuditOptions are a privacy audit's process settings.
type AuditOptions struct {
	Logger *slog.Logger
	// Version is the fedprop version written into the report.
	Version string
	// Parallel bounds the runs trained at once (default and maximum: runtime.GOMAXPROCS(0));
	// each gets an equal share of the cores as its workers unless the config sets workers.
	// The report does not depend on it.
	Parallel int
	// Done, when set, hears of every finished run, one at a time: run 0 is the audited run,
	// 1..shadows the shadow runs.
	Done func(run int, res *Result)
}

// AuditResult is a finished privacy audit.
type AuditResult struct {
	Report privaudit.Report
	// Audited is the audited run (its summary, model document and model card).
	Audited *Result
	// Card is the audited model's card with the audit's findings.
	Card *modelcard.Card
}

// target is a training row attacked by the audit: row of client's training rows.
type target struct{ client, row int }

// PrivacyAudit audits the model cfg trains by membership inference, with the production roles
// throughout. It draws cfg.PrivacyAudit.Targets training rows, leaves a random half of them out
// of the audited run (cfg as it stands, its own seed), and trains cfg.PrivacyAudit.Shadows
// shadow runs (cfg with seeds drawn from the audit's seed), each target in exactly half of them
// (LiRA's online setting). Every run keeps the partition: a target belongs to the client it was
// given to, present or left out. Each model's logit-scaled confidence on the targets feeds the
// attacks of package privaudit. The same config gives the same report.
func PrivacyAudit(ctx context.Context, cfg Config, opts AuditOptions) (*AuditResult, error) {
	start := time.Now()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ac := cfg.PrivacyAudit.withDefaults(cfg.Seed)
	world, err := Load(ctx, cfg)
	if err != nil {
		return nil, err
	}
	targets, err := pickTargets(world, ac)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	ac.Targets = len(targets)
	cfg.PrivacyAudit = ac
	rows := gatherRows(world, targets)
	if pc := &cfg.Run.Privacy; pc.Mechanism == coordinator.DPRecord && pc.SamplingRate == 0 && pc.Records == 0 {
		// Every run of the audit plans DP-SGD for the same record count, the whole world's, as
		// a deployment plans for a declared one: the runs differ in their members only.
		pc.Records = world.TrainRows()
	}

	// Memberships: the audited run holds exactly half of the targets, and each target is in
	// exactly half of the shadow runs.
	members := make([][]bool, ac.Shadows+1)
	for k := range members {
		members[k] = make([]bool, len(targets))
	}
	for _, t := range rand.New(rand.NewPCG(ac.Seed, 0xa0d172)).Perm(len(targets))[:len(targets)/2] {
		members[0][t] = true
	}
	shadowRNG := rand.New(rand.NewPCG(ac.Seed, 0xa0d173))
	for t := range targets {
		for _, k := range shadowRNG.Perm(ac.Shadows)[:ac.Shadows/2] {
			members[k+1][t] = true
		}
	}
	seeds := make([]uint64, ac.Shadows+1) // seeds[0]: the audited run keeps the config's
	seedRNG := rand.New(rand.NewPCG(ac.Seed, 0xa0d174))
	for k := 1; k < len(seeds); k++ {
		seeds[k] = seedRNG.Uint64()
	}

	cores := runtime.GOMAXPROCS(0)
	parallel := opts.Parallel
	if parallel <= 0 || parallel > cores {
		parallel = cores
	}
	parallel = min(parallel, len(seeds))
	obs := make([]privaudit.Observations, len(seeds))
	var (
		audited  *Result
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	for range parallel {
		wg.Go(func() {
			for k := range next {
				rc := cfg
				if k > 0 {
					rc.Seed, rc.Run.Seed = seeds[k], seeds[k]
				}
				off := false
				rc.Centralized = &off
				rc.Personalization = PersonalizationConfig{}
				if rc.Workers == 0 {
					rc.Workers = max(1, cores/parallel)
				}
				// The shadow runs repeat the audited run's warnings: only their errors are logged.
				log := opts.Logger
				if k > 0 {
					log = slog.New(minLevel{log.Handler(), slog.LevelError})
				}
				res, err := Run(runCtx, rc, Options{Logger: log.With("audit_run", k), Version: opts.Version,
					World: world.leaveOut(targets, members[k]), Release: true})
				var phi []float64
				if err == nil {
					phi, err = logitConfidence(res.Model, rows)
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("privacy audit: %s: %w", auditRunName(k), err)
					}
					cancel()
				} else {
					obs[k] = privaudit.Observations{Phi: phi, In: members[k]}
					if k == 0 {
						audited = res
					}
					if opts.Done != nil {
						opts.Done(k, res)
					}
				}
				mu.Unlock()
			}
		})
	}
feed:
	for k := range seeds {
		select {
		case next <- k:
		case <-runCtx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("privacy audit: %w", err)
	}

	sum := audited.Summary
	delta := cfg.Run.Privacy.Delta
	var acct *privaudit.Accountant
	if p := sum.Privacy; p != nil {
		acct = &privaudit.Accountant{Mechanism: p.Mechanism, Epsilon: p.Epsilon, Delta: p.Delta}
		delta = p.Delta
	}
	if delta == 0 {
		delta = 1e-5
	}
	result, err := privaudit.Run(obs[0], obs[1:], delta)
	if err != nil {
		return nil, fmt.Errorf("privacy audit: %w", err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("privacy audit: %w", err)
	}
	rep := privaudit.Report{
		Format: privaudit.Format, FedpropVersion: opts.Version, Seed: ac.Seed,
		Model:      privaudit.Model{RunID: cfg.Run.ID, Rounds: sum.Rounds, TrainRows: sum.TrainRows, TestAUC: sum.Final.AUC},
		Accountant: acct, Result: *result, Method: privaudit.Method(*result), Config: raw,
	}
	out := &AuditResult{Audited: audited}
	if audited.ModelCard != nil {
		card := *audited.ModelCard
		card.PrivacyAudit = cardAudit(*result)
		out.Card = &card
	}
	rep.WallSeconds = time.Since(start).Seconds()
	out.Report = rep
	return out, nil
}

// minLevel passes on the records at or above level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}

func auditRunName(k int) string {
	if k == 0 {
		return "audited run"
	}
	return fmt.Sprintf("shadow run %d", k)
}

// pickTargets draws the audit's targets from the training rows, in (client, row) order. A
// client keeps at least one row that is not a target, so no run leaves a client without data.
func pickTargets(w *World, ac PrivacyAuditConfig) ([]target, error) {
	total := w.TrainRows()
	n := ac.Targets
	switch {
	case n == 0:
		n = min(DefaultAuditTargets, total/2)
		if n < 2 {
			return nil, fmt.Errorf("privacy_audit.targets: the run has %d training rows; an audit needs at least 4", total)
		}
	case n > total/2:
		return nil, fmt.Errorf("privacy_audit.targets: %d is more than half of the run's %d training rows", n, total)
	}
	owner := make([]target, 0, total)
	for c, cd := range w.Clients {
		for r := range cd.Train.Len() {
			owner = append(owner, target{c, r})
		}
	}
	taken := make([]int, len(w.Clients))
	var out []target
	for _, i := range rand.New(rand.NewPCG(ac.Seed, 0xa0d171)).Perm(total) {
		t := owner[i]
		if taken[t.client] >= w.Clients[t.client].Train.Len()-1 {
			continue
		}
		taken[t.client]++
		out = append(out, t)
		if len(out) == n {
			break
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("privacy_audit.targets: only %d of the %d training rows can be targets (each client keeps one)", len(out), total)
	}
	slices.SortFunc(out, func(a, b target) int { return cmp.Or(cmp.Compare(a.client, b.client), cmp.Compare(a.row, b.row)) })
	return out, nil
}

// leaveOut is w with the targets not in the run left out of their clients' training rows.
// The rows are shared with w, not copied: a run only reads them.
func (w *World) leaveOut(targets []target, in []bool) *World {
	out := *w
	out.Clients = slices.Clone(w.Clients)
	drop := map[int]map[int]bool{}
	for t, ref := range targets {
		if in[t] {
			continue
		}
		if drop[ref.client] == nil {
			drop[ref.client] = map[int]bool{}
		}
		drop[ref.client][ref.row] = true
	}
	for c, rows := range drop {
		train := w.Clients[c].Train
		keep := make([]int, 0, train.Len()-len(rows))
		for r := range train.Len() {
			if !rows[r] {
				keep = append(keep, r)
			}
		}
		out.Clients[c].Train = shareRows(train, keep)
	}
	return &out
}

// shareRows is a dataset of the given rows of d that shares their values with d.
func shareRows(d *dataset.Dataset, rows []int) *dataset.Dataset {
	out := &dataset.Dataset{Schema: d.Schema, Source: d.Source, ExcludedNoConsent: d.ExcludedNoConsent,
		Numeric: make([][]float64, len(rows)), Category: make([][]int32, len(rows)), Groups: make([][]string, len(rows)),
		Label: make([]float64, len(rows)), Line: make([]int, len(rows))}
	for i, r := range rows {
		out.Numeric[i], out.Category[i], out.Label[i] = d.Numeric[r], d.Category[r], d.Label[r]
		if r < len(d.Groups) {
			out.Groups[i] = d.Groups[r]
		}
		if r < len(d.Line) {
			out.Line[i] = d.Line[r]
		}
	}
	return out
}

// gatherRows is the targets' rows, in order, as one dataset (values shared with w).
func gatherRows(w *World, targets []target) *dataset.Dataset {
	parts := map[int][]int{}
	for _, t := range targets {
		parts[t.client] = append(parts[t.client], t.row)
	}
	var all []*dataset.Dataset
	for c := range w.Clients {
		if rows := parts[c]; len(rows) > 0 {
			all = append(all, shareRows(w.Clients[c].Train, rows))
		}
	}
	if len(all) == 1 {
		return all[0]
	}
	return dataset.Concat(all...)
}

// logitConfidence is the model's logit-scaled confidence of the true label on every row.
func logitConfidence(doc *modelfile.Document, rows *dataset.Dataset) ([]float64, error) {
	if doc == nil {
		return nil, errors.New("the run committed no model")
	}
	enc, err := doc.Encoder()
	if err != nil {
		return nil, err
	}
	x := enc.Encode(rows)
	n, d := x.Dims()
	w := doc.Weights()
	z := mat.NewVecDense(n, nil)
	z.MulVec(x, mat.NewVecDense(d, w[1:]))
	phi := make([]float64, n)
	for i := range phi {
		phi[i] = privaudit.Phi(w[0]+z.AtVec(i), rows.Label[i])
	}
	return phi, nil
}

// cardAudit is the model card's account of an audit.
func cardAudit(r privaudit.Result) *modelcard.PrivacyAudit {
	a := &modelcard.PrivacyAudit{
		Method: fmt.Sprintf("Membership inference by the likelihood-ratio attack on shadow models (LiRA, Carlini et al. 2022) "+
			"and a loss threshold (Yeom et al. 2018), in the simulator; the epsilon bound from Clopper-Pearson intervals on the "+
			"attacks' true- and false-positive rates at thresholds fixed on the shadow models (Bonferroni over %d thresholds).",
			2*len(privaudit.FPRLevels)),
		Targets: r.Targets, Members: r.Members, Shadows: r.Shadows,
		EpsilonLowerBound: r.EpsilonLowerBound, Delta: r.Delta, Confidence: r.Confidence,
	}
	for _, at := range r.Attacks {
		ca := modelcard.AuditAttack{Name: at.Name, AUC: at.AUC, EpsilonLowerBound: at.EpsilonLowerBound}
		for _, p := range at.TPRAtFPR {
			ca.Rates = append(ca.Rates, modelcard.AuditRate{FPR: p.FPR, TPR: p.TPR})
		}
		a.Attacks = append(a.Attacks, ca)
	}
	return a
}

// WriteAudit writes DIR/audit.json, DIR/roc.csv and, when there is a card, the audited model's
// card with the audit in DIR/model-card.json and DIR/model-card.md, creating DIR. It returns
// the files written.
func WriteAudit(dir string, a *AuditResult) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil { // #nosec G301 -- the operator's output directory, as WriteResults makes it
		return nil, err
	}
	var written []string
	write := func(name string, f func(io.Writer) error) error {
		path := filepath.Join(dir, name)
		fh, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := f(fh); err != nil {
			_ = fh.Close() // the write error is the one to report
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := fh.Close(); err != nil {
			return err
		}
		written = append(written, path)
		return nil
	}
	err := errors.Join(write("audit.json", a.Report.WriteJSON), write("roc.csv", a.Report.WriteROCCSV))
	if err == nil && a.Card != nil {
		err = errors.Join(write("model-card.json", a.Card.Write), write("model-card.md", func(w io.Writer) error {
			_, err := w.Write(a.Card.Markdown())
			return err
		}))
	}
	return written, err
}
