package client_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/task"
)

// answers is a coordinator that answers SubmitResult from a script, and records what it got:
// the agent's logic is under test, not the coordinator's.
type answers struct {
	script []error
	got    []task.Result
}

func (a *answers) Register(context.Context, task.Registration) error { return nil }
func (a *answers) PollTask(context.Context, string, time.Duration) (task.Task, bool, error) {
	return task.Task{}, false, nil
}
func (a *answers) SubmitResult(_ context.Context, r task.Result) (bool, error) {
	a.got = append(a.got, r)
	if len(a.script) == 0 {
		return false, nil
	}
	err := a.script[0]
	a.script = a.script[1:]
	return false, err
}

func quietAgent(t *testing.T, conn client.Coordinator, cfg client.AgentConfig) (*client.Agent, []task.Task) {
	t.Helper()
	schema, train, eval := branchFile(t, false, 400)
	s, err := client.NewSession("branch-000", schema, train, eval, client.SessionOptions{})
	require.NoError(t, err)
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, time.Millisecond
	return client.NewAgent(conn, s, cfg), tasks(t, schema, train)
}

// A task reissued after a lost submission is answered with the very same result, not
// computed again (under DP a fresh answer would draw fresh noise for the same task).
func TestAReissuedTaskGetsTheSameAnswer(t *testing.T) {
	a, ts := quietAgent(t, &answers{}, client.AgentConfig{})
	train := ts[1]
	first, _, err := a.Answer(context.Background(), train)
	require.NoError(t, err)
	again, _, err := a.Answer(context.Background(), train)
	require.NoError(t, err)
	assert.Equal(t, first, again)
	assert.Same(t, &first.Sum.Plain[0], &again.Sum.Plain[0], "the kept answer itself, not a recomputation")
}

func TestSendRetriesTransientFailuresAndStopsAtRefusals(t *testing.T) {
	transient := errors.New("connection reset")
	for _, tc := range []struct {
		name     string
		script   []error
		attempts int
		sent     int
		err      error
	}{
		{"accepted", nil, 0, 1, nil},
		{"retried until accepted", []error{transient, transient}, 0, 3, nil},
		{"stale: given up at once", []error{task.ErrStale}, 0, 1, task.ErrStale},
		{"invalid: given up at once", []error{task.ErrInvalid}, 0, 1, task.ErrInvalid},
		{"unknown client: given up, to register again", []error{task.ErrUnknownClient}, 0, 1, task.ErrUnknownClient},
		{"bounded attempts", []error{transient, transient, transient}, 2, 2, transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := &answers{script: tc.script}
			a, ts := quietAgent(t, conn, client.AgentConfig{SendAttempts: tc.attempts})
			res, rep, err := a.Answer(context.Background(), ts[0])
			require.NoError(t, err)
			err = a.Send(context.Background(), ts[0], res, rep)
			if tc.err == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.err)
			}
			require.Len(t, conn.got, tc.sent)
			for _, r := range conn.got {
				assert.Equal(t, res, r, "every attempt sends the same result")
			}
		})
	}
}

// KeepNoAnswer (the simulator's) keeps no answer, sent or not (a dropped one included): a
// reissued task is computed again.
func TestKeepNoAnswerKeepsNone(t *testing.T) {
	a, ts := quietAgent(t, &answers{}, client.AgentConfig{KeepNoAnswer: true})
	train := ts[1]
	first, _, err := a.Answer(context.Background(), train)
	require.NoError(t, err)
	again, _, err := a.Answer(context.Background(), train)
	require.NoError(t, err)
	assert.NotSame(t, &first.Sum.Plain[0], &again.Sum.Plain[0], "computed again")
}

func TestDeclines(t *testing.T) {
	for _, tc := range []struct {
		kind task.Kind
		err  error
		want bool
	}{
		{task.KindTrain, client.ErrDeclined, true},
		{task.KindEvaluate, client.ErrDeclined, true},
		{task.KindKeygen, client.ErrDeclined, false},
		{task.KindDecrypt, client.ErrDeclined, false},
		{task.KindDecrypt, client.ErrRefused, true},
		{task.KindTrain, client.ErrRefused, false},
		{task.KindTrain, errors.New("disk full"), false},
		{task.KindTrain, nil, false},
	} {
		assert.Equal(t, tc.want, client.Declines(task.Task{Kind: tc.kind}, tc.err), "%s: %v", tc.kind, tc.err)
	}
}
