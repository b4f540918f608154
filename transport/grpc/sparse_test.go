package grpctransport

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/task"
)

func TestSparseEncodeDecode(t *testing.T) {
	nan := make([]float64, 40)
	nan[3] = math.NaN()
	tests := []struct {
		name   string
		v      []float64
		sparse bool // whether it goes sparse
		index  []uint32
	}{
		{"a few counts among many bins", append(make([]float64, 50), 2, 0, 0, 1.5, 0, 0, 0, 0, 0, 0, 0, 0, -3), true, []uint32{50, 53, 62}},
		{"a NaN travels, for the coordinator to refuse", nan, true, []uint32{3}},
		{"negative zero is a zero", append(make([]float64, 30), math.Copysign(0, -1), 1), true, []uint32{31}},
		{"all zeros stay plain: sparse they would look like no sum", make([]float64, 100), false, nil},
		{"a dense update stays plain", []float64{1, 2, 3, 0, 5, 6}, false, nil},
		{"empty stays plain", nil, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := task.Result{ClientID: "c", TaskID: "t", RunID: "r", Round: 1, Kind: task.KindEvaluate, Sum: task.Vector{Plain: tt.v}}
			p := resultToProto(r, true)
			require.Equal(t, tt.sparse, p.GetSum().GetSparseIndex() != nil)
			if !tt.sparse {
				assert.Equal(t, tt.v, p.GetSum().GetPlain())
				return
			}
			assert.Equal(t, tt.index, p.GetSum().GetSparseIndex())
			assert.Empty(t, p.GetSum().GetPlain())
			back, err := resultFromProto(p)
			require.NoError(t, err)
			require.Equal(t, len(tt.v), back.Sum.Len())
			plain := make([]float64, len(tt.v))
			require.NoError(t, back.Sum.AddTo(plain))
			for i := range tt.v {
				if math.IsNaN(tt.v[i]) {
					assert.True(t, math.IsNaN(plain[i]))
				} else {
					assert.Equal(t, tt.v[i], plain[i], "position %d", i) // -0 == +0
				}
			}
			assert.Equal(t, p.GetSum(), resultToProto(back, false).GetSum(), "a sparse result is sent on sparse")
		})
	}
}

func TestSparseSumRefused(t *testing.T) {
	tests := []struct {
		name   string
		length int32
		index  []uint32
		values []float64
		field  string // the field the refusal names; sum.sparse_index refusals wrap task.ErrSparse
	}{
		{"no length", 0, []uint32{0}, []float64{1}, "sum.sparse_index"},
		{"negative length", -1, []uint32{0}, []float64{1}, "sum"},
		{"a length beyond the vector limit", maxVectorLen + 1, []uint32{0}, []float64{1}, "sum"},
		{"more indices than values", 10, []uint32{1, 2}, []float64{1}, "sum.sparse_index"},
		{"more values than indices", 10, []uint32{1}, []float64{1, 2}, "sum.sparse_index"},
		{"an index at the length", 10, []uint32{10}, []float64{1}, "sum.sparse_index"},
		{"an index far beyond it", 10, []uint32{math.MaxUint32}, []float64{1}, "sum.sparse_index"},
		{"indices out of order", 10, []uint32{5, 2}, []float64{1, 1}, "sum.sparse_index"},
		{"an index twice", 10, []uint32{2, 2}, []float64{1, 1}, "sum.sparse_index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &pb.SubmitResultRequest{ClientId: "c", TaskId: "t", RunId: "r", Round: 1, Kind: pb.TaskKind_TASK_KIND_EVALUATE,
				Sum: &pb.AggregateVector{Length: tt.length, SparseIndex: tt.index, SparseValue: tt.values}}
			_, err := resultFromProto(req)
			require.ErrorIs(t, err, task.ErrInvalid)
			var perr *coordinator.ProtocolError
			require.ErrorAs(t, err, &perr)
			assert.Equal(t, tt.field, perr.Field)
			if tt.field == "sum.sparse_index" {
				require.ErrorIs(t, err, task.ErrSparse)
			}
		})
	}
	t.Run("sparse values beside plain ones", func(t *testing.T) {
		req := &pb.SubmitResultRequest{ClientId: "c", TaskId: "t", RunId: "r", Round: 1, Kind: pb.TaskKind_TASK_KIND_EVALUATE,
			Sum: &pb.AggregateVector{Length: 3, Plain: []float64{1, 0, 0}, SparseIndex: []uint32{0}, SparseValue: []float64{1}}}
		_, err := resultFromProto(req)
		require.ErrorIs(t, err, task.ErrInvalid)
	})
}

// evaluationResult is what one small client's evaluate task returns, as client.Session builds
// it: the evaluation sums of its rows at the coordinator's default 2,000 bins, then the same
// per group of two sensitive attributes (six groups).
func evaluationResult(t *testing.T, rng *rand.Rand, rows int, layout fairness.Layout) ([]float64, []float64, []float64) {
	t.Helper()
	scores, labels := make([]float64, rows), make([]float64, rows)
	groups := make([][]string, rows)
	for i := range rows {
		scores[i] = 1 / (1 + math.Exp(-(rng.NormFloat64()*1.5 - 2))) // crowded below 0.2, as propensities are
		if rng.Float64() < scores[i] {
			labels[i] = 1
		}
		groups[i] = []string{layout.Attributes[0].Groups[rng.IntN(3)], layout.Attributes[1].Groups[rng.IntN(3)]}
	}
	ev := metrics.NewEvalSums(metrics.DefaultBins)
	ev.AddScores(scores, labels)
	gs := fairness.NewGroupSums(layout)
	require.NoError(t, gs.AddScores(scores, labels, groups))
	return append(ev.Vector(), gs.Vector()...), scores, labels
}

// The compact form of an evaluation result: a client of 15 held-out rows sends a vector of
// 28,047 values of which at most a few hundred are not zero. Sent sparse it is a small
// fraction of its plain size, it decodes to exactly the plain vector, and so the AUC the
// coordinator computes from the summed histograms is exactly the plain one's, whose distance
// to the exact AUC of every row is within the histograms' own bound (metrics.AUCErrorBound):
// the encoding adds no error of its own.
func TestCompactEvaluationResult(t *testing.T) {
	layout := fairness.Layout{Thresholds: []float64{0.5}, Bins: metrics.DefaultBins, Attributes: []fairness.Attribute{
		{Name: "age", Groups: []string{"<30", "30-60", ">=60"}}, {Name: "gender", Groups: []string{"female", "male", "<other>"}}}}
	require.NoError(t, layout.Validate())
	tests := []struct {
		name          string
		clients, rows int
		maxRatio      float64 // sparse bytes / plain bytes, at most
	}{
		{"app-sized clients", 200, 15, 0.02},
		{"branch-sized clients", 40, 400, 0.25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(tt.rows)))
			n := metrics.VectorLen(metrics.DefaultBins) + layout.VectorLen()
			plainSum, sparseSum := make([]float64, n), make([]float64, n)
			var allScores, allLabels []float64
			var plainBytes, sparseBytes int
			for c := range tt.clients {
				v, scores, labels := evaluationResult(t, rng, tt.rows, layout)
				allScores, allLabels = append(allScores, scores...), append(allLabels, labels...)
				r := task.Result{ClientID: "c", TaskID: "t", RunID: "r", Round: 1, Kind: task.KindEvaluate, Sum: task.Vector{Plain: v}}
				plain, sparse := resultToProto(r, false), resultToProto(r, true)
				require.NotEmpty(t, sparse.GetSum().GetSparseIndex(), "client %d", c)
				require.Empty(t, sparse.GetSum().GetPlain())
				plainBytes += proto.Size(plain)
				sparseBytes += proto.Size(sparse)

				back, err := resultFromProto(sparse)
				require.NoError(t, err)
				require.Equal(t, task.Result{ClientID: "c", TaskID: "t", RunID: "r", Round: 1, Kind: task.KindEvaluate},
					task.Result{ClientID: back.ClientID, TaskID: back.TaskID, RunID: back.RunID, Round: back.Round, Kind: back.Kind})
				require.Equal(t, len(v), back.Sum.Len())
				decoded := make([]float64, len(v))
				require.NoError(t, back.Sum.AddTo(decoded))
				require.True(t, slices.Equal(v, decoded), "the sparse form holds the vector the client made")
				require.NoError(t, back.Sum.AddTo(sparseSum), "summed as the coordinator does, without its zeros")
				for i := range v {
					plainSum[i] += v[i]
				}
			}
			assert.LessOrEqual(t, float64(sparseBytes)/float64(plainBytes), tt.maxRatio, "%d bytes sparse, %d plain", sparseBytes, plainBytes)
			require.True(t, slices.Equal(plainSum, sparseSum), "sums of sparse and plain results are identical")

			ev, err := metrics.EvalSumsFromVector(sparseSum[:metrics.VectorLen(metrics.DefaultBins)], metrics.DefaultBins)
			require.NoError(t, err)
			dense, err := metrics.EvalSumsFromVector(plainSum[:metrics.VectorLen(metrics.DefaultBins)], metrics.DefaultBins)
			require.NoError(t, err)
			assert.Equal(t, dense.Summary(), ev.Summary(), "exactly: the encoding changes no bit")
			exact := metrics.AUC(allScores, allLabels)
			bound := ev.AUCErrorBound()
			assert.LessOrEqual(t, math.Abs(ev.Summary().AUC-exact), bound, "histogram AUC %v, exact %v", ev.Summary().AUC, exact)
			assert.Less(t, bound, 0.005, "2,000 bins keep the binning error small for scores crowded near 0")
			t.Logf("%d clients of %d rows: %d bytes sparse, %d plain (%.4f); AUC %.5f, exact %.5f, bound %.5f",
				tt.clients, tt.rows, sparseBytes, plainBytes, float64(sparseBytes)/float64(plainBytes), ev.Summary().AUC, exact, bound)

			groups, err := fairness.GroupSumsFromVector(layout, sparseSum[metrics.VectorLen(metrics.DefaultBins):])
			require.NoError(t, err)
			for _, g := range groups.Groups {
				assert.LessOrEqual(t, g.Eval.AUCErrorBound(), 0.02, "each group's AUC is as close as its own bins allow")
			}
		})
	}
}
