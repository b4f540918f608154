// Package inmem is fedprop's in-process transport: client agents reach a coordinator through a
// Network that behaves like the gRPC edge where it matters to the protocol, and that a test can
// make unreliable.
//
// Like the gRPC edge, a call carries copies (neither side can change what the other holds), a
// client speaks only under its own id (the certificate's role at the gRPC edge), and a lost
// call is an error the agent retries. Unlike it, the faults are the caller's to choose: a
// request can be dropped before it reaches the coordinator, or its reply after the call took
// effect (the case that makes resubmission and duplicate detection matter); deliveries can be
// delayed by a fixed time plus a random jitter, so that concurrent calls arrive out of order;
// clients can be partitioned away and healed; and the coordinator behind the network can be
// replaced, as when its process restarts. hashicorp/raft's InmemTransport is the model.
//
// Every call is recorded as an Event, in the order the network saw it, so that tests can show
// the path a client took (a failed poll, the backoff, a re-registration).
package inmem

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/task"
)

// ErrUnreachable is the error of a call the network lost: the client was partitioned, or the
// request or its reply was dropped. It is transient, as gRPC's Unavailable is: the agent backs
// off and retries.
var ErrUnreachable = errors.New("inmem: coordinator unreachable")

// ErrIdentity is the error of a call made under another client's id than the endpoint's: at
// the gRPC edge, the certificate names the client and such a call is PermissionDenied.
var ErrIdentity = errors.New("inmem: call under another client's id")

// Coordinator is what the network delivers calls to: the coordinator's client service
// (coordinator.Server implements it). When it also serves contributions (Contributions, as
// coordinator.Server does), endpoints implement client.ContributionSource for committee
// members.
type Coordinator interface {
	client.Coordinator
}

// contributionServer is the coordinator side of FetchContributions.
type contributionServer interface {
	Contributions(ctx context.Context, q task.ContributionQuery) ([][]byte, error)
}

// Faults are the network's misbehaviour, per client or for all.
type Faults struct {
	// DropRequest is the probability that a call is lost before it reaches the coordinator.
	DropRequest float64
	// DropReply is the probability that the coordinator's answer is lost after the call took
	// effect: the client sees ErrUnreachable for a registration, poll or submission that the
	// coordinator did receive.
	DropReply float64
	// Delay and Jitter delay every delivery by Delay plus a uniform draw from [0, Jitter):
	// concurrent calls then reach the coordinator in another order than they were made.
	Delay, Jitter time.Duration
}

// Call names a client-service call in Events.
type Call string

// The calls of the client service.
const (
	CallRegister Call = "register"
	CallPoll     Call = "poll"
	CallSubmit   Call = "submit"
	CallFetch    Call = "fetch_contributions"
)

// Outcome says what became of a call.
type Outcome string

// Outcomes of a call.
const (
	// Delivered: the coordinator answered and the answer reached the client (Err is the
	// coordinator's error, if any).
	Delivered Outcome = "delivered"
	// Partitioned: the client was cut off; nothing reached the coordinator.
	Partitioned Outcome = "partitioned"
	// RequestDropped: the request was lost; nothing reached the coordinator.
	RequestDropped Outcome = "request_dropped"
	// ReplyDropped: the call took effect but its answer was lost.
	ReplyDropped Outcome = "reply_dropped"
	// Refused: the call named another client than the endpoint's.
	Refused Outcome = "refused"
)

// Event is one call as the network saw it.
type Event struct {
	Client  string
	Call    Call
	Outcome Outcome
	// Err is the coordinator's answer for a delivered call (nil when it succeeded).
	Err error
	// Task is the task a poll returned or a submission answered (zero if none).
	Task TaskRef
}

// TaskRef names a task in an Event.
type TaskRef struct {
	ID    string
	Kind  task.Kind
	Round int
}

// Options configure a Network.
type Options struct {
	// Seed drives the random faults, so that a test's faults repeat.
	Seed uint64
	// Share passes values across without copying them: for the simulator, whose clients and
	// coordinator never change what they hand over, and whose ciphertexts would otherwise be
	// copied once more per call.
	Share bool
	// NoLog keeps no event log (Events returns nothing; Observe still sees every event): the
	// simulator's hundreds of thousands of calls.
	NoLog bool
}

// Network connects endpoints to one coordinator. It is safe for concurrent use.
type Network struct {
	opts        Options
	mu          sync.Mutex
	target      Coordinator
	faults      Faults
	perClient   map[string]Faults
	partitioned map[string]bool
	rng         *rand.Rand
	events      []Event
	observers   []func(Event)
}

// New makes a reliable network in front of target.
func New(target Coordinator, opts Options) *Network {
	return &Network{
		opts:        opts,
		target:      target,
		perClient:   map[string]Faults{},
		partitioned: map[string]bool{},
		rng:         rand.New(rand.NewPCG(opts.Seed, 0x1a3e)),
	}
}

// SetTarget puts another coordinator behind the network, as when the coordinator's process
// restarts over the same store: calls in flight finish against the old one.
func (n *Network) SetTarget(c Coordinator) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.target = c
}

// SetFaults sets the faults of every client that has none of its own.
func (n *Network) SetFaults(f Faults) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults = f
}

// SetClientFaults sets one client's faults, overriding SetFaults for it.
func (n *Network) SetClientFaults(clientID string, f Faults) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.perClient[clientID] = f
}

// Partition cuts the clients off: their calls fail with ErrUnreachable until Heal.
func (n *Network) Partition(clientIDs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range clientIDs {
		n.partitioned[id] = true
	}
}

// Heal reconnects partitioned clients.
func (n *Network) Heal(clientIDs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range clientIDs {
		delete(n.partitioned, id)
	}
}

// Events returns a copy of the calls seen so far, in order.
func (n *Network) Events() []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Event(nil), n.events...)
}

// Endpoint is clientID's connection to the network: a client.Coordinator (and a
// client.ContributionSource) for its agent.
func (n *Network) Endpoint(clientID string) *Endpoint {
	return &Endpoint{net: n, id: clientID}
}

// plan draws one call's fate: its delay, and whether its request or reply is lost.
type plan struct {
	target                 Coordinator
	partitioned            bool
	dropRequest, dropReply bool
	delay                  time.Duration
}

func (n *Network) plan(clientID string) plan {
	n.mu.Lock()
	defer n.mu.Unlock()
	f, ok := n.perClient[clientID]
	if !ok {
		f = n.faults
	}
	p := plan{target: n.target, partitioned: n.partitioned[clientID], delay: f.Delay}
	if f.Jitter > 0 {
		p.delay += time.Duration(n.rng.Int64N(int64(f.Jitter)))
	}
	p.dropRequest = f.DropRequest > 0 && n.rng.Float64() < f.DropRequest
	p.dropReply = f.DropReply > 0 && n.rng.Float64() < f.DropReply
	return p
}

// Observe calls fn with every event, in the calling client's goroutine, after the event is
// recorded and before the call returns to the client: a test can act at an exact point of the
// protocol (partition a client the moment it holds a task).
func (n *Network) Observe(fn func(Event)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.observers = append(n.observers, fn)
}

func (n *Network) record(e Event) {
	n.mu.Lock()
	if !n.opts.NoLog {
		n.events = append(n.events, e)
	}
	obs := n.observers
	if len(obs) > 0 {
		obs = slices.Clone(obs)
	}
	n.mu.Unlock()
	for _, fn := range obs {
		fn(e)
	}
}

// deliver carries one call: it waits for the call's delay, applies its fate and records it.
// call runs against the coordinator and returns the task it concerns, for the event.
func (n *Network) deliver(ctx context.Context, clientID string, c Call, call func(Coordinator) (TaskRef, error)) error {
	p := n.plan(clientID)
	if p.delay > 0 {
		t := time.NewTimer(p.delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	// A partition is checked after the delay too: a client cut off while its request was
	// under way loses it.
	if p.partitioned || n.isPartitioned(clientID) {
		n.record(Event{Client: clientID, Call: c, Outcome: Partitioned})
		return fmt.Errorf("%s %s: partitioned: %w", clientID, c, ErrUnreachable)
	}
	if p.dropRequest {
		n.record(Event{Client: clientID, Call: c, Outcome: RequestDropped})
		return fmt.Errorf("%s %s: request lost: %w", clientID, c, ErrUnreachable)
	}
	ref, err := call(p.target)
	if p.dropReply {
		n.record(Event{Client: clientID, Call: c, Outcome: ReplyDropped, Err: err, Task: ref})
		return fmt.Errorf("%s %s: reply lost: %w", clientID, c, ErrUnreachable)
	}
	n.record(Event{Client: clientID, Call: c, Outcome: Delivered, Err: err, Task: ref})
	return err
}

func (n *Network) isPartitioned(clientID string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.partitioned[clientID]
}

// Endpoint is one client's side of the network.
type Endpoint struct {
	net *Network
	id  string
}

var (
	_ client.Coordinator        = (*Endpoint)(nil)
	_ client.ContributionSource = (*Endpoint)(nil)
)

// checkID refuses a call under another id than the endpoint's.
func (e *Endpoint) checkID(c Call, id string) error {
	if id == e.id {
		return nil
	}
	e.net.record(Event{Client: e.id, Call: c, Outcome: Refused})
	return fmt.Errorf("%s %s as %q: %w", e.id, c, id, ErrIdentity)
}

// Register implements client.Coordinator.
func (e *Endpoint) Register(ctx context.Context, r task.Registration) error {
	if err := e.checkID(CallRegister, r.ClientID); err != nil {
		return err
	}
	r = e.net.carry(r)
	return e.net.deliver(ctx, e.id, CallRegister, func(c Coordinator) (TaskRef, error) {
		return TaskRef{}, c.Register(ctx, r)
	})
}

// PollTask implements client.Coordinator.
func (e *Endpoint) PollTask(ctx context.Context, clientID string, wait time.Duration) (task.Task, bool, error) {
	if err := e.checkID(CallPoll, clientID); err != nil {
		return task.Task{}, false, err
	}
	var (
		t  task.Task
		ok bool
	)
	err := e.net.deliver(ctx, e.id, CallPoll, func(c Coordinator) (TaskRef, error) {
		var err error
		t, ok, err = c.PollTask(ctx, clientID, wait)
		if err != nil || !ok {
			return TaskRef{}, err
		}
		t = e.net.carryTask(t)
		return TaskRef{ID: t.ID, Kind: t.Kind, Round: t.Round}, nil
	})
	if err != nil {
		return task.Task{}, false, err
	}
	return t, ok, nil
}

// SubmitResult implements client.Coordinator.
func (e *Endpoint) SubmitResult(ctx context.Context, r task.Result) (bool, error) {
	if err := e.checkID(CallSubmit, r.ClientID); err != nil {
		return false, err
	}
	r = e.net.carryResult(r)
	var dup bool
	err := e.net.deliver(ctx, e.id, CallSubmit, func(c Coordinator) (TaskRef, error) {
		var err error
		dup, err = c.SubmitResult(ctx, r)
		return TaskRef{ID: r.TaskID, Kind: r.Kind, Round: r.Round}, err
	})
	return dup, err
}

// ErrNoContributions is FetchContributions' error when the coordinator behind the network
// serves none.
var ErrNoContributions = errors.New("inmem: the coordinator serves no contributions")

// FetchContributions implements client.ContributionSource: each ciphertext of the aggregate
// the query names, in order, copied. size bounds one ciphertext's length, as at the gRPC edge.
func (e *Endpoint) FetchContributions(ctx context.Context, q task.ContributionQuery, size int, each func(index int, ciphertext []byte) error) error {
	if err := e.checkID(CallFetch, q.ClientID); err != nil {
		return err
	}
	var cts [][]byte
	err := e.net.deliver(ctx, e.id, CallFetch, func(c Coordinator) (TaskRef, error) {
		src, ok := c.(contributionServer)
		if !ok {
			return TaskRef{}, ErrNoContributions
		}
		var err error
		cts, err = src.Contributions(ctx, q)
		return TaskRef{Kind: q.Purpose, Round: q.Round}, err
	})
	if err != nil {
		return err
	}
	for i, ct := range cts {
		if size > 0 && len(ct) > size {
			return fmt.Errorf("contribution %d: %d bytes, above the %d a ciphertext of this key takes: %w", i, len(ct), size, task.ErrInvalid)
		}
		if !e.net.opts.Share {
			ct = append([]byte(nil), ct...)
		}
		if err := each(i, ct); err != nil {
			return err
		}
	}
	return nil
}

// carry, carryTask and carryResult are what crosses the network: a copy, unless the
// network shares values.
func (n *Network) carry(r task.Registration) task.Registration {
	if n.opts.Share {
		return r
	}
	return deepCopy(r)
}

func (n *Network) carryTask(t task.Task) task.Task {
	if n.opts.Share {
		return t
	}
	return deepCopy(t)
}

func (n *Network) carryResult(r task.Result) task.Result {
	if n.opts.Share {
		return r
	}
	return deepCopy(r)
}

// deepCopy copies v so that no slice, map or pointer is shared with the original: what a
// serialised message gives at a real network edge. Unexported fields (time.Time's) are copied
// by value.
func deepCopy[T any](v T) T {
	var out T
	src := reflect.ValueOf(&v).Elem()
	dst := reflect.ValueOf(&out).Elem()
	copyValue(dst, src)
	return out
}

func copyValue(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Elem().Type())
		copyValue(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		if plainKind(src.Type().Elem().Kind()) {
			reflect.Copy(s, src) // bytes of a ciphertext, weights: one copy, not one per element
			dst.Set(s)
			return
		}
		for i := range src.Len() {
			copyValue(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		it := src.MapRange()
		for it.Next() {
			v := reflect.New(it.Value().Type()).Elem()
			copyValue(v, it.Value())
			m.SetMapIndex(it.Key(), v)
		}
		dst.Set(m)
	case reflect.Struct:
		dst.Set(src) // unexported fields by value
		for i := range src.NumField() {
			if dst.Field(i).CanSet() {
				copyValue(dst.Field(i), src.Field(i))
			}
		}
	default:
		dst.Set(src)
	}
}

// plainKind reports whether values of kind k hold no reference to share.
func plainKind(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.String:
		return true
	}
	return false
}
