package coordinator

import (
	"errors"
	"time"

	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/task"
)

// Observer hears what the driver did, for metrics (telemetry.CoordinatorMetrics implements it). The
// core only emits data (Actions, notes with their Event, Progress); the driver hands it here
// after carrying it out, and nothing an Observer does reaches the run. Its methods are called
// from the driver loop and from callers' goroutines: they must be safe for concurrent use and
// must not block, since the driver waits for them.
type Observer interface {
	// Flushed reports actions the driver carried out: persisted, then logged.
	Flushed(Flush)
	// Submitted reports the answer SubmitResult gave to a result of kind (the kind the client
	// said; it matches its task only when the result was accepted).
	Submitted(kind task.Kind, o Outcome)
	// Audited reports an entry appended to the audit log.
	Audited(audit.Action)
}

// Flush is one batch of actions as an Observer sees it.
type Flush struct {
	// Actions are what the core asked and the driver carried out.
	Actions Actions
	// StoreWrite is how long the store took to write Actions.Run (and Actions.Commit with it)
	// in one transaction; zero when neither was set.
	StoreWrite time.Duration
	// Progress is where the run stands after them.
	Progress Progress
}

// Progress is where a run stands, for gauges.
type Progress struct {
	// Run is the run's id.
	Run string
	// Phase is what the core is doing: one of Phases.
	Phase string
	// Round is the round in progress (0 during the statistics phase and committee setup).
	Round int
	// Registered is the number of clients registered with the run.
	Registered int
	// Private says the run is differentially private; Epsilon is then the privacy it has
	// spent so far.
	Private bool
	Epsilon float64
	// Cohort, Results and Outstanding are the current phase's clients asked, results accepted
	// and tasks unanswered; TicksLeft the time to its deadline, in ticks (all 0 while waiting
	// and when done).
	Cohort, Results, Outstanding int
	TicksLeft                    int64
}

// Phases are the values of Progress.Phase, in the order a run goes through them (keygen and
// decrypt only in he mode).
var Phases = []string{"waiting", "stats", "train", "evaluate", "keygen", "decrypt", "done"}

// Progress reports where the run stands. It copies nothing large: the driver may call it
// after every batch of actions.
func (c *Core) Progress() Progress {
	p := Progress{Run: c.cfg.ID, Phase: phaseName(c.phase), Round: c.round, Registered: len(c.clients)}
	if ps := c.run.Privacy; ps != nil {
		p.Private, p.Epsilon = true, ps.Epsilon
	}
	if c.phase != phaseWaiting && c.phase != phaseDone {
		p.Cohort, p.Results, p.Outstanding, p.TicksLeft = len(c.cohort), c.results, len(c.outstanding), c.TicksLeft()
	}
	return p
}

func phaseName(p phase) string {
	switch p {
	case phaseWaiting:
		return "waiting"
	case phaseStats:
		return "stats"
	case phaseTrain:
		return "train"
	case phaseEvaluate:
		return "evaluate"
	case phaseKeygen:
		return "keygen"
	case phaseDecrypt:
		return "decrypt"
	}
	return "done"
}

// Outcome is what became of a result a client sent, as the metrics count it: a small fixed
// set, so that it can label a metric.
type Outcome string

// The outcomes of SubmitResult.
const (
	// OutcomeAccepted: the result counts in its phase.
	OutcomeAccepted Outcome = "accepted"
	// OutcomeDeclined: the client declined its task (task.Result.Refusal); nothing of it counts.
	OutcomeDeclined Outcome = "declined"
	// OutcomeDuplicate: a repeat of a result already accepted, answered as such and counted
	// once.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeBounds: refused for breaking the run's bounds (ErrOutOfBounds).
	OutcomeBounds Outcome = "bounds"
	// OutcomeStale: refused as not outstanding: past its deadline, another round or run.
	OutcomeStale Outcome = "stale"
	// OutcomeInvalid: refused as malformed (ErrInvalid, other than the bounds).
	OutcomeInvalid Outcome = "invalid"
	// OutcomeUnknownClient: refused from a client not registered (a restarted coordinator).
	OutcomeUnknownClient Outcome = "unknown_client"
	// OutcomeOther: any other failure: the driver stopped, the caller gave up.
	OutcomeOther Outcome = "other"
)

// Rejections are the outcomes of a refused result, for a metric's label values.
var Rejections = []Outcome{OutcomeBounds, OutcomeStale, OutcomeInvalid, OutcomeUnknownClient, OutcomeDuplicate, OutcomeOther}

// OutcomeOf classifies SubmitResult's answer to r by the errors' identity, never their text.
func OutcomeOf(r task.Result, duplicate bool, err error) Outcome {
	switch {
	case err == nil && duplicate:
		return OutcomeDuplicate
	case err == nil && r.Refusal != "":
		return OutcomeDeclined
	case err == nil:
		return OutcomeAccepted
	case errors.Is(err, ErrOutOfBounds): // before ErrInvalid, which it also is
		return OutcomeBounds
	case errors.Is(err, ErrStale):
		return OutcomeStale
	case errors.Is(err, ErrInvalid):
		return OutcomeInvalid
	case errors.Is(err, ErrUnknownClient):
		return OutcomeUnknownClient
	}
	return OutcomeOther
}

// nopObserver is the Observer of a server configured without one.
type nopObserver struct{}

func (nopObserver) Flushed(Flush)                {}
func (nopObserver) Submitted(task.Kind, Outcome) {}
func (nopObserver) Audited(audit.Action)         {}
