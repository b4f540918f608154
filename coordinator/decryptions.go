package coordinator

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/fedprop/fedprop/task"
)

// DecryptionRecord is the coordinator's record of one aggregate it asked the committee to
// decrypt: what members' share logs are matched against (`fedprop audit members`), and what
// the coordinator's own retries are built against, so that the members' differencing rules
// (task.CheckDifference) let them through.
type DecryptionRecord struct {
	Round int `json:"round"`
	// Purpose is the kind of sum: stats, train or evaluate.
	Purpose string `json:"purpose"`
	// Digest is the hex SHA-256 of the aggregate (secagg.Digest).
	Digest string `json:"aggregate_sha256"`
	// Contributors are the clients whose results the aggregate sums, in the order of the
	// decrypt task's list.
	Contributors []string `json:"contributors"`
	// ContributionDigests are the hex SHA-256 of their ciphertexts, kept for the current round
	// only: every contribution is signed for its round, so none of another round can return.
	ContributionDigests []string `json:"contribution_sha256,omitempty"`
	// Active are the active sets the committee was asked in, in order.
	Active [][]int `json:"active,omitempty"`
}

// ContributorSet is the record's contributors as the differencing rules see them.
func (r DecryptionRecord) ContributorSet() task.ContributorSet {
	return task.ContributorSet{IDs: r.Contributors, Digests: r.ContributionDigests}
}

// admissible chooses, among a phase's encrypted results in arrival order, those an aggregate
// can sum so that every committee member lets it through: against every aggregate of the
// same purpose decrypted before in the run, the same contributions, or fresh ones of clients
// differing by at least minContributors (task.CheckDifference). It leaves out a result whose
// ciphertext an aggregate of other contributors summed, then, while the set differs from an
// earlier one by fewer than minContributors clients, the latest results of clients in both:
// each of those widens the difference by one. A run of branches that loses one for good
// therefore decrypts minContributors-1 fewer results in the first round without it, and
// then settles on that set. It returns the results kept and the clients left out; kept is
// empty when no subset passes.
func admissible(contribs []heContribution, records []DecryptionRecord, purpose task.Kind, minContributors int) (kept []heContribution, dropped []string) {
	kept = slices.Clone(contribs)
	drop := func(i int) {
		dropped = append(dropped, kept[i].client)
		kept = slices.Delete(kept, i, i+1)
	}
	name := purpose.String()
	for changed := true; changed && len(kept) > 0; {
		changed = false
		for _, rec := range records {
			if rec.Purpose != name || task.CheckDifference(contributorSet(kept), rec.ContributorSet(), minContributors) == nil {
				continue
			}
			reused := make(map[string]bool, len(rec.ContributionDigests))
			for _, d := range rec.ContributionDigests {
				reused[d] = true
			}
			for i := len(kept) - 1; i >= 0; i-- {
				if reused[hex.EncodeToString(kept[i].digest[:])] {
					drop(i)
					changed = true
				}
			}
			err := task.CheckDifference(contributorSet(kept), rec.ContributorSet(), minContributors)
			if err == nil {
				continue
			}
			ids := make(map[string]bool, len(rec.Contributors))
			for _, id := range rec.Contributors {
				ids[id] = true
			}
			for i := len(kept) - 1; i >= 0 && task.CheckDifference(contributorSet(kept), rec.ContributorSet(), minContributors) != nil; i-- {
				if ids[kept[i].client] {
					drop(i)
					changed = true
				}
			}
		}
	}
	for _, rec := range records {
		if rec.Purpose == name && task.CheckDifference(contributorSet(kept), rec.ContributorSet(), minContributors) != nil {
			for _, k := range kept {
				dropped = append(dropped, k.client)
			}
			return nil, dropped
		}
	}
	return kept, dropped
}

// contributorSet is the contributors of kept as the differencing rules see them.
func contributorSet(kept []heContribution) task.ContributorSet {
	s := task.ContributorSet{IDs: make([]string, len(kept)), Digests: make([]string, len(kept))}
	for i, k := range kept {
		s.IDs[i], s.Digests[i] = k.client, hex.EncodeToString(k.digest[:])
	}
	return s
}

// Contributions serves a committee member's FetchContributions: the ciphertexts of the
// aggregate its decrypt task names, in the task's order (see Core.Contributions). The slices
// are shared and must not be changed.
func (s *Server) Contributions(ctx context.Context, q task.ContributionQuery) ([][]byte, error) {
	var (
		out [][]byte
		err error
	)
	if derr := s.do(ctx, func() {
		if s.core == nil {
			err = &ProtocolError{Client: q.ClientID, Run: q.RunID, Round: q.Round, Field: "run_id", Err: fmt.Errorf("%w: no run is active", ErrStale)}
			return
		}
		out, err = s.core.Contributions(q)
	}); derr != nil {
		return nil, derr
	}
	return out, err
}
