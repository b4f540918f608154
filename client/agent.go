package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fedprop/fedprop/task"
)

// Coordinator is the client's view of the coordinator: the three calls of the client service.
// transport/grpc implements it over the network; the coordinator's Server implements it in
// process.
type Coordinator interface {
	Register(ctx context.Context, r task.Registration) error
	PollTask(ctx context.Context, clientID string, wait time.Duration) (task.Task, bool, error)
	SubmitResult(ctx context.Context, r task.Result) (duplicate bool, err error)
}

// AgentConfig tunes the agent's polling and retries.
type AgentConfig struct {
	// PollWait is how long one long poll may be held open by the coordinator.
	PollWait time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff after a failed call.
	MinBackoff, MaxBackoff time.Duration
	// SoftwareVersion is announced at registration.
	SoftwareVersion string
	// SendAttempts bounds the submissions of one answer that fail without the coordinator
	// refusing it (0: no bound, a production agent retries until its context ends). The
	// simulator sends once: a failure there is a defect to report, not a network to wait for.
	SendAttempts int
	// KeepNoAnswer keeps no answer at all. A production agent keeps its last answer, so that
	// a task reissued after a coordinator restart gets the very same answer (fresh DP noise
	// for the same task would average out); the simulator never reissues a task to an agent
	// (it holds a straggler's answer itself), and 100,000 kept answers, the dropped ones
	// included, would weigh gigabytes of ciphertext.
	KeepNoAnswer bool
	Logger       *slog.Logger
}

// WithDefaults fills unset fields.
func (c AgentConfig) WithDefaults() AgentConfig {
	if c.PollWait == 0 {
		c.PollWait = 20 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 15 * time.Second
	}
	// A cap below the first delay (or below zero) would make every retry after the first
	// immediate: a client spinning against an unreachable coordinator, logging each try.
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Agent is a client's driver loop: register, poll, handle, submit, with backoff and
// re-registration when the coordinator restarts.
type Agent struct {
	conn    Coordinator
	session *Session
	cfg     AgentConfig
	log     *slog.Logger

	// last remembers the most recent result, so a task reissued after a lost submission
	// (or a coordinator restart) is answered without recomputing it.
	last task.Result
}

// NewAgent makes an agent for session that talks to conn. A committee member whose
// MemberConfig.Contributions is unset fetches contributions through conn when conn can (a
// ContributionSource).
func NewAgent(conn Coordinator, session *Session, cfg AgentConfig) *Agent {
	cfg = cfg.WithDefaults()
	if m := session.member; m != nil && m.cfg.Contributions == nil {
		if src, ok := conn.(ContributionSource); ok {
			m.cfg.Contributions = src
		}
	}
	return &Agent{conn: conn, session: session, cfg: cfg, log: cfg.Logger.With("client", session.ID())}
}

// PermanentError is why an Agent stopped before its context ended: a failure that retrying
// cannot cure, because it needs the client's configuration changed. The coordinator does not
// accept its certificate or CA, one end speaks TLS and the other plaintext, the address is not
// a coordinator's, or the run uses another schema. Hint says what to change.
type PermanentError struct {
	// Op is what failed: "register", "poll", "submit" or "task".
	Op string
	// Hint is one line for the operator; it may be empty.
	Hint string
	Err  error
}

func (e *PermanentError) Error() string {
	if e.Hint == "" {
		return e.Op + ": " + e.Err.Error()
	}
	return e.Op + ": " + e.Err.Error() + "; hint: " + e.Hint
}

// Unwrap returns the failure.
func (e *PermanentError) Unwrap() error { return e.Err }

// The abilities an error from a Coordinator may have, found with errors.As so that the client
// depends on no transport (transport/grpc's ConnError has all three): it is permanent, it
// says what to change, it says what a retry waits for.
type (
	permanentFault interface{ Permanent() bool }
	hinted         interface{ Hint() string }
	waitingFor     interface{ WaitingFor() string }
)

// schemaHint is the hint for ErrSchemaMismatch.
const schemaHint = "schema must be the schema file the coordinator's run was started with (its run.schema): this client's encodes records differently"

// permanent returns err as a *PermanentError when retrying cannot cure it, else nil.
func permanent(op string, err error) *PermanentError {
	if errors.Is(err, ErrSchemaMismatch) {
		return &PermanentError{Op: op, Hint: schemaHint, Err: err}
	}
	var p permanentFault
	if !errors.As(err, &p) || !p.Permanent() {
		return nil
	}
	pe := &PermanentError{Op: op, Err: err}
	var h hinted
	if errors.As(err, &h) {
		pe.Hint = h.Hint()
	}
	return pe
}

// waitsFor says what a retry after err waits for, for the log.
func waitsFor(err error) string {
	var w waitingFor
	if errors.As(err, &w) && w.WaitingFor() != "" {
		return w.WaitingFor()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "an answer from the coordinator (a call timed out)"
	}
	return "the coordinator to answer"
}

// stop logs why the agent stops for good and returns the error Run returns.
func (a *Agent) stop(pe *PermanentError) error {
	a.log.Error("stopping: retrying cannot fix this; change the configuration", "op", pe.Op, "err", pe.Err, "hint", pe.Hint)
	return pe
}

// Run loops until ctx ends, and returns ctx's error then. A failure retrying cannot cure (a
// certificate the coordinator refuses, TLS at one end and plaintext at the other, a wrong
// address, a run with another schema) ends it early with a *PermanentError; every other failure
// is logged, with what the retry waits for, and retried.
func (a *Agent) Run(ctx context.Context) error {
	b := backoff{min: a.cfg.MinBackoff, max: a.cfg.MaxBackoff}
	registered := false
	a.log.Info("client starting", "train_rows", a.session.TrainRows(), "excluded_no_consent", a.session.Excluded())
	for ctx.Err() == nil {
		if !registered {
			err := a.Register(ctx)
			if errors.Is(err, task.ErrTooFewRecords) {
				// Not a passing fault: the run aggregates in plaintext and this client is too
				// small for that. Say so plainly and ask again only rarely.
				a.log.Error("registration refused: this client holds too few records for a run without secure aggregation; ask the operator for secure_aggregation he",
					"train_rows", a.session.TrainRows(), "err", err)
				b.cur = b.max
				b.wait(ctx)
				continue
			}
			if pe := permanent("register", err); pe != nil {
				return a.stop(pe)
			}
			if err != nil {
				if ctx.Err() == nil {
					a.log.Warn("register failed; retrying", "waiting_for", waitsFor(err), "retry_in", b.peek(), "err", err)
				}
				b.wait(ctx)
				continue
			}
			a.log.Info("registered with coordinator")
			registered = true
			b.reset()
		}
		t, ok, err := a.conn.PollTask(ctx, a.session.ID(), a.cfg.PollWait)
		if err != nil {
			if errors.Is(err, task.ErrUnknownClient) {
				registered = false
				continue
			}
			if pe := permanent("poll", err); pe != nil {
				return a.stop(pe)
			}
			if ctx.Err() == nil {
				a.log.Warn("poll failed; retrying", "waiting_for", waitsFor(err), "retry_in", b.peek(), "err", err)
			}
			b.wait(ctx)
			continue
		}
		b.reset()
		if !ok {
			continue
		}
		if err := a.do(ctx, t, &b); err != nil && ctx.Err() == nil {
			var pe *PermanentError
			if errors.As(err, &pe) {
				return a.stop(pe)
			}
			if errors.Is(err, task.ErrUnknownClient) {
				registered = false
			}
			// Do not spin on a task this client cannot do: it stays outstanding until its
			// deadline, so wait before asking again.
			b.wait(ctx)
		}
	}
	return ctx.Err()
}

// Register announces this client to the coordinator.
func (a *Agent) Register(ctx context.Context) error {
	return a.conn.Register(ctx, task.Registration{ClientID: a.session.ID(), SoftwareVersion: a.cfg.SoftwareVersion, IdentityKey: a.session.IdentityKey(),
		TrainRecords: a.session.TrainRows()})
}

func (a *Agent) do(ctx context.Context, t task.Task, b *backoff) error {
	res, rep, err := a.Answer(ctx, t)
	if pe := permanent("task", err); pe != nil {
		return pe
	}
	if err != nil {
		return err
	}
	err = a.send(ctx, t, res, rep, b)
	if pe := permanent("submit", err); pe != nil {
		return pe
	}
	return err
}

// Answer computes this client's answer to t: its result, or a refusal when the client declines
// the task on its own authority (a privacy floor, a member refusing an aggregate). A task
// answered before (reissued after a lost submission or a coordinator restart) gets the same
// answer without being computed again. The error is a failure to compute; the agent then
// sends nothing and the task stays outstanding until its deadline.
func (a *Agent) Answer(ctx context.Context, t task.Task) (task.Result, Report, error) {
	if a.last.TaskID == t.ID {
		res := a.last
		return res, Report{Kind: res.Kind, Round: res.Round, Bytes: res.Sum.Bytes()}, nil
	}
	res, rep, err := a.session.Handle(ctx, t)
	if rep.Share != nil {
		// Every decryption share given, or refused, is logged so that an audit can match
		// this log against the coordinator's.
		sh := rep.Share
		attrs := []any{"run", sh.Run, "round", sh.Round, "purpose", sh.Purpose.String(), "contributors", sh.Contributors, "aggregate_sha256", sh.Digest,
			"active", sh.Active}
		if err != nil {
			a.log.Warn("decryption share refused", append(attrs, "err", err)...)
		} else {
			a.log.Info("decryption share given", attrs...)
		}
	}
	switch {
	case Declines(t, err):
		// Declined on this client's own authority: say so in the log and to the
		// coordinator, which then stops waiting for it and counts nothing of it.
		a.log.Warn("task declined", "task", t.ID, "kind", t.Kind.String(), "run", t.RunID, "round", t.Round, "reason", err)
		res, err = Refusal(a.session.ID(), t, err), nil
		rep.Refused = true
	case err != nil:
		a.log.Error("task failed", "task", t.ID, "kind", t.Kind.String(), "round", t.Round, "err", err)
		return task.Result{}, rep, err
	}
	if !a.cfg.KeepNoAnswer {
		a.last = res
	}
	return res, rep, nil
}

// Declines reports whether err, from handling t, is this client declining t on its own
// authority (answered with a Refusal), rather than a failure: a privacy floor or a consistency
// check declines a data task; a committee member refuses a decryption it must not give. A
// member that cannot take part in key generation or decryption for other reasons fails: the
// coordinator's deadline handles it.
func Declines(t task.Task, err error) bool {
	return errors.Is(err, ErrDeclined) && t.Kind != task.KindKeygen && t.Kind != task.KindDecrypt ||
		errors.Is(err, ErrRefused) && t.Kind == task.KindDecrypt
}

// Send submits t's answer, retrying transient failures with the agent's backoff until ctx
// ends. It returns nil once the coordinator has the result (or had it already), and the
// error when the coordinator refuses it for good (stale, invalid, unknown client) or the
// failure is one retrying cannot cure (the optional Permanent method of the error says so).
func (a *Agent) Send(ctx context.Context, t task.Task, res task.Result, rep Report) error {
	return a.send(ctx, t, res, rep, &backoff{min: a.cfg.MinBackoff, max: a.cfg.MaxBackoff})
}

func (a *Agent) send(ctx context.Context, t task.Task, res task.Result, rep Report, b *backoff) error {
	return a.submit(ctx, t, res, rep, b)
}

func (a *Agent) submit(ctx context.Context, t task.Task, res task.Result, rep Report, b *backoff) error {
	for attempt := 1; ; attempt++ {
		dup, err := a.conn.SubmitResult(ctx, res)
		switch {
		case err == nil && res.Refusal != "":
			a.log.Info("refusal sent", "run", t.RunID, "round", t.Round, "kind", t.Kind.String(), "duplicate", dup)
			return nil
		case err == nil:
			a.log.Info("result sent", "run", t.RunID, "round", t.Round, "kind", t.Kind.String(), "bytes", rep.Bytes,
				"examples", rep.Examples, "encrypted", rep.Encrypted, "duplicate", dup)
			if rep.Epsilon > 0 {
				a.log.Info("privacy spent by this client", "run", t.RunID, "round", t.Round, "epsilon", rep.Epsilon, "delta", rep.Delta)
			}
			if rep.Clipped > 0 {
				a.log.Warn("values clipped to the encryption range", "round", t.Round, "kind", t.Kind.String(), "clipped", rep.Clipped)
			}
			return nil
		case errors.Is(err, task.ErrStale), errors.Is(err, task.ErrInvalid), errors.Is(err, task.ErrUnknownClient):
			a.log.Warn("result refused", "run", t.RunID, "round", t.Round, "kind", t.Kind.String(), "err", err)
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case permanent("submit", err) != nil:
			return err
		case a.cfg.SendAttempts > 0 && attempt >= a.cfg.SendAttempts:
			return fmt.Errorf("submit %s after %d attempts: %w", t.ID, attempt, err)
		}
		a.log.Warn("submit failed; retrying", "task", t.ID, "waiting_for", waitsFor(err), "retry_in", b.peek(), "err", err)
		b.wait(ctx)
	}
}

// backoff doubles its delay after each failure, up to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) peek() time.Duration {
	if b.cur == 0 {
		return b.min
	}
	return b.cur
}

func (b *backoff) wait(ctx context.Context) {
	d := b.peek()
	b.cur = min(2*d, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (b *backoff) reset() { b.cur = 0 }
