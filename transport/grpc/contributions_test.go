package grpctransport

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/task"
)

type chunk struct {
	index int
	data  string
	total int64
}

// TestChunkAssemblerTakesOnlyWhatTheStreamMustBe: contributions in order, each exactly the
// aggregate's size in non-empty chunks; anything else is a protocol error naming the
// contribution.
func TestChunkAssemblerTakesOnlyWhatTheStreamMustBe(t *testing.T) {
	cases := []struct {
		name   string
		chunks []chunk
		want   []string // contributions assembled
		err    string
	}{
		{"whole contributions", []chunk{{0, "abcd", 4}, {1, "efgh", 4}}, []string{"abcd", "efgh"}, ""},
		{"in chunks", []chunk{{0, "ab", 4}, {0, "cd", 4}, {1, "e", 4}, {1, "fgh", 4}}, []string{"abcd", "efgh"}, ""},
		{"out of order", []chunk{{1, "abcd", 4}}, nil, "expected contribution 0"},
		{"a contribution skipped", []chunk{{0, "abcd", 4}, {2, "abcd", 4}}, []string{"abcd"}, "expected contribution 1"},
		{"another size", []chunk{{0, "abcde", 5}}, nil, "of 5 bytes"},
		{"too many bytes", []chunk{{0, "abc", 4}, {0, "de", 4}}, nil, "a chunk of 2 bytes after 3"},
		{"an empty chunk", []chunk{{0, "", 4}}, nil, "a chunk of 0 bytes"},
		{"cut short", []chunk{{0, "abcd", 4}, {1, "ef", 4}}, []string{"abcd"}, "ended 2 bytes into contribution 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := newChunkAssembler(4)
			require.NoError(t, err)
			var got []string
			for _, c := range tc.chunks {
				var ct []byte
				_, ct, err = a.add(c.index, []byte(c.data), c.total)
				if err != nil {
					break
				}
				if ct != nil {
					got = append(got, string(ct))
				}
			}
			if err == nil {
				err = a.finish()
			}
			assert.Equal(t, tc.want, got)
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, task.ErrInvalid)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
	_, err := newChunkAssembler(0)
	require.ErrorIs(t, err, task.ErrInvalid)
	_, err = newChunkAssembler(maxContributionBytes + 1)
	require.ErrorIs(t, err, task.ErrInvalid)
}

// FuzzContributionChunks: whatever chunks a coordinator streams, the member's assembler does
// not panic and hands on only contributions of exactly the size it asked for, in order.
func FuzzContributionChunks(f *testing.F) {
	f.Add(uint8(4), []byte{0, 4, 4, 'a', 'b', 'c', 'd', 1, 4, 2, 'e', 'f', 1, 4, 2, 'g', 'h'})
	f.Add(uint8(3), []byte{0, 3, 9})
	f.Fuzz(func(t *testing.T, size uint8, stream []byte) {
		a, err := newChunkAssembler(int(size))
		if err != nil {
			return
		}
		next := 0
		for len(stream) >= 3 {
			index, total, n := int(stream[0]), int64(stream[1]), int(stream[2])
			stream = stream[3:]
			n = min(n, len(stream))
			got, ct, err := a.add(index, stream[:n], total)
			stream = stream[n:]
			if err != nil {
				return
			}
			if ct != nil {
				if got != next || len(ct) != int(size) {
					t.Fatalf("assembled contribution %d of %d bytes, want %d of %d", got, len(ct), next, size)
				}
				next++
			}
		}
		_ = a.finish()
	})
}

// FuzzFetchContributionsRequest: a member's request decodes to a query only with a client id,
// a run, a round >= 0, a purpose that is a sum and a hex SHA-256.
func FuzzFetchContributionsRequest(f *testing.F) {
	seed, _ := proto.Marshal(&pb.FetchContributionsRequest{ClientId: "branch-1", RunId: "r", Round: 2, Purpose: pb.TaskKind_TASK_KIND_TRAIN,
		AggregateSha256: strings.Repeat("0f", 32)})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.FetchContributionsRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		q, err := contributionQueryFromProto(&req)
		if err != nil {
			return
		}
		if q.ClientID == "" || q.RunID == "" || q.Round < 0 || len(q.AggregateDigest) != 64 ||
			(q.Purpose != task.KindStats && q.Purpose != task.KindTrain && q.Purpose != task.KindEvaluate) {
			t.Fatalf("accepted %+v", q)
		}
	})
}

// TestDecryptTasksCarryTheirContributions: the contributions list crosses the wire intact.
func TestDecryptTasksCarryTheirContributions(t *testing.T) {
	in := task.Task{ID: "d", RunID: "r", Round: 1, Kind: task.KindDecrypt, Decrypt: &task.DecryptSpec{Purpose: task.KindTrain, AggregateRound: 1,
		Contributors: 2, Aggregate: []byte("agg"), Active: []int{1, 2}, Contributions: []task.Contribution{
			{ClientID: "a", Digest: bytes.Repeat([]byte{1}, 32), Endorsement: &task.Endorsement{Certificate: []byte("cert"), Signature: []byte("sig")}},
			{ClientID: "b", Digest: bytes.Repeat([]byte{2}, 32)},
		}}}
	b, err := proto.Marshal(taskToProto(in))
	require.NoError(t, err)
	var p pb.Task
	require.NoError(t, proto.Unmarshal(b, &p))
	out, err := taskFromProto(&p)
	require.NoError(t, err)
	assert.Equal(t, in.Decrypt.Contributions, out.Decrypt.Contributions)
}
