package telemetry

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/task"
)

const coordinatorPrefix = "fedprop_coordinator_"

// rpcBuckets reach 60 s: PollTask is a long poll held up to a minute, and its histogram shows
// how long clients wait for work.
var rpcBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 40, 60}

// storeBuckets cover a bbolt fsync (milliseconds) to a slow postgres primary (seconds).
var storeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// auditActions are the actions the audit-entry counter is labelled with; any other reads
// "other".
var auditActions = []audit.Action{audit.ActionRunStart, audit.ActionRunStop, audit.ActionCommit, audit.ActionApprove, audit.ActionReject, audit.ActionOverride}

// CoordinatorMetrics are the coordinator's metrics, in a registry of their own. It implements
// coordinator.Observer: set it as coordinator.ServerConfig.Observer, add its interceptors to
// the gRPC server, and serve Handler. It is safe for concurrent use.
type CoordinatorMetrics struct {
	reg *prometheus.Registry

	roundsCommitted     prometheus.Counter
	phase               *prometheus.GaugeVec
	round               prometheus.Gauge
	registered          prometheus.Gauge
	resultsAccepted     *prometheus.CounterVec
	resultsRejected     *prometheus.CounterVec
	tasksDeclined       *prometheus.CounterVec
	aggregatesDiscarded prometheus.Counter
	phaseFailures       prometheus.Counter
	runsFinished        *prometheus.CounterVec
	rpcDuration         *prometheus.HistogramVec
	rpcHandled          *prometheus.CounterVec
	storeCommit         prometheus.Histogram
	epsilon             *prometheus.GaugeVec
	auditEntries        *prometheus.CounterVec
}

var _ coordinator.Observer = (*CoordinatorMetrics)(nil)

// NewCoordinatorMetrics registers the coordinator's metrics in a new registry.
func NewCoordinatorMetrics() *CoordinatorMetrics {
	m := &CoordinatorMetrics{
		reg: newRegistry(),
		roundsCommitted: prometheus.NewCounter(prometheus.CounterOpts{Name: coordinatorPrefix + "rounds_committed_total",
			Help: "Model versions committed: one per round that completed."}),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: coordinatorPrefix + "phase",
			Help: "1 for the phase the active run is in (waiting, stats, train, evaluate, keygen, decrypt, done), 0 for the others."}, []string{"phase"}),
		round: prometheus.NewGauge(prometheus.GaugeOpts{Name: coordinatorPrefix + "round",
			Help: "The round in progress (0 during the statistics phase and committee setup)."}),
		registered: prometheus.NewGauge(prometheus.GaugeOpts{Name: coordinatorPrefix + "clients_registered",
			Help: "Clients registered with the active run."}),
		resultsAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: coordinatorPrefix + "results_accepted_total",
			Help: "Results accepted into their phase, by task kind."}, []string{"kind"}),
		resultsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: coordinatorPrefix + "results_rejected_total",
			Help: "Results not counted, by reason: bounds (outside the run's bounds), stale, invalid, unknown_client, duplicate (a repeat of an accepted result, counted once), other."},
			[]string{"reason"}),
		tasksDeclined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: coordinatorPrefix + "tasks_declined_total",
			Help: "Tasks clients declined on their own authority (a privacy floor, a committee member's policy), by task kind."}, []string{"kind"}),
		aggregatesDiscarded: prometheus.NewCounter(prometheus.CounterOpts{Name: coordinatorPrefix + "aggregates_discarded_total",
			Help: "Decrypted he-mode aggregates discarded as implausible: their round is never committed. Alert on any increase."}),
		phaseFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: coordinatorPrefix + "phase_failures_total",
			Help: "Phases that failed (quorum missed, aggregate discarded, committee short), whether retried or failing the run."}),
		runsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: coordinatorPrefix + "runs_finished_total",
			Help: "Runs that finished, by status (completed, failed)."}, []string{"status"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: coordinatorPrefix + "rpc_duration_seconds",
			Help: "Time to handle a gRPC call, by full method name (PollTask includes its long-poll wait).", Buckets: rpcBuckets}, []string{"method"}),
		rpcHandled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: coordinatorPrefix + "rpcs_handled_total",
			Help: "gRPC calls handled, by full method name and status code."}, []string{"method", "code"}),
		storeCommit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: coordinatorPrefix + "store_commit_seconds",
			Help: "Time the store took to write one transaction of the driver: a run record, with a committed version and its audit entries.", Buckets: storeBuckets}),
		epsilon: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: coordinatorPrefix + "epsilon_spent",
			Help: "Differential-privacy epsilon a run has spent so far (runs with differential privacy only)."}, []string{"run"}),
		auditEntries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: coordinatorPrefix + "audit_entries_total",
			Help: "Entries appended to the audit log, by action."}, []string{"action"}),
	}
	m.reg.MustRegister(m.roundsCommitted, m.phase, m.round, m.registered, m.resultsAccepted, m.resultsRejected, m.tasksDeclined,
		m.aggregatesDiscarded, m.phaseFailures, m.runsFinished, m.rpcDuration, m.rpcHandled, m.storeCommit, m.epsilon, m.auditEntries)
	for _, p := range coordinator.Phases {
		m.phase.WithLabelValues(p)
	}
	for _, k := range kindLabels() {
		m.resultsAccepted.WithLabelValues(k)
		m.tasksDeclined.WithLabelValues(k)
	}
	for _, o := range coordinator.Rejections {
		m.resultsRejected.WithLabelValues(string(o))
	}
	for _, s := range []coordinator.RunStatus{coordinator.RunCompleted, coordinator.RunFailed, coordinator.RunStopped} {
		m.runsFinished.WithLabelValues(string(s))
	}
	for _, a := range auditActions {
		m.auditEntries.WithLabelValues(string(a))
	}
	m.auditEntries.WithLabelValues("other")
	return m
}

// Registry is the registry the metrics are in (for tests, and to add more).
func (m *CoordinatorMetrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus's exposition formats.
func (m *CoordinatorMetrics) Handler() http.Handler { return handler(m.reg) }

// Flushed implements coordinator.Observer: it counts committed versions, finished runs and
// the notes' events, times the store's write, and sets the gauges from the progress.
func (m *CoordinatorMetrics) Flushed(f coordinator.Flush) {
	a := f.Actions
	if a.Commit != nil {
		m.roundsCommitted.Inc()
	}
	if a.Run != nil || a.Commit != nil {
		m.storeCommit.Observe(f.StoreWrite.Seconds())
	}
	if a.Run != nil && a.Run.Status.Finished() {
		m.runsFinished.WithLabelValues(string(a.Run.Status)).Inc()
	}
	for _, n := range a.Notes {
		switch n.Event {
		case coordinator.EventPhaseFailed:
			m.phaseFailures.Inc()
		case coordinator.EventAggregateDiscarded:
			m.aggregatesDiscarded.Inc()
		}
	}
	p := f.Progress
	for _, name := range coordinator.Phases {
		v := 0.0
		if name == p.Phase {
			v = 1
		}
		m.phase.WithLabelValues(name).Set(v)
	}
	m.round.Set(float64(p.Round))
	m.registered.Set(float64(p.Registered))
	if p.Private {
		m.epsilon.WithLabelValues(p.Run).Set(p.Epsilon)
	}
}

// Submitted implements coordinator.Observer.
func (m *CoordinatorMetrics) Submitted(kind task.Kind, o coordinator.Outcome) {
	switch o {
	case coordinator.OutcomeAccepted:
		m.resultsAccepted.WithLabelValues(kindLabel(kind)).Inc()
	case coordinator.OutcomeDeclined:
		m.tasksDeclined.WithLabelValues(kindLabel(kind)).Inc()
	case coordinator.OutcomeBounds, coordinator.OutcomeStale, coordinator.OutcomeInvalid, coordinator.OutcomeUnknownClient, coordinator.OutcomeDuplicate:
		m.resultsRejected.WithLabelValues(string(o)).Inc()
	default:
		m.resultsRejected.WithLabelValues(string(coordinator.OutcomeOther)).Inc()
	}
}

// Audited implements coordinator.Observer.
func (m *CoordinatorMetrics) Audited(a audit.Action) {
	label := "other"
	for _, known := range auditActions {
		if a == known {
			label = string(a)
		}
	}
	m.auditEntries.WithLabelValues(label).Inc()
}

// observeRPC records one call. method is gRPC's full method name of a registered service:
// gRPC answers a call to any other name Unimplemented before an interceptor runs (the server
// sets no UnknownServiceHandler), so a caller cannot make up label values.
func (m *CoordinatorMetrics) observeRPC(method string, start time.Time, err error) {
	m.rpcDuration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	m.rpcHandled.WithLabelValues(method, codeOf(err).String()).Inc()
}

// codeOf is err's gRPC status code, with a context's errors as gRPC reports them.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return status.Code(err)
}

// UnaryServerInterceptor times each unary call and counts it by status code. Put it first
// among the server's interceptors, so that calls the edge refuses are counted too.
func (m *CoordinatorMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		m.observeRPC(info.FullMethod, start, err)
		return resp, err
	}
}

// StreamServerInterceptor does for streaming calls what UnaryServerInterceptor does for unary
// ones: a stream's time is from its start to its handler's return.
func (m *CoordinatorMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		err := h(srv, ss)
		m.observeRPC(info.FullMethod, start, err)
		return err
	}
}

// ServerOptions are the interceptors as options for grpc.NewServer (or
// grpctransport.NewGRPCServer), to be given before the edge's.
func (m *CoordinatorMetrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(m.StreamServerInterceptor())}
}
