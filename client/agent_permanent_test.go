package client_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/task"
)

// fault is an error as a transport reports it (transport/grpc's ConnError has the same three
// methods): permanent or not, with a hint and what a retry waits for.
type fault struct {
	permanent bool
	hint      string
	waiting   string
}

func (f fault) Error() string      { return "fault: " + f.hint + f.waiting }
func (f fault) Permanent() bool    { return f.permanent }
func (f fault) Hint() string       { return f.hint }
func (f fault) WaitingFor() string { return f.waiting }

// scripted is a coordinator whose calls fail from a script, then succeed; PollTask hands out
// one task once.
type scripted struct {
	mu             sync.Mutex
	register, poll []error
	submit         []error
	task           *task.Task
	submits, polls int
	registrations  int
}

func next(script *[]error) error {
	if len(*script) == 0 {
		return nil
	}
	err := (*script)[0]
	*script = (*script)[1:]
	return err
}

func (s *scripted) Register(context.Context, task.Registration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registrations++
	return next(&s.register)
}

func (s *scripted) PollTask(ctx context.Context, _ string, _ time.Duration) (task.Task, bool, error) {
	s.mu.Lock()
	s.polls++
	err := next(&s.poll)
	t := s.task
	s.task = nil
	s.mu.Unlock()
	if err != nil {
		return task.Task{}, false, err
	}
	if t != nil {
		return *t, true, nil
	}
	<-ctx.Done() // nothing more to do: hold the poll as a coordinator does
	return task.Task{}, false, ctx.Err()
}

func (s *scripted) SubmitResult(context.Context, task.Result) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.submits++
	return false, next(&s.submit)
}

// TestAgentStopsOnFailuresRetryingCannotCure runs an agent whose coordinator fails for good at
// each step, and one given a task of another schema: Run returns a *client.PermanentError
// naming the step, with the hint, at the first such failure, without retrying it.
func TestAgentStopsOnFailuresRetryingCannotCure(t *testing.T) {
	refused := fault{permanent: true, hint: "use the federation's kit"}
	_, ts := quietAgent(t, &answers{}, client.AgentConfig{})
	otherSchema := ts[0]
	otherSchema.Encoding.SchemaHash = "0123456789abcdef"
	cases := []struct {
		name    string
		coord   *scripted
		op      string
		hint    string
		is      error
		submits int
	}{
		{"register", &scripted{register: []error{refused}}, "register", refused.hint, refused, 0},
		{"poll", &scripted{poll: []error{refused}}, "poll", refused.hint, refused, 0},
		{"submit", &scripted{task: &ts[0], submit: []error{refused}}, "submit", refused.hint, refused, 1},
		{"a task of another schema", &scripted{task: &otherSchema}, "task", "schema must be the schema file the coordinator's run was started with", client.ErrSchemaMismatch, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := quietAgent(t, tc.coord, client.AgentConfig{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := a.Run(ctx)
			var pe *client.PermanentError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.op, pe.Op)
			assert.Contains(t, pe.Hint, tc.hint)
			assert.Contains(t, pe.Error(), "; hint: "+pe.Hint)
			require.ErrorIs(t, err, tc.is)
			assert.NoError(t, ctx.Err(), "stopped before its context ended")
			assert.Equal(t, tc.submits, tc.coord.submits, "a permanent failure is not retried")
			assert.Equal(t, 1, tc.coord.registrations)
		})
	}
}

// TestAgentRetriesPassingFailuresSayingWhatItWaitsFor: failures that pass (the coordinator
// restarting, a call timing out, an error that says nothing of itself) are retried with
// backoff, and each retry's warn line says what it waits for.
func TestAgentRetriesPassingFailuresSayingWhatItWaitsFor(t *testing.T) {
	restarting := fault{waiting: "the coordinator to accept connections"}
	coord := &scripted{register: []error{restarting, context.DeadlineExceeded, errors.New("connection reset")}}
	var buf syncBuffer
	a := client.NewAgent(coord, sessionOf(t), client.AgentConfig{Logger: slog.New(slog.NewJSONHandler(&buf, nil)), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool {
		coord.mu.Lock()
		defer coord.mu.Unlock()
		return coord.polls > 0
	}, 10*time.Second, time.Millisecond, "registered after three failed attempts")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	var waits []string
	for _, l := range buf.lines() {
		if l["msg"] == "register failed; retrying" {
			assert.Equal(t, "WARN", l["level"])
			waits = append(waits, l["waiting_for"].(string))
		}
	}
	assert.Equal(t, []string{"the coordinator to accept connections", "an answer from the coordinator (a call timed out)", "the coordinator to answer"}, waits)
}

// sessionOf is quietAgent's session.
func sessionOf(t *testing.T) *client.Session {
	t.Helper()
	schema, train, eval := branchFile(t, false, 400)
	s, err := client.NewSession("branch-000", schema, train, eval, client.SessionOptions{})
	require.NoError(t, err)
	return s
}

// syncBuffer is a log an agent writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}
