package grpctransport

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fedprop/fedprop/task"
)

// TestDPSpecCrossesTheWireWhole: every field of a train task's DP spec survives the proto
// round trip, the record-level step denominator included, so that a client over gRPC trains with
// exactly the plan a simulated one does.
func TestDPSpecCrossesTheWireWhole(t *testing.T) {
	specs := []task.DPSpec{
		{Mechanism: task.DPRecord, ClipNorm: 1, SamplingRate: 0.0708, Steps: 15, NoiseMultiplier: 5.76, Delta: 1e-5, ReferenceRecords: 3617},
		{Mechanism: task.DPRecord, ClipNorm: 0.5, SamplingRate: 0.05, Steps: 30, NoiseMultiplier: 3.4, Delta: 1e-5},
		{Mechanism: task.DPClient, ClipNorm: 0.3, NoiseMultiplier: 1.1, IndicatorNoiseStd: 2.5, ExpectedContributors: 40, Delta: 1e-6},
	}
	for _, d := range specs {
		assert.Equal(t, d, *dpFromProto(dpToProto(&d)))
	}
	assert.Nil(t, dpFromProto(dpToProto(nil)))
}
