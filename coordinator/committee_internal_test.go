package coordinator

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/secagg"
)

// TestCommitteeActiveSets: a set is the first T members in committee order that are live and
// neither missed a deadline for the aggregate nor refused it; members that answered without a
// share refuse it for good, members that time out are left out of later sets, and fewer than T
// available leaves the state unchanged.
func TestCommitteeActiveSets(t *testing.T) {
	m, err := newCommittee(SecureAggregationConfig{Mode: SecAggHE, Committee: []string{"a", "b", "c", "d", "e"}, Threshold: 3,
		MinContributors: 2, Parameters: secagg.PresetSimulation})
	require.NoError(t, err)
	st := &SecAggState{}
	m.dec = &decryptState{length: 10, excluded: map[int]bool{}, refused: map[int]bool{}}
	down := map[string]bool{"b": true}
	live := func(id string) bool { return !down[id] }

	ids, points, ok := m.nextSet(st, live)
	require.True(t, ok)
	assert.Equal(t, []string{"a", "c", "d"}, ids)
	assert.Equal(t, []int{1, 3, 4}, points)
	perSet := st.Decrypted
	assert.Positive(t, perSet, "a set's decryptions count against the key")

	// a answers with a share, c without one, d never answers: at the deadline d is excluded
	// and c refuses.
	m.addShare("a", []byte{1})
	m.timedOut([]string{"d"})
	assert.True(t, m.dec.excluded[4])
	assert.True(t, m.dec.refused[3])
	assert.False(t, m.dec.refused[1])

	down["b"] = false
	ids, _, ok = m.nextSet(st, live)
	require.True(t, ok)
	assert.Equal(t, []string{"a", "b", "e"}, ids)
	assert.Equal(t, 2*perSet, st.Decrypted)
	assert.Equal(t, 2, m.dec.attempt)

	// b answers without a share: it refuses; only a and e are left, fewer than T.
	m.addShare("a", []byte{1})
	m.addShare("e", []byte{1})
	assert.Equal(t, []int{2}, m.refusers())
	_, _, ok = m.nextSet(st, live)
	assert.False(t, ok)
	assert.Equal(t, 2*perSet, st.Decrypted, "no set, no decryption counted")
}
