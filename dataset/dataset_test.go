package dataset_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/dataset"
)

func TestSubsetSharesNothing(t *testing.T) {
	d := randomDataset(t, 10, 1)
	sub := d.Subset([]int{7, 2})
	require.Equal(t, 2, sub.Len())
	assert.Equal(t, d.Numeric[7], sub.Numeric[0])
	assert.Equal(t, d.Groups[2], sub.Groups[1])

	before := d.Numeric[7][0]
	sub.Numeric[0][0] = -1
	sub.Category[0][0] = 9
	sub.Groups[0][0] = "changed"
	sub.Label[0] = 42
	sub.Numeric[0] = append(sub.Numeric[0], 5) // cannot spill into the next row either
	assert.Equal(t, before, d.Numeric[7][0])
	assert.NotEqual(t, int32(9), d.Category[7][0])
	assert.NotEqual(t, "changed", d.Groups[7][0])
	assert.NotEqual(t, 42.0, d.Label[7])
	assert.Len(t, sub.Numeric[1], 2)
}

func TestConcat(t *testing.T) {
	a, b := randomDataset(t, 3, 1), randomDataset(t, 4, 2)
	a.ExcludedNoConsent, b.ExcludedNoConsent = 1, 2
	c := dataset.Concat(a, b)
	require.Equal(t, 7, c.Len())
	assert.Equal(t, 3, c.ExcludedNoConsent)
	assert.Equal(t, a.Numeric[2], c.Numeric[2])
	assert.Equal(t, b.Numeric[0], c.Numeric[3])
	assert.Equal(t, b.Label, c.Label[3:])
	assert.Equal(t, 0, dataset.Concat().Len())

	c.Numeric[0][0] = -7
	assert.NotEqual(t, -7.0, a.Numeric[0][0])
}
