package task

import (
	"errors"
	"fmt"
)

// ErrDifferencing reports an aggregate a committee member may not help decrypt after another
// one of the same run and purpose: their contributors differ by fewer than min_contributors
// clients (the difference of the two sums would be the sum of those few), or it adds again a
// contribution that an aggregate of other contributors already summed (a coordinator holding
// a round's results could otherwise decrypt overlapping subsets of them and solve for each).
var ErrDifferencing = errors.New("aggregate too close to one decrypted before")

// ContributorSet is an aggregate's contributors: their client ids and, in the same order, the
// hex SHA-256 of each one's ciphertext (Digests may be nil where they are not kept).
type ContributorSet struct {
	IDs     []string
	Digests []string
}

// CheckDifference reports, wrapping ErrDifferencing, why an aggregate summing s may not be
// decrypted by a member that already helped decrypt one summing prev, with minContributors
// its min_contributors. The very same contributions (a new active set for the same
// aggregate, or a retry the same clients answered with the same ciphertexts) pass, and so do
// the same clients with fresh contributions: the difference of the two sums is then a sum
// over all of them. Both sides apply it: members to what they decrypt, the coordinator to
// what it asks them to.
func CheckDifference(s, prev ContributorSet, minContributors int) error {
	if samePairs(s, prev) {
		return nil
	}
	if len(prev.Digests) > 0 && len(s.Digests) == len(s.IDs) {
		seen := make(map[string]bool, len(prev.Digests))
		for _, d := range prev.Digests {
			seen[d] = true
		}
		for i, d := range s.Digests {
			if seen[d] {
				return fmt.Errorf("%w: the contribution of client %s (sha256 %.12s) was summed before in an aggregate of other contributors",
					ErrDifferencing, s.IDs[i], d)
			}
		}
	}
	ids := make(map[string]bool, len(prev.IDs))
	for _, id := range prev.IDs {
		ids[id] = true
	}
	common := 0
	for _, id := range s.IDs {
		if ids[id] {
			common++
		}
	}
	if d := len(s.IDs) + len(prev.IDs) - 2*common; d > 0 && d < minContributors {
		return fmt.Errorf("%w: its contributors differ from those of an aggregate decrypted before by %d clients, below min_contributors %d",
			ErrDifferencing, d, minContributors)
	}
	return nil
}

// samePairs reports whether s and prev are the same (client, digest) pairs, in any order.
func samePairs(s, prev ContributorSet) bool {
	if len(s.IDs) != len(prev.IDs) || len(s.Digests) != len(s.IDs) || len(prev.Digests) != len(prev.IDs) {
		return false
	}
	pairs := make(map[[2]string]bool, len(prev.IDs))
	for i, id := range prev.IDs {
		pairs[[2]string{id, prev.Digests[i]}] = true
	}
	for i, id := range s.IDs {
		if !pairs[[2]string{id, s.Digests[i]}] {
			return false
		}
	}
	return true
}
