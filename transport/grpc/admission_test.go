package grpctransport_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/stats"

	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

var submitTag = &stats.RPCTagInfo{FullMethodName: pb.ClientService_SubmitResult_FullMethodName}

// waitFor yields until cond holds: the admission's counters move as goroutines block, and a
// test of who gets in must know that every caller has arrived, not guess it with a sleep.
func waitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

// At most limit submissions are worked on at once; the others wait in line, and each end
// lets exactly one more in, until every call has been admitted.
func TestAdmissionBoundsConcurrentSubmissions(t *testing.T) {
	tests := []struct {
		name         string
		limit, calls int
	}{
		{"one at a time", 1, 5},
		{"no one waits below the limit", 3, 3},
		{"two at a time", 2, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := grpctransport.NewAdmission(tt.limit)
			require.NoError(t, err)
			entered := make(chan context.Context, tt.calls)
			for range tt.calls {
				go func() { entered <- a.TagRPC(context.Background(), submitTag) }()
			}
			first := min(tt.limit, tt.calls)
			var in []context.Context
			for range first {
				in = append(in, <-entered)
			}
			queued := int64(tt.calls - first)
			waitFor(func() bool { return a.Stats().Queued == queued })
			assert.Empty(t, entered, "no call gets in while every slot is held")

			for waiting := tt.calls - first; len(in) > 0; {
				a.HandleRPC(in[0], &stats.End{})
				in = in[1:]
				if waiting > 0 {
					in = append(in, <-entered) // exactly one takes the freed slot
					waiting--
					assert.Empty(t, entered)
				}
			}
			st := a.Stats()
			assert.Equal(t, grpctransport.AdmissionStats{Limit: tt.limit, Admitted: int64(tt.calls), Queued: queued, PeakWaiting: queued}, st)
		})
	}
}

// Other calls are never held back, a caller that gives up while waiting leaves without a
// slot (and its end frees none), and a call's slot is freed once however often its end is
// reported.
func TestAdmissionEdges(t *testing.T) {
	t.Run("only SubmitResult is limited", func(t *testing.T) {
		a, err := grpctransport.NewAdmission(1)
		require.NoError(t, err)
		held := a.TagRPC(context.Background(), submitTag)
		for _, m := range []string{pb.ClientService_PollTask_FullMethodName, pb.ClientService_Register_FullMethodName, pb.ModelService_GetModel_FullMethodName} {
			ctx := a.TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: m})
			a.HandleRPC(ctx, &stats.End{})
		}
		a.HandleRPC(held, &stats.End{})
		assert.Equal(t, int64(1), a.Stats().Admitted)
	})
	t.Run("a caller that gives up leaves the line without a slot", func(t *testing.T) {
		a, err := grpctransport.NewAdmission(1)
		require.NoError(t, err)
		held := a.TagRPC(context.Background(), submitTag)
		ctx, cancel := context.WithCancel(context.Background())
		gaveUp := make(chan context.Context)
		go func() { gaveUp <- a.TagRPC(ctx, submitTag) }()
		waitFor(func() bool { return a.Stats().Queued == 1 })
		cancel()
		a.HandleRPC(<-gaveUp, &stats.End{}) // frees nothing: it held nothing

		next := make(chan context.Context)
		go func() { next <- a.TagRPC(context.Background(), submitTag) }()
		waitFor(func() bool { return a.Stats().Queued == 2 })
		assert.Empty(t, next, "the slot is still held by the first call")
		a.HandleRPC(held, &stats.End{})
		a.HandleRPC(<-next, &stats.End{})
		assert.Equal(t, int64(2), a.Stats().Admitted)
	})
	t.Run("an end reported twice frees one slot", func(t *testing.T) {
		a, err := grpctransport.NewAdmission(1)
		require.NoError(t, err)
		first := a.TagRPC(context.Background(), submitTag)
		a.HandleRPC(first, &stats.Begin{}) // not an end
		a.HandleRPC(first, &stats.End{})
		a.HandleRPC(first, &stats.End{})
		second := a.TagRPC(context.Background(), submitTag)
		third := make(chan context.Context)
		go func() { third <- a.TagRPC(context.Background(), submitTag) }()
		waitFor(func() bool { return a.Stats().Queued == 1 })
		assert.Empty(t, third)
		a.HandleRPC(second, &stats.End{})
		a.HandleRPC(<-third, &stats.End{})
	})
	t.Run("a limit below one is refused", func(t *testing.T) {
		for _, limit := range []int{0, -1} {
			_, err := grpctransport.NewAdmission(limit)
			require.Error(t, err)
		}
	})
}
