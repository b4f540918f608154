package telemetry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/ops/telemetry"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/task"
)

// value reads one series of a registry: the metric name and its labels as name, value pairs.
// A histogram reads as its sample count. A series that does not exist reads -1.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	require.Zero(t, len(labels)%2, "labels come in name, value pairs")
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// TestCoordinatorMetricsCountWhatTheDriverReports feeds the metrics what a driver reports and
// reads the series each report moves.
func TestCoordinatorMetricsCountWhatTheDriverReports(t *testing.T) {
	const p = "fedprop_coordinator_"
	type series struct {
		name   string
		labels []string
		want   float64
	}
	cases := []struct {
		name   string
		report func(m *telemetry.CoordinatorMetrics)
		want   []series
	}{
		{"a committed round", func(m *telemetry.CoordinatorMetrics) {
			m.Flushed(coordinator.Flush{
				Actions:    coordinator.Actions{Commit: &coordinator.ModelVersion{Version: 1}, Run: &coordinator.RunState{ID: "r", Status: coordinator.RunTraining}},
				StoreWrite: 3 * time.Millisecond,
				Progress:   coordinator.Progress{Run: "r", Phase: "train", Round: 2, Registered: 5},
			})
		}, []series{
			{p + "rounds_committed_total", nil, 1},
			{p + "store_commit_seconds", nil, 1},
			{p + "phase", []string{"phase", "train"}, 1},
			{p + "phase", []string{"phase", "waiting"}, 0},
			{p + "round", nil, 2},
			{p + "clients_registered", nil, 5},
			{p + "runs_finished_total", []string{"status", "completed"}, 0},
			{p + "epsilon_spent", []string{"run", "r"}, -1}, // not a DP run: no series
		}},
		{"notes with nothing to write", func(m *telemetry.CoordinatorMetrics) {
			m.Flushed(coordinator.Flush{Actions: coordinator.Actions{Notes: []coordinator.Note{{Msg: "client registered"}}},
				Progress: coordinator.Progress{Phase: "waiting"}})
		}, []series{
			{p + "store_commit_seconds", nil, 0},
			{p + "rounds_committed_total", nil, 0},
			{p + "phase", []string{"phase", "waiting"}, 1},
		}},
		{"an implausible aggregate discarded and its phase retried", func(m *telemetry.CoordinatorMetrics) {
			m.Flushed(coordinator.Flush{Actions: coordinator.Actions{Notes: []coordinator.Note{
				{Msg: "implausible aggregate discarded", Event: coordinator.EventAggregateDiscarded},
				{Msg: "phase failed, retrying", Event: coordinator.EventPhaseFailed},
				{Msg: "phase started"},
			}}, Progress: coordinator.Progress{Phase: "train", Round: 1}})
		}, []series{
			{p + "aggregates_discarded_total", nil, 1},
			{p + "phase_failures_total", nil, 1},
			{p + "rounds_committed_total", nil, 0},
		}},
		{"a run that failed in its last attempt", func(m *telemetry.CoordinatorMetrics) {
			m.Flushed(coordinator.Flush{Actions: coordinator.Actions{
				Run:   &coordinator.RunState{ID: "r", Status: coordinator.RunFailed},
				Notes: []coordinator.Note{{Msg: "run failed", Event: coordinator.EventPhaseFailed}},
			}, Progress: coordinator.Progress{Phase: "done"}})
		}, []series{
			{p + "phase_failures_total", nil, 1},
			{p + "runs_finished_total", []string{"status", "failed"}, 1},
			{p + "store_commit_seconds", nil, 1},
			{p + "phase", []string{"phase", "done"}, 1},
		}},
		{"privacy spent", func(m *telemetry.CoordinatorMetrics) {
			m.Flushed(coordinator.Flush{Progress: coordinator.Progress{Run: "dp", Phase: "train", Private: true, Epsilon: 1.25}})
		}, []series{{p + "epsilon_spent", []string{"run", "dp"}, 1.25}}},
		{"results by outcome", func(m *telemetry.CoordinatorMetrics) {
			m.Submitted(task.KindTrain, coordinator.OutcomeAccepted)
			m.Submitted(task.KindTrain, coordinator.OutcomeAccepted)
			m.Submitted(task.KindEvaluate, coordinator.OutcomeDeclined)
			m.Submitted(task.Kind(99), coordinator.OutcomeAccepted) // a kind no task has
			for _, o := range coordinator.Rejections {
				m.Submitted(task.KindTrain, o)
			}
			m.Submitted(task.KindTrain, coordinator.Outcome("made up"))
		}, []series{
			{p + "results_accepted_total", []string{"kind", "train"}, 2},
			{p + "results_accepted_total", []string{"kind", "other"}, 1},
			{p + "results_accepted_total", []string{"kind", "stats"}, 0},
			{p + "tasks_declined_total", []string{"kind", "evaluate"}, 1},
			{p + "results_rejected_total", []string{"reason", "bounds"}, 1},
			{p + "results_rejected_total", []string{"reason", "stale"}, 1},
			{p + "results_rejected_total", []string{"reason", "invalid"}, 1},
			{p + "results_rejected_total", []string{"reason", "unknown_client"}, 1},
			{p + "results_rejected_total", []string{"reason", "duplicate"}, 1},
			{p + "results_rejected_total", []string{"reason", "other"}, 2},
			{p + "results_rejected_total", []string{"reason", "made up"}, -1},
		}},
		{"audit entries", func(m *telemetry.CoordinatorMetrics) {
			m.Audited(audit.ActionCommit)
			m.Audited(audit.ActionApprove)
			m.Audited(audit.Action("something new"))
		}, []series{
			{p + "audit_entries_total", []string{"action", "model.commit"}, 1},
			{p + "audit_entries_total", []string{"action", "model.approve"}, 1},
			{p + "audit_entries_total", []string{"action", "run.start"}, 0},
			{p + "audit_entries_total", []string{"action", "other"}, 1},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := telemetry.NewCoordinatorMetrics()
			tc.report(m)
			for _, s := range tc.want {
				assert.Equal(t, s.want, value(t, m.Registry(), s.name, s.labels...), "%s%v", s.name, s.labels)
			}
		})
	}
}

// TestInterceptorsTimeEveryCallByMethodAndCode runs the interceptors around handlers that
// succeed and fail.
func TestInterceptorsTimeEveryCallByMethodAndCode(t *testing.T) {
	m := telemetry.NewCoordinatorMetrics()
	unary := m.UnaryServerInterceptor()
	stream := m.StreamServerInterceptor()
	const submit, pull = "/fedprop.v1.ClientService/SubmitResult", "/fedprop.v1.ModelService/GetModel"
	cases := []struct {
		name   string
		method string
		call   func(method string) error
		code   string
	}{
		{"unary ok", submit, func(method string) error {
			_, err := unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) { return "ok", nil })
			return err
		}, "OK"},
		{"unary refused", submit, func(method string) error {
			_, err := unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) {
				return nil, status.Error(codes.InvalidArgument, "field sum: no")
			})
			return err
		}, "InvalidArgument"},
		{"unary given up by its caller", submit, func(method string) error {
			_, err := unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) {
				return nil, context.Canceled
			})
			return err
		}, "Canceled"},
		{"stream failing", pull, func(method string) error {
			return stream(nil, nil, &grpc.StreamServerInfo{FullMethod: method}, func(any, grpc.ServerStream) error { return errors.New("disk") })
		}, "Unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := value(t, m.Registry(), "fedprop_coordinator_rpc_duration_seconds", "method", tc.method)
			_ = tc.call(tc.method)
			assert.Equal(t, max(before, 0)+1, value(t, m.Registry(), "fedprop_coordinator_rpc_duration_seconds", "method", tc.method))
			assert.Equal(t, 1.0, value(t, m.Registry(), "fedprop_coordinator_rpcs_handled_total", "method", tc.method, "code", tc.code))
		})
	}
}

// TestMetricsFollowPrometheusConventions lints every family (names, units, help, counters'
// _total) once each has a series.
func TestMetricsFollowPrometheusConventions(t *testing.T) {
	c := telemetry.NewCoordinatorMetrics()
	touchAll(c)
	cl := telemetry.NewClientMetrics()
	_, _, err := cl.Instrument(&fakeConn{}).PollTask(context.Background(), "b", time.Millisecond)
	require.NoError(t, err)
	for name, reg := range map[string]prometheus.Gatherer{"coordinator": c.Registry(), "client": cl.Registry()} {
		t.Run(name, func(t *testing.T) {
			problems, err := testutil.GatherAndLint(reg)
			require.NoError(t, err)
			assert.Empty(t, problems)
		})
	}
}

// touchAll gives every vector of m a series, so that a gathering lists every family.
func touchAll(m *telemetry.CoordinatorMetrics) {
	m.Flushed(coordinator.Flush{Progress: coordinator.Progress{Run: "r", Phase: "train", Private: true, Epsilon: 0.5}})
	_, _ = m.UnaryServerInterceptor()(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/fedprop.v1.ClientService/PollTask"},
		func(context.Context, any) (any, error) { return nil, nil })
}
