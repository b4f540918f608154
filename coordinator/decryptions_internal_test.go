package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fedprop/fedprop/task"
)

// TestAdmissibleLeavesOutWhatMembersWouldRefuse: the coordinator builds each aggregate from
// the results the members' differencing rules let through, against every aggregate of the
// purpose decrypted before in the run.
func TestAdmissibleLeavesOutWhatMembersWouldRefuse(t *testing.T) {
	contrib := func(client, ct string) heContribution {
		return heContribution{client: client, digest: sha256.Sum256([]byte(ct)), ciphertext: []byte(ct)}
	}
	record := func(purpose string, cs ...heContribution) DecryptionRecord {
		r := DecryptionRecord{Purpose: purpose}
		for _, c := range cs {
			r.Contributors = append(r.Contributors, c.client)
			r.ContributionDigests = append(r.ContributionDigests, hex.EncodeToString(c.digest[:]))
		}
		return r
	}
	a, b, c, d, e := contrib("a", "a1"), contrib("b", "b1"), contrib("c", "c1"), contrib("d", "d1"), contrib("e", "e1")
	fresh := func(client string) heContribution { return contrib(client, client+"2") }
	ids := func(cs []heContribution) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.client)
		}
		return out
	}
	cases := []struct {
		name     string
		got      []heContribution
		records  []DecryptionRecord
		min      int
		kept     []string
		dropped  []string
		purposed task.Kind
	}{
		{"nothing decrypted before", []heContribution{a, b}, nil, 2, []string{"a", "b"}, nil, task.KindTrain},
		{"one client gone: one more left out", []heContribution{fresh("a"), fresh("b"), fresh("c"), fresh("d")},
			[]DecryptionRecord{record("train", a, b, c, d, e)}, 2, []string{"a", "b", "c"}, []string{"d"}, task.KindTrain},
		{"the same clients, fresh answers", []heContribution{fresh("a"), fresh("b"), fresh("c")},
			[]DecryptionRecord{record("train", a, b, c)}, 2, []string{"a", "b", "c"}, nil, task.KindTrain},
		{"the very same contributions (a new active set)", []heContribution{a, b, c}, []DecryptionRecord{record("train", a, b, c)}, 2, []string{"a", "b", "c"}, nil, task.KindTrain},
		{"a contribution decrypted in another set is left out", []heContribution{a, fresh("d"), fresh("e"), fresh("b")},
			[]DecryptionRecord{record("train", a, b, c)}, 2, []string{"d", "e", "b"}, []string{"a"}, task.KindTrain},
		{"another purpose does not count", []heContribution{fresh("a"), fresh("b")}, []DecryptionRecord{record("evaluate", a, b, c)}, 2,
			[]string{"a", "b"}, nil, task.KindTrain},
		{"one client more: one of the others out", []heContribution{fresh("a"), fresh("b"), fresh("c"), fresh("d")},
			[]DecryptionRecord{record("train", a, b, c)}, 2, []string{"a", "b", "d"}, []string{"c"}, task.KindTrain},
		{"a larger minimum leaves out more", []heContribution{fresh("a"), fresh("b"), fresh("c"), fresh("d")},
			[]DecryptionRecord{record("train", a, b, c, d, e)}, 3, []string{"a", "b"}, []string{"d", "c"}, task.KindTrain},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kept, dropped := admissible(tc.got, tc.records, tc.purposed, tc.min)
			assert.Equal(t, tc.kept, ids(kept))
			assert.Equal(t, tc.dropped, dropped)
			for _, r := range tc.records {
				if r.Purpose == tc.purposed.String() {
					assert.NoError(t, task.CheckDifference(contributorSet(kept), r.ContributorSet(), tc.min), "what is kept passes the members' rule")
				}
			}
		})
	}
}
