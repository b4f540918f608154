package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/ops/telemetry"
	"github.com/fedprop/fedprop/task"
)

// fakeConn answers the agent's calls with the errors queued for each, then with success.
type fakeConn struct {
	registerErrs, pollErrs, submitErrs []error
	task                               task.Task
	duplicate                          bool
}

func pop(errs *[]error) error {
	if len(*errs) == 0 {
		return nil
	}
	err := (*errs)[0]
	*errs = (*errs)[1:]
	return err
}

func (f *fakeConn) Register(context.Context, task.Registration) error { return pop(&f.registerErrs) }

func (f *fakeConn) PollTask(context.Context, string, time.Duration) (task.Task, bool, error) {
	if err := pop(&f.pollErrs); err != nil {
		return task.Task{}, false, err
	}
	return f.task, f.task.ID != "", nil
}

func (f *fakeConn) SubmitResult(context.Context, task.Result) (bool, error) {
	return f.duplicate, pop(&f.submitErrs)
}

// sourceConn can also fetch contributions, as transport/grpc's client can.
type sourceConn struct{ fakeConn }

func (sourceConn) FetchContributions(context.Context, task.ContributionQuery, int, func(int, []byte) error) error {
	return nil
}

// TestClientMetricsCountTheAgentsCalls makes the calls an agent makes through an instrumented
// connection and reads the series each moves.
func TestClientMetricsCountTheAgentsCalls(t *testing.T) {
	const p = "fedprop_client_"
	unavailable := errors.New("connection refused")
	stale := fmt.Errorf("%w (field task_id: not outstanding)", task.ErrStale)
	invalid := fmt.Errorf("%w (field sum.plain: outside the run's bounds)", task.ErrInvalid)
	train := task.Result{TaskID: "t1", Kind: task.KindTrain}
	type series struct {
		name   string
		labels []string
		want   float64
	}
	cases := []struct {
		name  string
		conn  *fakeConn
		calls func(c telemetry.Conn)
		want  []series
	}{
		{"a task received and done", &fakeConn{task: task.Task{ID: "t1", Kind: task.KindTrain}}, func(c telemetry.Conn) {
			_, _, _ = c.PollTask(context.Background(), "b", time.Second)
			_, _ = c.SubmitResult(context.Background(), train)
		}, []series{
			{p + "tasks_received_total", []string{"kind", "train"}, 1},
			{p + "tasks_done_total", []string{"kind", "train"}, 1},
			{p + "tasks_done_total", []string{"kind", "evaluate"}, 0},
			{p + "backoff_seconds", nil, 0},
		}},
		{"a task declined", &fakeConn{}, func(c telemetry.Conn) {
			_, _ = c.SubmitResult(context.Background(), task.Result{TaskID: "t2", Kind: task.KindEvaluate, Refusal: "below my privacy floor"})
		}, []series{
			{p + "tasks_declined_total", []string{"kind", "evaluate"}, 1},
			{p + "tasks_done_total", []string{"kind", "evaluate"}, 0},
		}},
		{"results refused by the coordinator", &fakeConn{submitErrs: []error{stale, invalid, task.ErrUnknownClient}}, func(c telemetry.Conn) {
			for range 3 {
				_, _ = c.SubmitResult(context.Background(), train)
			}
		}, []series{
			{p + "results_rejected_total", []string{"reason", "stale"}, 1},
			{p + "results_rejected_total", []string{"reason", "invalid"}, 1},
			{p + "results_rejected_total", []string{"reason", "unknown_client"}, 1},
			{p + "call_failures_total", []string{"call", "submit"}, 3},
			{p + "tasks_done_total", []string{"kind", "train"}, 0},
		}},
		{"a lost reply, then a duplicate: done once", &fakeConn{submitErrs: []error{unavailable}, duplicate: true}, func(c telemetry.Conn) {
			_, _ = c.SubmitResult(context.Background(), train)
			_, _ = c.SubmitResult(context.Background(), train)
		}, []series{
			{p + "tasks_done_total", []string{"kind", "train"}, 1},
			{p + "call_failures_total", []string{"call", "submit"}, 1},
			{p + "results_rejected_total", []string{"reason", "stale"}, 0},
			{p + "backoff_seconds", nil, 1},
		}},
		{"an unreachable coordinator: failures, then backoffs", &fakeConn{registerErrs: []error{unavailable, unavailable}, pollErrs: []error{unavailable}}, func(c telemetry.Conn) {
			for range 3 {
				_ = c.Register(context.Background(), task.Registration{ClientID: "b"})
			}
			_, _, _ = c.PollTask(context.Background(), "b", time.Second)
			_, _, _ = c.PollTask(context.Background(), "b", time.Second)
		}, []series{
			{p + "call_failures_total", []string{"call", "register"}, 2},
			{p + "call_failures_total", []string{"call", "poll"}, 1},
			{p + "backoff_seconds", nil, 3},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := telemetry.NewClientMetrics()
			tc.calls(m.Instrument(tc.conn))
			for _, s := range tc.want {
				assert.Equal(t, s.want, value(t, m.Registry(), s.name, s.labels...), "%s%v", s.name, s.labels)
			}
		})
	}
}

// TestACallCutShortByTheAgentIsNoFailure: an agent stopping cancels its call; that is neither a
// failure nor the start of a backoff.
func TestACallCutShortByTheAgentIsNoFailure(t *testing.T) {
	m := telemetry.NewClientMetrics()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := m.Instrument(&fakeConn{pollErrs: []error{context.Canceled}})
	_, _, err := c.PollTask(ctx, "b", time.Second)
	require.ErrorIs(t, err, context.Canceled)
	_, _, _ = c.PollTask(context.Background(), "b", time.Second)
	assert.Equal(t, 0.0, value(t, m.Registry(), "fedprop_client_call_failures_total", "call", "poll"))
	assert.Equal(t, 0.0, value(t, m.Registry(), "fedprop_client_backoff_seconds"))
}

// TestInstrumentKeepsTheContributionSource: a committee member fetches contributions through
// its agent's connection; wrapping it for metrics must not take that away, nor add it.
func TestInstrumentKeepsTheContributionSource(t *testing.T) {
	m := telemetry.NewClientMetrics()
	for _, tc := range []struct {
		name string
		conn telemetry.Conn
		want bool
	}{
		{"a connection that fetches", &sourceConn{}, true},
		{"one that does not", &fakeConn{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c client.Coordinator = m.Instrument(tc.conn)
			_, ok := c.(client.ContributionSource)
			assert.Equal(t, tc.want, ok)
		})
	}
}
