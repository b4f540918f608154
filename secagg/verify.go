package secagg

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrNotTheSum reports an aggregate that is not the sum of the contributions it is said to
// add up: a coefficient changed, a contribution left out, repeated or swapped. A member that
// gets it refuses to help decrypt.
var ErrNotTheSum = errors.New("secagg: aggregate is not the sum of its contributions")

// SumCheck is a committee member's check that an aggregate is exactly the sum of a list of
// ciphertexts: it re-adds them, one at a time as they arrive, and compares the result with the
// aggregate byte for byte. It holds one accumulator (the aggregate's size) and never a whole
// list of contributions. It is not safe for concurrent use.
//
// # Soundness
//
// The check is exact, not probabilistic. Sum reduces every coefficient to [0, q) before it
// marshals, and the aggregate passes only if it is that same canonical encoding, byte for
// byte: every coefficient of c0 and c1, in every RNS row, equal modulo its prime, and the
// header's count equal to the contributions added. A coordinator that adds a chosen d to one
// coefficient of c1 (what turns decryption shares into a read-out of the key, or of one
// client's update) changes that coefficient and is caught whatever d is. An aggregate that
// leaves out, repeats or swaps a contribution differs from the re-added sum by a whole fresh
// encryption (uniformly random c1 under public-key encryption), which is zero in every
// coefficient with probability about q^-N: it is caught too. The coordinator cannot choose the
// contributions instead: each is bound, by its client's signature over its SHA-256, to the
// run, the round and the purpose it was made for (the caller checks the signatures and the
// digests; this type re-adds). Comparing a random sample of coefficients would not be sound
// against a change of one coefficient (a sample of k of the 2N words per row misses it with
// probability 1-k/2N), so nothing cheaper is offered.
//
// # Cost
//
// A member downloads every contribution (the aggregate's size each: 393 KB for one
// ciphertext of the default parameters, 131 KB under KeyRecoveryParamsLiteral), hashes it and
// adds it; Add streams the words at memory speed, as the coordinator's own Sum does. Measured
// by client.BenchmarkMemberVerifiesAggregate (2 shared vCPUs, default parameters, download
// not included), the member's whole check, signatures and share log included, is ~5 ms for 10
// contributions (3.9 MB) and ~0.4 s for 1,000 (393 MB: 0.25 s hashing and re-adding, 0.15 s
// verifying certificates and signatures). It is linear in the contributions and every member
// of the active set pays it: an app cohort of 10,000 contributions is ~3.9 GB to fetch per
// member per aggregate, which is why app-scale aggregation wants regional sums that members
// check level by level, or masking, rather than this check at the root.
type SumCheck struct {
	sum  *Sum
	want []byte
	size int
}

// NewSumCheck starts checking aggregate (a Sum's MarshalBinary output, as a decrypt task
// carries it). It refuses an aggregate that does not parse.
func NewSumCheck(p Params, aggregate []byte) (*SumCheck, error) {
	h, _, err := parseCiphertextSet(p, aggregate)
	if err != nil {
		return nil, err
	}
	return &SumCheck{sum: newSum(p, h.keyID, h.length), want: aggregate, size: len(aggregate)}, nil
}

// Size is the exact size in bytes of each contribution of the aggregate: a client's
// ciphertext of the aggregate's length has the aggregate's size.
func (c *SumCheck) Size() int { return c.size }

// Add re-adds one contribution. It refuses (ErrNotTheSum) a contribution under another key
// or of another length than the aggregate, and (ErrMalformed) bytes that do not parse or
// claim more than one contribution.
func (c *SumCheck) Add(ciphertext []byte) error {
	err := c.sum.Add(ciphertext)
	if errors.Is(err, ErrKeyMismatch) || errors.Is(err, ErrLengthMismatch) {
		return fmt.Errorf("%w: %w", ErrNotTheSum, err)
	}
	return err
}

// Count is the number of contributions re-added so far.
func (c *SumCheck) Count() int { return c.sum.Count() }

// Verify reports, with ErrNotTheSum, an aggregate that differs from the sum of the
// contributions added, naming the first differing byte. It may be called once, after the
// last Add.
func (c *SumCheck) Verify() error {
	got, err := c.sum.AppendBinary(make([]byte, 0, c.size))
	if err != nil {
		return err
	}
	if bytes.Equal(got, c.want) {
		return nil
	}
	i := 0
	for i < len(got) && i < len(c.want) && got[i] == c.want[i] {
		i++
	}
	if i < ciphertextHeaderSize {
		return fmt.Errorf("%w: the header differs at byte %d (the aggregate claims %d contributions, %d were added)",
			ErrNotTheSum, i, c.claimed(), c.sum.Count())
	}
	word := (i - ciphertextHeaderSize) / 8
	return fmt.Errorf("%w: coefficient word %d (byte %d) differs", ErrNotTheSum, word, i)
}

// claimed is the contribution count the aggregate's header states.
func (c *SumCheck) claimed() int {
	h, _, err := parseCiphertextSet(c.sum.params, c.want)
	if err != nil {
		return -1
	}
	return h.count
}
