package grpctransport

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
)

// FuzzSubmitResult feeds arbitrary bytes through the decoding a coordinator does on a
// SubmitResult request: protobuf unmarshal, then the field checks. Nothing may panic, and an
// accepted request must round-trip.
func FuzzSubmitResult(f *testing.F) {
	seed, _ := proto.Marshal(&pb.SubmitResultRequest{ClientId: "a", TaskId: "t", RunId: "r", Round: 1, Kind: pb.TaskKind_TASK_KIND_TRAIN,
		Sum: &pb.AggregateVector{Plain: []float64{1, 2, 3}}})
	f.Add(seed)
	sparse, _ := proto.Marshal(&pb.SubmitResultRequest{ClientId: "a", TaskId: "t", RunId: "r", Round: 1, Kind: pb.TaskKind_TASK_KIND_EVALUATE,
		Sum: &pb.AggregateVector{Length: 6, SparseIndex: []uint32{1, 4}, SparseValue: []float64{2, 3}}})
	f.Add(sparse)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.SubmitResultRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		r, err := resultFromProto(&req)
		if err != nil {
			return
		}
		back := resultToProto(r, false)
		if back.GetClientId() != req.GetClientId() || back.GetTaskId() != req.GetTaskId() || len(back.GetSum().GetPlain()) != len(req.GetSum().GetPlain()) ||
			len(back.GetSum().GetSparseIndex()) != len(req.GetSum().GetSparseIndex()) {
			t.Fatalf("round trip changed the request: %v -> %v", &req, back)
		}
	})
}

// FuzzTask checks the client's decoding of a task from the coordinator.
func FuzzTask(f *testing.F) {
	seed, _ := proto.Marshal(&pb.Task{Id: "t", RunId: "r", Round: 2, Kind: pb.TaskKind_TASK_KIND_EVALUATE, Weights: []float64{1}, HistogramBins: 10})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var p pb.Task
		if proto.Unmarshal(data, &p) != nil {
			return
		}
		tk, err := taskFromProto(&p)
		if err != nil {
			return
		}
		if tk.ID != p.GetId() || int(tk.Kind) != int(p.GetKind()) {
			t.Fatalf("decoded task differs: %+v vs %v", tk, &p)
		}
	})
}
