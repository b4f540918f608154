package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/release/governance"
	"github.com/fedprop/fedprop/release/modelfile"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/task"
)

// ServerConfig holds the driver's process settings.
type ServerConfig struct {
	// ID names this coordinator in clients' logs.
	ID string
	// TickInterval is the driver's clock resolution: deadlines are counted in ticks of it.
	TickInterval time.Duration
	Logger       *slog.Logger
	// Now is the wall clock, injectable for tests.
	Now func() time.Time
	// CrashPoint, when set, is called at named points of the driver: "result.KIND" for each
	// accepted result, "aggregate" when one completes its phase, "commit" and "committed"
	// around the store's commit. Crash tests kill the process there (internal/crashpoint).
	CrashPoint func(point string)
	// Audit stores the hash-chained audit log of approvals, rejections and runs for a store
	// that keeps none itself (store/mem; nil keeps it in memory). A store that does
	// (store.AuditedStore: store/bolt, store/postgres) keeps it with the state, and Audit must
	// be nil.
	Audit audit.Store
	// Reviewers checks approvers' signatures on decisions against the CA (the CA of the mutual
	// TLS edge). Nil, without mutual TLS, takes no decision, and refuses to start on a log that
	// holds one, since it could not tell a forged decision from a real one.
	Reviewers *pki.Verifier
	// Version is the fedprop version, for model cards.
	Version string
	// ManualClock stops the driver's own ticker: deadlines advance only on Tick. The simulator
	// drives the clock in virtual time.
	ManualClock bool
	// DeadlineTicks, when positive, is a phase's deadline in ticks, instead of the run's
	// round_deadline over TickInterval: the simulator's virtual deadlines.
	DeadlineTicks int
	// NoiseSource, when set, is the coordinator's source for its own privacy noise and client
	// sampling instead of crypto/rand. Only the simulator sets it, so that a simulation
	// repeats; a production coordinator has no setting for it.
	NoiseSource rand.Source
	// Observer hears what the driver did, for metrics (nil: nobody).
	Observer Observer
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.ID == "" {
		c.ID = "fedprop-coordinator"
	}
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}

// RunSpec is a run to start: its configuration and the schema its clients use.
type RunSpec struct {
	Config     RunConfig
	Schema     *dataset.Schema
	SchemaYAML []byte
}

// Server is the coordinator's driver: the one loop that owns the Core, persists what it asks
// (before any caller hears of it), and serves the client, model and admin calls. Transports
// (transport/grpc, or in-process callers) call its methods from any goroutine.
type Server struct {
	cfg   ServerConfig
	store Records
	log   *slog.Logger

	events chan *event
	// stopped is closed when the driver loop returns, so that calls in flight give up at once.
	stopped chan struct{}

	gate *governance.Gate

	// Owned by the Run loop.
	core    *Core
	clients map[string]task.Registration
	changed chan struct{}
	fatal   error
}

type event struct {
	fn   func()
	done chan struct{}
	err  error
}

// NewServer prepares a coordinator over st. When spec is not nil its run is resumed if the
// store holds it unfinished, started if the store does not know it, and left alone (with a
// log line) if it already finished.
func NewServer(ctx context.Context, st store.Store, spec *RunSpec, cfg ServerConfig) (*Server, error) {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		store:   Records{Store: st},
		log:     cfg.Logger,
		events:  make(chan *event),
		stopped: make(chan struct{}),
		clients: map[string]task.Registration{},
		changed: make(chan struct{}),
	}
	var err error
	if s.gate, err = newGate(ctx, s.store, cfg, s.log.Info); err != nil {
		return nil, err
	}
	if spec != nil {
		if err := s.startRun(ctx, *spec, true); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// startRun makes the core for spec. With resume set, a stored unfinished run of the same id is
// resumed; otherwise a stored run of that id is a conflict.
func (s *Server) startRun(ctx context.Context, spec RunSpec, resume bool) error {
	cfg := spec.Config
	prev, err := s.store.Run(ctx, cfg.ID)
	var prevPtr *RunState
	resumed := false // an operator's explicit start of a stopped run
	switch {
	case err == nil && !resume && prev.Status == RunStopped:
		prev.Status, prev.Message, resumed = RunWaiting, "resumed by an operator", true
		prevPtr = &prev
	case err == nil && !resume:
		return fmt.Errorf("start run %s: a run with this id exists (status %s); give the new run another run.id: %w", cfg.ID, prev.Status, ErrConflict)
	case err == nil && prev.Status.Finished():
		hint := "waiting for a new run"
		if prev.Status == RunStopped {
			hint = "an operator stopped it; `fedprop run start` with its configuration resumes it"
		}
		s.log.Info("configured run already finished; not resumed", "run", cfg.ID, "status", string(prev.Status), "message", prev.Message, "hint", hint)
		return nil
	case err == nil:
		prevPtr = &prev
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("start run %s: %w", cfg.ID, err)
	}
	var lastPtr *ModelVersion
	last, err := s.store.Latest(ctx)
	switch {
	case err == nil:
		lastPtr = &last
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("start run %s: %w", cfg.ID, err)
	}
	core, err := NewCore(cfg, spec.Schema, spec.SchemaYAML, prevPtr, lastPtr)
	if err != nil {
		return err
	}
	core.SetDeadlineTicks(int64((cfg.RoundDeadline + s.cfg.TickInterval - 1) / s.cfg.TickInterval))
	if s.cfg.DeadlineTicks > 0 {
		core.SetDeadlineTicks(int64(s.cfg.DeadlineTicks))
	}
	if s.cfg.NoiseSource != nil {
		core.SetNoiseSource(s.cfg.NoiseSource)
	}
	if prevPtr != nil {
		s.log.Info("resuming run", "run", cfg.ID, "last_committed_round", prev.LastRound, "latest_version", prev.LatestVersion)
		if resumed {
			s.gate.Pend(audit.Record{Actor: s.cfg.ID, Role: "coordinator", Action: audit.ActionRunStart, Subject: cfg.ID,
				Reason: fmt.Sprintf("resumed after a stop, from round %d", prev.LastRound+1)})
		}
	} else {
		s.log.Info("starting run", "run", cfg.ID, "rounds", cfg.Rounds, "min_clients", cfg.MinClients,
			"strategy", cfg.Strategy.Name, "consent_tracked", spec.Schema.Consent.Tracked)
		// Logged with the run's first record, in its transaction (flush, below).
		s.gate.Pend(audit.Record{Actor: s.cfg.ID, Role: "coordinator", Action: audit.ActionRunStart, Subject: cfg.ID,
			Reason: fmt.Sprintf("%d rounds, strategy %s, secure aggregation %s, privacy %s", cfg.Rounds, cfg.Strategy.Name, cfg.SecureAggregation.Mode, cfg.Privacy.Mechanism)})
		if !spec.Schema.Consent.Tracked {
			s.log.Warn("the schema declares no consent column: this run's record says consent was not tracked", "run", cfg.ID)
		}
	}
	s.core = core
	for id, reg := range s.clients {
		if err := core.Register(reg); errors.Is(err, ErrTooFewRecords) {
			// Accepted by an earlier run with secure aggregation, too small for this one.
			delete(s.clients, id)
		} else if err != nil {
			return err
		}
	}
	return s.flush(ctx)
}

// Run is the driver loop. It returns when ctx ends, or with the error of a failed write to the
// store (after which the process should exit and be restarted: it resumes from the store).
func (s *Server) Run(ctx context.Context) error {
	var ticks <-chan time.Time // nil under a manual clock: Tick advances it
	if !s.cfg.ManualClock {
		ticker := time.NewTicker(s.cfg.TickInterval)
		defer ticker.Stop()
		ticks = ticker.C
	}
	defer close(s.stopped)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-s.events:
			ev.fn()
			ev.err = s.flush(ctx)
			close(ev.done)
		case <-ticks:
			if s.core != nil {
				s.core.Tick()
			}
			if err := s.flush(ctx); err != nil {
				return err
			}
		}
		if s.fatal != nil {
			return s.fatal
		}
	}
}

// flush carries out the core's pending actions: persist (one transaction), log, advance, and
// wake long polls.
func (s *Server) flush(ctx context.Context) error {
	if s.fatal != nil {
		return s.fatal
	}
	if s.core == nil {
		return nil
	}
	a := s.core.Ready()
	if a.Empty() {
		return nil
	}
	// The commit or run record, with the audit entries it implies, in one transaction.
	start := time.Now()
	if err := s.persist(ctx, a); err != nil {
		s.fatal = err
		return s.fatal
	}
	var took time.Duration
	if a.Run != nil || a.Commit != nil {
		took = time.Since(start)
	}
	for _, n := range a.Notes {
		s.log.LogAttrs(ctx, n.Level, n.Msg, n.Attrs...)
	}
	s.core.Advance()
	s.cfg.Observer.Flushed(Flush{Actions: a, StoreWrite: took, Progress: s.core.Progress()})
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *Server) crashPoint(point string) {
	if s.cfg.CrashPoint != nil {
		s.cfg.CrashPoint(point)
	}
}

// do runs fn inside the driver loop and waits until its actions are persisted.
func (s *Server) do(ctx context.Context, fn func()) error {
	ev := &event{fn: fn, done: make(chan struct{})}
	select {
	case s.events <- ev:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopped:
		return ErrStopped
	}
	// The loop has taken the event and is running fn: wait for it whatever ctx says, since fn
	// writes into its caller's variables (returning early raced with it) and its effects are
	// persisted next; the loop finishes one event in a bounded time.
	select {
	case <-ev.done:
		return ev.err
	case <-s.stopped:
		return ErrStopped
	}
}

// ErrStopped: the coordinator's driver has stopped (shutting down, or after a store failure).
var ErrStopped = errors.New("coordinator stopped")

// Register implements the client service's Register.
func (s *Server) Register(ctx context.Context, r task.Registration) error {
	if r.ClientID == "" {
		return &ProtocolError{Field: "client_id", Err: fmt.Errorf("%w: empty", ErrInvalid)}
	}
	var err error
	if derr := s.do(ctx, func() {
		if s.core != nil {
			err = s.core.Register(r)
		}
		// Only accepted registrations are remembered for the runs that follow.
		if err == nil {
			s.clients[r.ClientID] = r
		} else {
			delete(s.clients, r.ClientID)
		}
	}); derr != nil {
		return derr
	}
	return err
}

// PollTask implements the client service's long poll: it returns the client's outstanding task
// as soon as there is one, or ok=false after wait.
func (s *Server) PollTask(ctx context.Context, clientID string, wait time.Duration) (task.Task, bool, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		var (
			t       task.Task
			ok      bool
			err     error
			changed chan struct{}
		)
		if derr := s.do(ctx, func() {
			changed = s.changed
			if _, known := s.clients[clientID]; !known {
				err = &ProtocolError{Client: clientID, Field: "client_id", Err: ErrUnknownClient}
				return
			}
			if s.core == nil {
				return
			}
			t, ok, err = s.core.Poll(clientID)
			if ok {
				t.Deadline = s.cfg.Now().Add(time.Duration(s.core.TicksLeft()) * s.cfg.TickInterval)
			}
		}); derr != nil {
			return task.Task{}, false, derr
		}
		if err != nil || ok {
			return t, ok, err
		}
		select {
		case <-changed:
		case <-timer.C:
			return task.Task{}, false, nil
		case <-ctx.Done():
			return task.Task{}, false, ctx.Err()
		}
	}
}

// SubmitResult implements the client service's SubmitResult. It returns once the result and
// anything it completed (a committed version) are persisted.
func (s *Server) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	var (
		dup bool
		err error
	)
	if derr := s.do(ctx, func() {
		if s.core == nil {
			err = &ProtocolError{Client: r.ClientID, Run: r.RunID, Round: r.Round, Field: "run_id", Err: fmt.Errorf("%w: no run is active", ErrStale)}
			return
		}
		last := s.cfg.CrashPoint != nil && len(s.core.Outstanding()) == 1
		dup, err = s.core.Submit(r)
		if err == nil && !dup {
			s.crashPoint("result." + r.Kind.String())
			if last {
				s.crashPoint("aggregate")
			}
		}
	}); derr != nil {
		dup, err = false, derr
	}
	s.cfg.Observer.Submitted(r.Kind, OutcomeOf(r, dup, err))
	return dup, err
}

// StartRun starts a new run when none is active. Its configuration is validated here too,
// whoever built it: a setting that cannot work (a NaN fraction) is refused with ErrBadConfig
// before the audit log records a start.
func (s *Server) StartRun(ctx context.Context, spec RunSpec) error {
	if err := spec.Config.Validate(); err != nil {
		return fmt.Errorf("start run %s: %w: %w", spec.Config.ID, ErrBadConfig, err)
	}
	if spec.Schema == nil {
		return fmt.Errorf("start run %s: %w: run.schema: no schema", spec.Config.ID, ErrBadConfig)
	}
	var err error
	if derr := s.do(ctx, func() {
		if s.core != nil && !s.core.Status().Status.Finished() {
			err = fmt.Errorf("start run %s: run %s is %s: %w", spec.Config.ID, s.core.Config().ID, s.core.Status().Status, ErrRunActive)
			return
		}
		err = s.startRun(ctx, spec, false)
	}); derr != nil {
		return derr
	}
	return err
}

// RunInfo is what GetRun and ListRuns report of a run.
type RunInfo struct {
	State      RunState
	Registered int
	// Active says the server is driving this run; Progress and Deadline are then what it is
	// doing now.
	Active   bool
	Progress Progress
	// Deadline is the time left until the current phase's deadline.
	Deadline time.Duration
}

// info is the active run's RunInfo; it must run in the driver loop.
func (s *Server) activeInfo() RunInfo {
	p := s.core.Progress()
	return RunInfo{State: s.core.Status(), Registered: len(s.clients), Active: !s.core.Status().Status.Finished(), Progress: p,
		Deadline: time.Duration(p.TicksLeft) * s.cfg.TickInterval}
}

// GetRun reports a run: the active one when id is empty (or the most recent).
func (s *Server) GetRun(ctx context.Context, id string) (RunInfo, error) {
	var (
		info  RunInfo
		found bool
	)
	if err := s.do(ctx, func() {
		info.Registered = len(s.clients)
		if s.core != nil && (id == "" || id == s.core.Config().ID) {
			info, found = s.activeInfo(), true
		}
	}); err != nil {
		return info, err
	}
	if found {
		return info, nil
	}
	if id == "" {
		runs, err := s.store.Runs(ctx)
		if err != nil {
			return info, err
		}
		if len(runs) == 0 {
			return info, fmt.Errorf("no run: %w", ErrNotFound)
		}
		info.State = runs[len(runs)-1]
		return info, nil
	}
	st, err := s.store.Run(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return info, fmt.Errorf("run %q: %w (fedprop run list shows the runs this coordinator holds)", id, err)
	}
	info.State = st
	return info, err
}

// ListRuns reports every run the store holds, oldest first; the run being driven as it
// stands now.
func (s *Server) ListRuns(ctx context.Context) ([]RunInfo, error) {
	runs, err := s.store.Runs(ctx)
	if err != nil {
		return nil, err
	}
	var active RunInfo
	var activeID string
	if err := s.do(ctx, func() {
		if s.core != nil {
			active, activeID = s.activeInfo(), s.core.Config().ID
		}
	}); err != nil {
		return nil, err
	}
	out := make([]RunInfo, 0, len(runs))
	for _, r := range runs {
		if r.ID == activeID {
			out = append(out, active)
			continue
		}
		out = append(out, RunInfo{State: r})
	}
	return out, nil
}

// StopRun stops the active run id cleanly (Core.Stop): the stop is persisted and audited
// before it returns. Stopping a run that is not being driven, or one already finished, is an
// error wrapping ErrNotFound or ErrConflict.
func (s *Server) StopRun(ctx context.Context, id, reason string) (RunInfo, error) {
	if strings.TrimSpace(reason) == "" {
		reason = "no reason given"
	}
	if len(reason) > audit.MaxReasonBytes {
		return RunInfo{}, fmt.Errorf("stop run %s: reason: %w: %d bytes, at most %d", id, ErrInvalid, len(reason), audit.MaxReasonBytes)
	}
	var (
		info RunInfo
		err  error
	)
	if derr := s.do(ctx, func() {
		switch {
		case s.core == nil || s.core.Config().ID != id:
			err = fmt.Errorf("stop run %s: it is not the run this coordinator is driving: %w", id, ErrNotFound)
		case s.core.Status().Status.Finished():
			err = fmt.Errorf("stop run %s: it is already %s: %w", id, s.core.Status().Status, ErrConflict)
		default:
			s.core.Stop(reason)
		}
	}); derr != nil {
		return info, derr
	}
	if err != nil {
		return info, err
	}
	return s.GetRun(ctx, id)
}

// Store is the server's store, for the model service.
func (s *Server) Store() Records { return s.store }

// ModelDocument builds the pullable document of a version (0 = latest).
func (s *Server) ModelDocument(ctx context.Context, version uint64) (*modelfile.Document, error) {
	var (
		v   ModelVersion
		err error
	)
	if version == 0 {
		v, err = s.store.Latest(ctx)
	} else {
		v, err = s.store.Version(ctx, version)
	}
	if err != nil {
		return nil, err
	}
	run, err := s.store.Run(ctx, v.RunID)
	if err != nil {
		return nil, fmt.Errorf("version %d: %w", v.Version, err)
	}
	return NewModelDocument(v, run)
}

// NewModelDocument joins a version with its run's schema and standardisation.
func NewModelDocument(v ModelVersion, run RunState) (*modelfile.Document, error) {
	if run.Standardization == nil {
		return nil, fmt.Errorf("version %d: run %s has no pinned standardisation", v.Version, run.ID)
	}
	schema, err := dataset.ParseSchema(run.ID+" schema", run.SchemaYAML)
	if err != nil {
		return nil, fmt.Errorf("version %d: %w", v.Version, err)
	}
	enc, err := dataset.NewEncoder(schema, *run.Standardization)
	if err != nil {
		return nil, fmt.Errorf("version %d: %w", v.Version, err)
	}
	m, err := v.Model(enc)
	if err != nil {
		return nil, err
	}
	d := &modelfile.Document{
		Format:            modelfile.Format,
		Version:           v.Version,
		RunID:             v.RunID,
		Round:             v.Round,
		Created:           v.Created,
		Schema:            schema,
		Standardization:   *run.Standardization,
		Metrics:           v.Evaluation,
		TrainLoss:         v.TrainLoss,
		Contributors:      v.Contributors,
		Examples:          v.Examples,
		ConsentTracked:    run.ConsentTracked,
		ExcludedNoConsent: run.ExcludedNoConsent,
		Privacy:           v.Privacy,
		SecureAggregation: modelfile.SecureAggregation{Mode: run.Config.SecureAggregation.Mode},
	}
	if err := d.SetModel(m); err != nil {
		return nil, fmt.Errorf("version %d: %w", v.Version, err)
	}
	if sa := run.Config.SecureAggregation; sa.Mode == SecAggHE {
		d.SecureAggregation.CommitteeSize = len(sa.Committee)
		d.SecureAggregation.Threshold = sa.Threshold
		d.SecureAggregation.MinContributors = sa.MinContributors
		d.SecureAggregation.Parameters = describeParams(sa.Parameters)
	}
	return d, d.Validate()
}

// describeParams states a parameter set for the model document: its name, its parameters and
// what its flooding noise guarantees.
func describeParams(name string) string {
	lit, err := secagg.PresetLiteral(name)
	if err != nil {
		return name
	}
	p, err := secagg.NewParams(lit)
	if err != nil {
		return name
	}
	if name == "" {
		name = secagg.PresetSimulation
	}
	return fmt.Sprintf("%s: %s; %s", name, lit, p.Security())
}
