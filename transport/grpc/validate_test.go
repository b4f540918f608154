package grpctransport

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedprop/fedprop/pki"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
)

// FuzzCheckRequest feeds arbitrary bytes through what the coordinator does with a request
// before its core sees it: the request codec (which marks what does not parse), the edge's
// field checks, then resultFromProto.
// Nothing may panic; a refusal is InvalidArgument naming a field with the hostile text clipped;
// an accepted request has well-formed ids.
func FuzzCheckRequest(f *testing.F) {
	for _, m := range []proto.Message{
		&pb.SubmitResultRequest{ClientId: "bank-a", TaskId: "run/train/r1/a1/bank-a", RunId: "run", Round: 1, Kind: pb.TaskKind_TASK_KIND_TRAIN,
			Sum: &pb.AggregateVector{Plain: []float64{1, 2, 3}, Length: 3}},
		&pb.SubmitResultRequest{ClientId: "bank-a", TaskId: "t", RunId: "r", Sum: &pb.AggregateVector{Ciphertext: []byte{1}, Length: 9}},
		&pb.SubmitResultRequest{ClientId: strings.Repeat("x", 500), TaskId: "t\x01"},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	codec := requestCodec{encoding.GetCodecV2(protoenc.Name)}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.SubmitResultRequest
		if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, &req); err != nil {
			t.Fatalf("the request codec failed instead of marking the request: %v", err)
		}
		err := unparsed(&req)
		if err == nil {
			err = checkRequest(&req)
		} else if proto.Unmarshal(data, &pb.SubmitResultRequest{}) == nil {
			t.Fatalf("a request that parses was marked unparsed: %v", err)
		}
		if err != nil {
			s, _ := status.FromError(err)
			if s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "field ") {
				t.Fatalf("refusal %v is not InvalidArgument naming a field", s)
			}
			if len(s.Message()) > 1024 {
				t.Fatalf("refusal message of %d bytes echoes hostile input", len(s.Message()))
			}
			return
		}
		if pki.ValidName(req.GetClientId()) != nil || len(req.GetTaskId()) > maxTaskIDLen || !utf8.ValidString(req.GetTaskId()) ||
			req.GetRunId() == "" || req.GetRound() < 0 {
			t.Fatalf("accepted a malformed request: %v", &req)
		}
		if _, err := resultFromProto(&req); err != nil {
			return
		}
	})
}

func TestCheckRequestClipsHostileTextInMessages(t *testing.T) {
	err := checkRequest(&pb.PollTaskRequest{ClientId: strings.Repeat("x", 1<<20)})
	s, ok := status.FromError(err)
	require.True(t, ok)
	assert.Equal(t, codes.InvalidArgument, s.Code())
	assert.Contains(t, s.Message(), "field client_id")
	assert.Contains(t, s.Message(), "1048576 bytes, at most 128")
	assert.Less(t, len(s.Message()), 300, "the message does not echo the hostile id")
}
