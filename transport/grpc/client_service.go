package grpctransport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/task"
)

// clientBackend is what the client service needs of the coordinator (coordinator.Server).
type clientBackend interface {
	Register(ctx context.Context, r task.Registration) error
	PollTask(ctx context.Context, clientID string, wait time.Duration) (task.Task, bool, error)
	SubmitResult(ctx context.Context, r task.Result) (bool, error)
	Contributions(ctx context.Context, q task.ContributionQuery) ([][]byte, error)
}

// clientService is the client service: branches and app clients register, poll for tasks,
// submit results and, as committee members, fetch the contributions they decrypt.
type clientService struct {
	pb.UnimplementedClientServiceServer
	srv           clientBackend
	coordinatorID string
	keys          keyDigests
}

// Register implements pb.ClientServiceServer.
func (s *clientService) Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	err := s.srv.Register(ctx, registrationFromProto(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RegisterResponse{CoordinatorId: s.coordinatorID}, nil
}

// PollTask implements pb.ClientServiceServer.
func (s *clientService) PollTask(ctx context.Context, req *pb.PollTaskRequest) (*pb.PollTaskResponse, error) {
	wait := time.Duration(req.GetWaitMillis()) * time.Millisecond
	if wait < 0 {
		return nil, status.Error(codes.InvalidArgument, "field wait_millis: must not be negative")
	}
	wait = min(wait, maxPollWait)
	t, ok, err := s.srv.PollTask(ctx, req.GetClientId(), wait)
	if err != nil {
		return nil, toStatus(err)
	}
	if !ok {
		return &pb.PollTaskResponse{}, nil
	}
	out := taskToProto(t)
	if len(t.PublicKey) > 0 {
		sum := s.keys.digest(t.PublicKey)
		out.PublicKeySha256 = sum[:]
		if bytes.Equal(req.GetHeldPublicKeySha256(), sum[:]) {
			out.PublicKey = nil // the client holds it: hundreds of kilobytes not sent again
		}
	}
	return &pb.PollTaskResponse{Task: out}, nil
}

// keyDigests remembers the SHA-256 of the collective public key the tasks carry: every task
// of a setup shares the core's one copy of the key (which it never changes in place: a new
// setup makes a new key), so its hash is computed once per key, not once per task.
type keyDigests struct {
	mu  sync.Mutex
	key []byte
	sum [sha256.Size]byte
}

// digest returns key's SHA-256.
func (k *keyDigests) digest(key []byte) [sha256.Size]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.key) != len(key) || len(key) == 0 || &k.key[0] != &key[0] {
		k.key, k.sum = key, sha256.Sum256(key)
	}
	return k.sum
}

// SubmitResult implements pb.ClientServiceServer.
func (s *clientService) SubmitResult(ctx context.Context, req *pb.SubmitResultRequest) (*pb.SubmitResultResponse, error) {
	r, err := resultFromProto(req)
	if err != nil {
		return nil, toStatus(err)
	}
	dup, err := s.srv.SubmitResult(ctx, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SubmitResultResponse{Duplicate: dup}, nil
}
