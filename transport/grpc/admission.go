package grpctransport

import (
	"context"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
)

// DefaultMaxConcurrentSubmits is the Admission limit an Edge uses unless told otherwise. The
// driver loop aggregates one result at a time, so more submissions in flight than a few per
// core only hold memory: with 16, decoding on every core keeps the loop busy, and at most 16
// requests (each at most the edge's message limit; an he evaluation result is 2.7 MB)
// are buffered and decoded at once.
const DefaultMaxConcurrentSubmits = 16

// Admission bounds how many SubmitResult calls a coordinator works on at once, from before
// the first byte of the request is read (gRPC's receive buffer for the whole message is
// allocated when its length arrives) through protobuf decoding, the plain form of a sparse sum
// and the wait for the driver loop, to the reply. A call beyond the limit waits, in arrival
// order, until one ends or its caller gives up: a client's agent then needs no backoff, where a
// refusal (RESOURCE_EXHAUSTED) would send thousands of clients into exponential backoff and
// stretch the round. While it waits, at most gRPC's flow-control window of its request
// (64 KiB by default) is buffered.
//
// It hooks into gRPC as a stats.Handler (ServerOption) because that is the one server hook
// that runs for each call in the call's own goroutine before its request is read: interceptors
// run after the request is decoded, and a tap handle runs in the connection's reader, which
// must not block. It is safe for concurrent use.
type Admission struct {
	slots chan struct{}

	admitted, queued atomic.Int64
	waiting, peak    atomic.Int64
}

// AdmissionStats counts what an Admission did.
type AdmissionStats struct {
	// Limit is the number of calls worked on at once.
	Limit int `json:"limit"`
	// Admitted counts calls let through; Queued those of them that had to wait first.
	Admitted int64 `json:"admitted"`
	Queued   int64 `json:"queued"`
	// PeakWaiting is the most calls that waited at the same time.
	PeakWaiting int64 `json:"peak_waiting"`
}

// NewAdmission makes an admission control that lets limit SubmitResult calls in at once.
func NewAdmission(limit int) (*Admission, error) {
	if limit < 1 {
		return nil, fmt.Errorf("max concurrent submits: must be at least 1, got %d", limit)
	}
	return &Admission{slots: make(chan struct{}, limit)}, nil
}

// ServerOption installs the admission control in a gRPC server (NewGRPCServer's opts).
func (a *Admission) ServerOption() grpc.ServerOption { return grpc.StatsHandler(a) }

// Stats reports the counts so far.
func (a *Admission) Stats() AdmissionStats {
	return AdmissionStats{Limit: cap(a.slots), Admitted: a.admitted.Load(), Queued: a.queued.Load(), PeakWaiting: a.peak.Load()}
}

// admittedKey marks the context of a call holding a slot; End frees it once.
type admittedKey struct{}

// slot is a call's hold on one of the Admission's slots.
type slot struct{ freed atomic.Bool }

// TagRPC implements stats.Handler: a SubmitResult call takes a slot here, waiting for one when
// all are taken. A call whose caller gives up while it waits goes on without one: its stream
// is already cancelled, so reading its request fails at once.
func (a *Admission) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if info.FullMethodName != pb.ClientService_SubmitResult_FullMethodName {
		return ctx
	}
	select {
	case a.slots <- struct{}{}:
	default:
		a.queued.Add(1)
		n := a.waiting.Add(1)
		for p := a.peak.Load(); n > p && !a.peak.CompareAndSwap(p, n); p = a.peak.Load() {
		}
		select {
		case a.slots <- struct{}{}:
			a.waiting.Add(-1)
		case <-ctx.Done():
			a.waiting.Add(-1)
			return ctx
		}
	}
	a.admitted.Add(1)
	return context.WithValue(ctx, admittedKey{}, &slot{})
}

// HandleRPC implements stats.Handler: a call's end, however it ended, frees its slot. gRPC
// reports the end of every call whose TagRPC ran.
func (a *Admission) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); !ok {
		return
	}
	if sl, ok := ctx.Value(admittedKey{}).(*slot); ok && sl.freed.CompareAndSwap(false, true) {
		<-a.slots
	}
}

// TagConn implements stats.Handler; connections are not limited here.
func (a *Admission) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

// HandleConn implements stats.Handler.
func (a *Admission) HandleConn(context.Context, stats.ConnStats) {}
