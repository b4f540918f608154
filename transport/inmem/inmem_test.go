package inmem_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/strategy"
	"github.com/fedprop/fedprop/synth"
	"github.com/fedprop/fedprop/task"
	"github.com/fedprop/fedprop/transport/inmem"
)

// counter is a coordinator that only counts what reaches it: the faults under test are the
// network's, decided before or after the call.
type counter struct {
	mu    sync.Mutex
	calls int
}

func (c *counter) Register(context.Context, task.Registration) error { c.hit(); return nil }
func (c *counter) PollTask(context.Context, string, time.Duration) (task.Task, bool, error) {
	c.hit()
	return task.Task{ID: "t"}, true, nil
}
func (c *counter) SubmitResult(context.Context, task.Result) (bool, error) {
	c.hit()
	return false, nil
}
func (c *counter) hit() { c.mu.Lock(); c.calls++; c.mu.Unlock() }

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name      string
		faults    inmem.Faults
		partition bool
		as        string
		reached   int // calls that reach the coordinator, of 3
		outcome   inmem.Outcome
		err       error
	}{
		{name: "reliable", reached: 3, outcome: inmem.Delivered},
		{name: "requests lost", faults: inmem.Faults{DropRequest: 1}, outcome: inmem.RequestDropped, err: inmem.ErrUnreachable},
		{name: "replies lost after the call took effect", faults: inmem.Faults{DropReply: 1}, reached: 3, outcome: inmem.ReplyDropped, err: inmem.ErrUnreachable},
		{name: "partitioned", partition: true, outcome: inmem.Partitioned, err: inmem.ErrUnreachable},
		{name: "another client's id", as: "branch-002", outcome: inmem.Refused, err: inmem.ErrIdentity},
		{name: "delayed", faults: inmem.Faults{Delay: time.Millisecond, Jitter: time.Millisecond}, reached: 3, outcome: inmem.Delivered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := &counter{}
			n := inmem.New(target, inmem.Options{Seed: 1})
			n.SetFaults(tc.faults)
			if tc.partition {
				n.Partition("branch-001")
			}
			as := "branch-001"
			if tc.as != "" {
				as = tc.as
			}
			e := n.Endpoint("branch-001")
			ctx := context.Background()
			errs := []error{e.Register(ctx, task.Registration{ClientID: as})}
			_, _, err := e.PollTask(ctx, as, 0)
			errs = append(errs, err)
			_, err = e.SubmitResult(ctx, task.Result{ClientID: as, TaskID: "t"})
			errs = append(errs, err)
			for _, err := range errs {
				if tc.err == nil {
					assert.NoError(t, err)
				} else {
					assert.ErrorIs(t, err, tc.err)
				}
			}
			assert.Equal(t, tc.reached, target.calls)
			events := n.Events()
			require.Len(t, events, 3)
			for i, ev := range events {
				assert.Equal(t, tc.outcome, ev.Outcome, "event %d", i)
				assert.Equal(t, "branch-001", ev.Client)
			}
			assert.Equal(t, []inmem.Call{inmem.CallRegister, inmem.CallPoll, inmem.CallSubmit},
				[]inmem.Call{events[0].Call, events[1].Call, events[2].Call})
		})
	}
}

func TestHealAndSetTarget(t *testing.T) {
	first, second := &counter{}, &counter{}
	n := inmem.New(first, inmem.Options{Seed: 1})
	e := n.Endpoint("branch-001")
	ctx := context.Background()
	n.Partition("branch-001")
	require.ErrorIs(t, e.Register(ctx, task.Registration{ClientID: "branch-001"}), inmem.ErrUnreachable)
	n.Heal("branch-001")
	require.NoError(t, e.Register(ctx, task.Registration{ClientID: "branch-001"}))
	n.SetTarget(second)
	require.NoError(t, e.Register(ctx, task.Registration{ClientID: "branch-001"}))
	assert.Equal(t, 1, first.calls)
	assert.Equal(t, 1, second.calls)
}

func TestADelayedCallGivesUpWithItsContext(t *testing.T) {
	n := inmem.New(&counter{}, inmem.Options{Seed: 1})
	n.SetFaults(inmem.Faults{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err := n.Endpoint("a").Register(ctx, task.Registration{ClientID: "a"})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// federation is a real coordinator (Server over store/mem) and real client agents over the
// in-memory network.
type federation struct {
	t      *testing.T
	store  coordinator.Records
	spec   coordinator.RunSpec
	net    *inmem.Network
	names  []string
	stopCo func()
	server *coordinator.Server
	agents sync.WaitGroup
	cancel context.CancelFunc
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newFederation starts the coordinator, calls before (to observe the network from the first
// call) and starts the agents.
func newFederation(t *testing.T, rounds, quorum int, before func(*federation)) *federation {
	cfg := synth.Config{Branches: 3, CustomersPerBranch: 300, Seed: 11}.WithDefaults()
	branches, err := synth.Generate(cfg)
	require.NoError(t, err)
	schema := synth.Schema(cfg)
	doc, err := yaml.Marshal(schema)
	require.NoError(t, err)
	rc := coordinator.RunConfig{
		ID: "inmem", Rounds: rounds, MinClients: 3, MinCohort: 3, Quorum: quorum,
		RoundDeadline: time.Second, Seed: 5, Strategy: strategy.Config{Name: "fedavg"},
	}.WithDefaults()
	require.NoError(t, rc.Validate())
	f := &federation{t: t, store: coordinator.Records{Store: mem.New()}, spec: coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc}}
	f.startCoordinator()
	f.net = inmem.New(f.server, inmem.Options{Seed: 3})
	if before != nil {
		before(f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for _, b := range branches {
		f.names = append(f.names, b.Name)
		s, err := client.NewSession(b.Name, schema, b.Train, b.Test, client.SessionOptions{})
		require.NoError(t, err)
		agent := client.NewAgent(f.net.Endpoint(b.Name), s, client.AgentConfig{PollWait: 100 * time.Millisecond,
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: quiet()})
		f.agents.Add(1)
		go func() { defer f.agents.Done(); _ = agent.Run(ctx) }()
	}
	t.Cleanup(func() {
		f.cancel()
		f.agents.Wait()
		f.stopCo()
	})
	return f
}

// startCoordinator starts (or, after stopCo, restarts) the coordinator over the same store.
func (f *federation) startCoordinator() {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := coordinator.NewServer(ctx, f.store.Store, &f.spec, coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: quiet()})
	require.NoError(f.t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	f.server = srv
	f.stopCo = func() { cancel(); <-done }
}

func (f *federation) waitFor(what string, cond func() bool) {
	require.Eventually(f.t, cond, 60*time.Second, 5*time.Millisecond, what)
}

func (f *federation) completed() bool {
	info, err := f.server.GetRun(context.Background(), "")
	return err == nil && info.State.Status == coordinator.RunCompleted
}

// cutWhenHolding partitions id the moment a poll hands it the train task of round, before it
// can answer, and closes the returned channel then.
func (f *federation) cutWhenHolding(id string, round int) <-chan struct{} {
	cut := make(chan struct{})
	var once sync.Once
	f.net.Observe(func(e inmem.Event) {
		if e.Client == id && e.Call == inmem.CallPoll && e.Outcome == inmem.Delivered && e.Err == nil &&
			e.Task.Kind == task.KindTrain && e.Task.Round == round {
			once.Do(func() {
				f.net.Partition(id)
				close(cut)
			})
		}
	})
	return cut
}

func TestAClientPartitionedMidRoundRetriesAndTheRoundGoesOnWithoutIt(t *testing.T) {
	const cut = "branch-001"
	var holding <-chan struct{}
	f := newFederation(t, 4, 2, func(f *federation) { holding = f.cutWhenHolding(cut, 2) })
	<-holding
	// The other two form the quorum: the round commits at its deadline without the cut client.
	f.waitFor("round 2 committed without the partitioned client", func() bool {
		v, err := f.store.Latest(context.Background())
		return err == nil && v.Round >= 2
	})
	f.net.Heal(cut)
	f.waitFor("the run completes", f.completed)
	versions, err := f.store.Versions(context.Background())
	require.NoError(t, err)
	assert.Len(t, versions, 4)

	// The cut client's calls: failed while cut off and retried; after the heal its round-2
	// result reached the coordinator and was refused as late; then it polled again.
	calls := func() []inmem.Event {
		var out []inmem.Event
		for _, e := range f.net.Events() {
			if e.Client == cut {
				out = append(out, e)
			}
		}
		return out
	}
	after := func(evs []inmem.Event, from int, call inmem.Call) int {
		i := slices.IndexFunc(evs[from:], func(e inmem.Event) bool { return e.Call == call && e.Outcome == inmem.Delivered })
		if i < 0 {
			return -1
		}
		return from + i
	}
	var cutCalls []inmem.Event
	var partitioned, submit int
	f.waitFor("the late result is resubmitted after the heal and the client polls again", func() bool {
		cutCalls = calls()
		partitioned = slices.IndexFunc(cutCalls, func(e inmem.Event) bool { return e.Outcome == inmem.Partitioned })
		if partitioned < 0 {
			return false
		}
		submit = after(cutCalls, partitioned, inmem.CallSubmit)
		return submit >= 0 && after(cutCalls, submit, inmem.CallPoll) >= 0
	})
	retries := 0
	for _, e := range cutCalls[partitioned:submit] {
		assert.Equal(t, inmem.Partitioned, e.Outcome)
		retries++
	}
	assert.Greater(t, retries, 1, "the agent retried while cut off")
	late := cutCalls[submit]
	assert.ErrorIs(t, late.Err, task.ErrStale)
	assert.Equal(t, inmem.TaskRef{ID: late.Task.ID, Kind: task.KindTrain, Round: 2}, late.Task)
	assert.NotEmpty(t, late.Task.ID)
	assert.NoError(t, cutCalls[after(cutCalls, submit, inmem.CallPoll)].Err)
}

func TestAPartitionedClientReRegistersWithARestartedCoordinator(t *testing.T) {
	const cut = "branch-002"
	var holding <-chan struct{}
	// Every round needs all three: the run cannot finish without the cut client.
	f := newFederation(t, 4, 3, func(f *federation) { holding = f.cutWhenHolding(cut, 2) })
	<-holding
	f.waitFor("the cut client's result is lost to the partition", func() bool {
		return slices.ContainsFunc(f.net.Events(), func(e inmem.Event) bool { return e.Client == cut && e.Outcome == inmem.Partitioned })
	})
	// The coordinator restarts over the same store while the client is cut off: it has
	// forgotten every registration.
	f.stopCo()
	f.startCoordinator()
	f.net.SetTarget(f.server)
	f.net.Heal(cut)
	f.waitFor("the run completes", f.completed)

	var after []inmem.Event
	seenCut := false
	for _, e := range f.net.Events() {
		if e.Client != cut {
			continue
		}
		seenCut = seenCut || e.Outcome == inmem.Partitioned
		if seenCut && e.Outcome == inmem.Delivered {
			after = append(after, e)
		}
	}
	require.NotEmpty(t, after)
	// The first call the restarted coordinator answered named an unknown client; the agent
	// registered again, and then worked on.
	assert.ErrorIs(t, after[0].Err, task.ErrUnknownClient, "first answer after the heal: %+v", after[0])
	reg := slices.IndexFunc(after, func(e inmem.Event) bool { return e.Call == inmem.CallRegister })
	require.Greater(t, reg, 0, "re-registered")
	assert.NoError(t, after[reg].Err)
	assert.True(t, slices.ContainsFunc(after[reg:], func(e inmem.Event) bool {
		return e.Call == inmem.CallSubmit && e.Err == nil
	}), "submitted after re-registering")
	versions, err := f.store.Versions(context.Background())
	require.NoError(t, err)
	assert.Len(t, versions, 4, "every round committed once, none lost to the restart")
}
