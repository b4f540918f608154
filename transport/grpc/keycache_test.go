package grpctransport

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/task"
)

// scriptedPolls answers PollTask with the next task of its script and records what each
// request said the client holds.
type scriptedPolls struct {
	pb.ClientServiceClient
	script []*pb.Task
	held   [][]byte
}

func (s *scriptedPolls) PollTask(_ context.Context, req *pb.PollTaskRequest, _ ...grpc.CallOption) (*pb.PollTaskResponse, error) {
	s.held = append(s.held, req.GetHeldPublicKeySha256())
	t := s.script[0]
	s.script = s.script[1:]
	return &pb.PollTaskResponse{Task: t}, nil
}

// A client keeps the collective public key it was sent, says so in its next poll, and puts the
// key back into a task the coordinator sent without it; a key it does not hold, or a digest
// that does not match the key sent, is refused, and the client then asks for the key in full.
func TestClientHoldsTheCollectiveKey(t *testing.T) {
	k1, k2 := []byte("collective key of setup 1"), []byte("collective key of setup 2")
	s1, s2 := sha256.Sum256(k1), sha256.Sum256(k2)
	full := func(key []byte, sum [32]byte) *pb.Task {
		return &pb.Task{Id: "t", RunId: "r", Kind: pb.TaskKind_TASK_KIND_TRAIN, PublicKey: key, PublicKeySha256: sum[:]}
	}
	without := func(sum [32]byte) *pb.Task {
		return &pb.Task{Id: "t", RunId: "r", Kind: pb.TaskKind_TASK_KIND_TRAIN, PublicKeySha256: sum[:]}
	}
	tests := []struct {
		name  string
		reply *pb.Task
		held  []byte // what the poll says the client holds
		key   []byte // the task's key as the session sees it
		err   error
	}{
		{"the first task brings the key", full(k1, s1), nil, k1, nil},
		{"the next leaves it out", without(s1), s1[:], k1, nil},
		{"an older coordinator sends no digest", &pb.Task{Id: "t", RunId: "r", Kind: pb.TaskKind_TASK_KIND_TRAIN, PublicKey: k1}, s1[:], k1, nil},
		{"a new setup brings a new key", full(k2, s2), s1[:], k2, nil},
		{"which is held from then on", without(s2), s2[:], k2, nil},
		{"a key left out that the client does not hold", without(s1), s2[:], nil, ErrKeyNotHeld},
		{"after which the client asks for it in full", full(k1, s1), nil, k1, nil},
		{"a digest that is not the key's", full(k2, s1), s1[:], nil, task.ErrInvalid},
		{"a refused digest leaves the held key alone", without(s1), s1[:], k1, nil},
	}
	fake := &scriptedPolls{}
	for _, tt := range tests {
		fake.script = append(fake.script, tt.reply)
	}
	c := &Client{rpc: fake}
	for i, tt := range tests {
		got, ok, err := c.PollTask(context.Background(), "c", time.Second)
		assert.Equal(t, tt.held, fake.held[i], "%s: what the poll said it holds", tt.name)
		if tt.err != nil {
			require.ErrorIs(t, err, tt.err, tt.name)
			continue
		}
		require.NoError(t, err, tt.name)
		require.True(t, ok)
		assert.Equal(t, tt.key, got.PublicKey, tt.name)
	}
}
