package secagg

import (
	"crypto/rand"
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// testParams returns the default parameters.
func testParams(tb testing.TB) Params {
	tb.Helper()
	p, err := NewParams(DefaultParamsLiteral())
	require.NoError(tb, err)
	return p
}

// committee is a completed in-process setup: what the members hold and what the coordinator
// saw on the wire.
type committee struct {
	params    Params
	threshold int
	members   []*Member // members[i].Index() == i+1
	crsSeed   []byte
	roster    []Recipient
	pkShares  [][]byte
	boxes     []SealedShare // every box the coordinator relayed
	publicKey []byte
}

// seededReader returns a deterministic randomness source for key material in tests.
func seededReader(seed uint64) *mrand.ChaCha8 {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	return mrand.NewChaCha8(key)
}

// setupCommittee runs both setup rounds for n members with threshold t.
func setupCommittee(tb testing.TB, p Params, n, t int, seed uint64) *committee {
	tb.Helper()
	c := &committee{params: p, threshold: t, crsSeed: make([]byte, 32)}
	_, err := rand.Read(c.crsSeed)
	require.NoError(tb, err)
	agg, err := NewPublicKeyAggregator(p, c.crsSeed)
	require.NoError(tb, err)
	for i := 1; i <= n; i++ {
		m, err := NewMember(p, i, seededReader(seed*1000+uint64(i)))
		require.NoError(tb, err)
		c.members = append(c.members, m)
		c.roster = append(c.roster, Recipient{Index: i, IdentityKey: m.IdentityPublicKey()})
		share, err := m.PublicKeyShare(c.crsSeed)
		require.NoError(tb, err)
		c.pkShares = append(c.pkShares, share)
		got, err := agg.Add(share)
		require.NoError(tb, err)
		require.Equal(tb, i, got)
	}
	c.publicKey, err = agg.PublicKey()
	require.NoError(tb, err)
	const setupID = "setup-1"
	inbox := make(map[int][]SealedShare)
	for _, m := range c.members {
		boxes, err := m.SealedThresholdShares(setupID, t, c.roster)
		require.NoError(tb, err)
		require.Len(tb, boxes, n-1)
		for _, b := range boxes {
			inbox[b.To] = append(inbox[b.To], b)
		}
		c.boxes = append(c.boxes, boxes...)
	}
	for _, m := range c.members {
		require.NoError(tb, m.CombineThresholdShares(setupID, t, c.roster, inbox[m.Index()]))
		require.True(tb, m.Ready())
	}
	return c
}

// member returns the member at Shamir point i.
func (c *committee) member(i int) *Member { return c.members[i-1] }

// decrypt asks the active members for shares and combines them.
func (c *committee) decrypt(tb testing.TB, aggregate []byte, active []int) []float64 {
	tb.Helper()
	shares := make(map[int][]byte, len(active))
	for _, a := range active {
		s, err := c.member(a).DecryptionShare(aggregate, active)
		require.NoError(tb, err)
		shares[a] = s
	}
	out, err := CombineDecryption(c.params, aggregate, active, shares)
	require.NoError(tb, err)
	return out
}

// randomVectors returns count vectors of length n with entries of magnitude up to scale,
// shaped like weighted updates n_i*delta_i.
func randomVectors(r *mrand.Rand, count, n int, scale float64) [][]float64 {
	out := make([][]float64, count)
	for i := range out {
		weight := float64(1 + r.IntN(500))
		out[i] = make([]float64, n)
		for j := range out[i] {
			out[i][j] = weight * scale / 500 * (2*r.Float64() - 1)
		}
	}
	return out
}

func plainSum(vectors [][]float64) []float64 {
	out := make([]float64, len(vectors[0]))
	for _, v := range vectors {
		for j, x := range v {
			out[j] += x
		}
	}
	return out
}

// gridSum is the sum a decryption releases: every value rounded to the release grid, as the
// encoder does, then added.
func gridSum(p Params, vectors [][]float64) []float64 {
	grid := 1 / p.ReleaseGrid()
	out := make([]float64, len(vectors[0]))
	for _, v := range vectors {
		for j, x := range v {
			out[j] += math.Round(x*grid) / grid
		}
	}
	return out
}

// encryptAndSum encrypts every vector with a fresh Encryptor, as separate clients would, and
// returns the aggregate.
func encryptAndSum(tb testing.TB, p Params, publicKey []byte, vectors [][]float64) []byte {
	tb.Helper()
	sum, err := NewSum(p, publicKey, len(vectors[0]))
	require.NoError(tb, err)
	enc, err := NewEncryptor(p, publicKey, nil)
	require.NoError(tb, err)
	for _, v := range vectors {
		ct, err := enc.Encrypt(v)
		require.NoError(tb, err)
		require.NoError(tb, sum.Add(ct))
	}
	require.Equal(tb, len(vectors), sum.Count())
	aggregate, err := sum.MarshalBinary()
	require.NoError(tb, err)
	return aggregate
}

func maxAbsDiff(a, b []float64) (maxDiff, maxAbs float64) {
	for i := range a {
		d := a[i] - b[i]
		if d < 0 {
			d = -d
		}
		maxDiff = max(maxDiff, d)
		x := b[i]
		if x < 0 {
			x = -x
		}
		maxAbs = max(maxAbs, x)
	}
	return maxDiff, maxAbs
}
