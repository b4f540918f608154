package telemetry

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedprop/fedprop/task"
)

const clientPrefix = "fedprop_client_"

// backoffBuckets span the agent's backoff: 200 ms doubling to its max_backoff (15 s by default).
var backoffBuckets = []float64{0, .05, .1, .2, .4, .8, 1.6, 3.2, 6.4, 12.8, 25.6, 60}

// The calls a client makes, as the call-failure counter labels them.
const (
	callRegister = "register"
	callPoll     = "poll"
	callSubmit   = "submit"
)

// The reasons the coordinator refuses a result, as the client's counter labels them.
var clientRejections = []string{"stale", "invalid", "unknown_client"}

// ClientMetrics are the client agent's metrics, in a registry of their own. Instrument the
// agent's connection with Instrument and serve Handler. It is safe for concurrent use.
type ClientMetrics struct {
	reg *prometheus.Registry

	tasksReceived   *prometheus.CounterVec
	tasksDone       *prometheus.CounterVec
	tasksDeclined   *prometheus.CounterVec
	resultsRejected *prometheus.CounterVec
	callFailures    *prometheus.CounterVec
	backoff         prometheus.Histogram
}

// NewClientMetrics registers the client agent's metrics in a new registry.
func NewClientMetrics() *ClientMetrics {
	m := &ClientMetrics{
		reg: newRegistry(),
		tasksReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Name: clientPrefix + "tasks_received_total",
			Help: "Tasks the coordinator handed this client (a task reissued after a lost answer counts again), by kind."}, []string{"kind"}),
		tasksDone: prometheus.NewCounterVec(prometheus.CounterOpts{Name: clientPrefix + "tasks_done_total",
			Help: "Tasks whose result the coordinator accepted, by kind."}, []string{"kind"}),
		tasksDeclined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: clientPrefix + "tasks_declined_total",
			Help: "Tasks this client declined on its own authority (its privacy floor, a committee member's policy) and told the coordinator so, by kind."}, []string{"kind"}),
		resultsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: clientPrefix + "results_rejected_total",
			Help: "Results the coordinator refused, by reason (stale, invalid, unknown_client)."}, []string{"reason"}),
		callFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: clientPrefix + "call_failures_total",
			Help: "Calls to the coordinator that failed (unreachable, refused), by call (register, poll, submit)."}, []string{"call"}),
		backoff: prometheus.NewHistogram(prometheus.HistogramOpts{Name: clientPrefix + "backoff_seconds",
			Help: "Time from a failed call to the coordinator to the agent's next call: its backoff (near zero when it re-registers at once).", Buckets: backoffBuckets}),
	}
	m.reg.MustRegister(m.tasksReceived, m.tasksDone, m.tasksDeclined, m.resultsRejected, m.callFailures, m.backoff)
	for _, k := range kindLabels() {
		m.tasksReceived.WithLabelValues(k)
		m.tasksDone.WithLabelValues(k)
		m.tasksDeclined.WithLabelValues(k)
	}
	for _, r := range clientRejections {
		m.resultsRejected.WithLabelValues(r)
	}
	for _, c := range []string{callRegister, callPoll, callSubmit} {
		m.callFailures.WithLabelValues(c)
	}
	return m
}

// Registry is the registry the metrics are in (for tests, and to add more).
func (m *ClientMetrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus's exposition formats.
func (m *ClientMetrics) Handler() http.Handler { return handler(m.reg) }

// Conn is the client service as the agent calls it (client.Coordinator).
type Conn interface {
	Register(ctx context.Context, r task.Registration) error
	PollTask(ctx context.Context, clientID string, wait time.Duration) (task.Task, bool, error)
	SubmitResult(ctx context.Context, r task.Result) (duplicate bool, err error)
}

// contributionSource is client.ContributionSource: the optional ability of a connection that
// a committee member fetches contributions through. Instrument keeps it.
type contributionSource interface {
	FetchContributions(ctx context.Context, q task.ContributionQuery, size int, each func(index int, ciphertext []byte) error) error
}

// Instrument returns conn counting its calls in m. When conn can also fetch contributions (a
// client.ContributionSource), so can the result, so that wrapping never changes what the
// agent can do.
func (m *ClientMetrics) Instrument(conn Conn) Conn {
	c := &instrumented{inner: conn, m: m}
	if src, ok := conn.(contributionSource); ok {
		return instrumentedSource{c, src}
	}
	return c
}

// instrumented counts an agent's calls. failed is when the last call failed (zero after a
// success): the next call ends the agent's backoff.
type instrumented struct {
	inner Conn
	m     *ClientMetrics

	mu     sync.Mutex
	failed time.Time
}

type instrumentedSource struct {
	*instrumented
	contributionSource
}

// begin ends the backoff that a failed call started, if any.
func (c *instrumented) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.failed.IsZero() {
		c.m.backoff.Observe(time.Since(c.failed).Seconds())
		c.failed = time.Time{}
	}
}

// end counts a failed call and starts the backoff clock. A call cut short by the agent's own
// context (it is stopping) is no failure.
func (c *instrumented) end(ctx context.Context, call string, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	c.m.callFailures.WithLabelValues(call).Inc()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failed = time.Now()
}

func (c *instrumented) Register(ctx context.Context, r task.Registration) error {
	c.begin()
	err := c.inner.Register(ctx, r)
	c.end(ctx, callRegister, err)
	return err
}

func (c *instrumented) PollTask(ctx context.Context, clientID string, wait time.Duration) (task.Task, bool, error) {
	c.begin()
	t, ok, err := c.inner.PollTask(ctx, clientID, wait)
	c.end(ctx, callPoll, err)
	if err == nil && ok {
		c.m.tasksReceived.WithLabelValues(kindLabel(t.Kind)).Inc()
	}
	return t, ok, err
}

func (c *instrumented) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	c.begin()
	dup, err := c.inner.SubmitResult(ctx, r)
	c.end(ctx, callSubmit, err)
	switch {
	case err == nil && r.Refusal != "":
		c.m.tasksDeclined.WithLabelValues(kindLabel(r.Kind)).Inc()
	case err == nil:
		// A duplicate too: it answers a retry whose first try was accepted but whose reply was
		// lost (that try failed here), so counting it completes the task once.
		c.m.tasksDone.WithLabelValues(kindLabel(r.Kind)).Inc()
	default:
		if reason, ok := rejection(err); ok {
			c.m.resultsRejected.WithLabelValues(reason).Inc()
		}
	}
	return dup, err
}

// rejection is the reason label of a result the coordinator refused, by the protocol's errors
// (which the gRPC client restores from the status); ok is false for a call that failed
// otherwise (the coordinator unreachable), which the agent retries.
func rejection(err error) (reason string, ok bool) {
	switch {
	case errors.Is(err, task.ErrStale):
		return "stale", true
	case errors.Is(err, task.ErrInvalid):
		return "invalid", true
	case errors.Is(err, task.ErrUnknownClient):
		return "unknown_client", true
	}
	return "", false
}
