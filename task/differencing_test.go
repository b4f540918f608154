package task_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/task"
)

func TestCheckDifference(t *testing.T) {
	set := func(pairs ...string) task.ContributorSet {
		var s task.ContributorSet
		for i := 0; i+1 < len(pairs); i += 2 {
			s.IDs = append(s.IDs, pairs[i])
			s.Digests = append(s.Digests, pairs[i+1])
		}
		return s
	}
	prev := set("a", "a1", "b", "b1", "c", "c1")
	cases := []struct {
		name string
		s    task.ContributorSet
		min  int
		want string // "" passes
	}{
		{"the very same contributions, in another order", set("c", "c1", "a", "a1", "b", "b1"), 2, ""},
		{"the same clients, fresh ciphertexts", set("a", "a2", "b", "b2", "c", "c2"), 2, ""},
		{"one client fewer", set("a", "a2", "b", "b2"), 2, "by 1 clients"},
		{"one client more", set("a", "a2", "b", "b2", "c", "c2", "d", "d2"), 2, "by 1 clients"},
		{"one client swapped: a difference of two", set("a", "a2", "b", "b2", "d", "d2"), 2, ""},
		{"one client swapped under a minimum of three", set("a", "a2", "b", "b2", "d", "d2"), 3, "by 2 clients"},
		{"a new cohort", set("d", "d2", "e", "e2", "f", "f2"), 3, ""},
		{"a contribution summed again with others", set("a", "a1", "d", "d2", "e", "e2", "f", "f2"), 2, "summed before"},
		{"ids only, one fewer", task.ContributorSet{IDs: []string{"a", "b"}}, 2, "by 1 clients"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := task.CheckDifference(tc.s, prev, tc.min)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, task.ErrDifferencing)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestContributionStatementBindsRunRoundAndPurpose(t *testing.T) {
	d := []byte{1, 2, 3}
	base := task.ContributionStatement("r", 1, task.KindTrain, d)
	for _, other := range [][][]byte{
		task.ContributionStatement("r2", 1, task.KindTrain, d),
		task.ContributionStatement("r", 2, task.KindTrain, d),
		task.ContributionStatement("r", 1, task.KindEvaluate, d),
		task.ContributionStatement("r", 1, task.KindTrain, []byte{1, 2, 4}),
	} {
		assert.NotEqual(t, base, other)
	}
}
