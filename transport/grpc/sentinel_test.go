package grpctransport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// failingHealth answers every health check with the error it is given, through toStatus.
type failingHealth struct {
	healthpb.UnimplementedHealthServer
	err error
}

func (f failingHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return nil, toStatus(f.err)
}

// TestSentinelsCrossTheWireAsDetailsNotWords: every protocol sentinel a coordinator returns
// reaches the client, over a real socket, as itself for errors.Is, carried by an ErrorInfo
// detail; a status whose message merely quotes a sentinel's words (a client's id, a file's
// content, a reason typed by a person) restores none.
func TestSentinelsCrossTheWireAsDetailsNotWords(t *testing.T) {
	call := func(t *testing.T, serverErr error) error {
		t.Helper()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, failingHealth{err: serverErr})
		go func() { _ = gs.Serve(lis) }()
		t.Cleanup(gs.Stop)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		require.Error(t, err)
		return fromStatus(err)
	}
	for _, r := range sentinelReasons {
		t.Run(r.reason, func(t *testing.T) {
			err := call(t, fmt.Errorf("client b-7, run r, round 3: %w", r.err))
			assert.ErrorIs(t, err, r.err)
			for _, other := range sentinelReasons {
				if other.err != r.err && !errors.Is(r.err, other.err) {
					assert.NotErrorIs(t, err, other.err, "only %s", r.reason)
				}
			}
		})
	}
	t.Run("words", func(t *testing.T) {
		for _, r := range sentinelReasons {
			err := call(t, status.Error(codes.FailedPrecondition, "reason given: "+r.err.Error()))
			assert.NotErrorIs(t, err, r.err, "a message that quotes %q", r.err.Error())
		}
	})
}
