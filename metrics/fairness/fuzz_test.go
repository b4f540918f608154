package fairness_test

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/metrics/fairness"
)

// FuzzGroupSumsFromVector decodes arbitrary vectors (a decrypted aggregate comes from outside):
// it must return an error or sums that report without panicking.
func FuzzGroupSumsFromVector(f *testing.F) {
	l := fairness.Layout{
		Attributes: []fairness.Attribute{{Name: "age", Groups: []string{"<30", ">=30"}}},
		Thresholds: []float64{0.5},
		Bins:       2,
	}
	seed := make([]byte, 8*l.VectorLen())
	f.Add(seed)
	f.Add(seed[:8])
	f.Fuzz(func(t *testing.T, raw []byte) {
		v := make([]float64, len(raw)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		g, err := fairness.GroupSumsFromVector(l, v)
		if err != nil {
			return
		}
		require.Len(t, v, l.VectorLen())
		r, err := g.Report()
		require.NoError(t, err)
		p := fairness.Policy{MaxDemographicParityGap: 0.1, MaxEqualOpportunityGap: 0.1}
		_, err = p.Check(r)
		require.NoError(t, err)
	})
}
