package explain_test

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/model/explain"
)

// FuzzImportanceSumsFromVector decodes arbitrary vectors (a decrypted aggregate comes from
// outside): it must return an error or sums whose importance computes without panicking.
func FuzzImportanceSumsFromVector(f *testing.F) {
	doc, _ := testModel(f, 1)
	x, err := explain.New(doc)
	require.NoError(f, err)
	features := len(x.Features())
	f.Add(make([]byte, 8*(1+2*features)))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte) {
		v := make([]float64, len(raw)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		s, err := explain.ImportanceSumsFromVector(v, features)
		if err != nil {
			return
		}
		imp, err := x.Importance(s)
		if err == nil {
			require.Len(t, imp, features)
		}
	})
}
