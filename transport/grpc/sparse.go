package grpctransport

import (
	"fmt"
	"math"

	"github.com/fedprop/fedprop/task"
)

// sparseEncode returns the positions and values of v's non-zero entries when sending them
// that way is at most half the size of sending v in plain (an index costs at most 4 bytes of
// varint below maxVectorLen, a value 8), and ok=false otherwise. A NaN counts as non-zero, so
// that the coordinator sees and refuses it exactly as in plain; a vector of zeros alone stays
// plain, since on the wire its sparse form would look like no sum at all.
func sparseEncode(v []float64) (index []uint32, values []float64, ok bool) {
	if len(v) == 0 || len(v) > maxVectorLen {
		return nil, nil, false
	}
	nonzero := 0
	for _, x := range v {
		if x != 0 || math.IsNaN(x) {
			nonzero++
		}
	}
	if nonzero == 0 || 12*nonzero > 4*len(v) {
		return nil, nil, false
	}
	index, values = make([]uint32, 0, nonzero), make([]float64, 0, nonzero)
	for i, x := range v {
		if x != 0 || math.IsNaN(x) {
			index = append(index, uint32(i))
			values = append(values, x)
		}
	}
	return index, values, true
}

// checkSparse checks a sparse sum as it arrives: as many indices as values, strictly
// increasing and below a length within maxVectorLen. It allocates nothing: the coordinator's
// core adds the values where they belong (task.Vector.AddTo), so a sum of a few bytes cannot
// make it spell out millions of zeros.
func checkSparse(length int, index []uint32, values []float64) error {
	switch {
	case length < 1 || length > maxVectorLen:
		return fmt.Errorf("%w: length %d is outside [1, %d]", task.ErrSparse, length, maxVectorLen)
	case len(index) != len(values):
		return fmt.Errorf("%w: %d indices for %d values", task.ErrSparse, len(index), len(values))
	}
	for k, i := range index {
		if int64(i) >= int64(length) || k > 0 && i <= index[k-1] {
			return fmt.Errorf("%w: index %d (entry %d) is not above the previous one and below the length %d", task.ErrSparse, i, k, length)
		}
	}
	return nil
}
