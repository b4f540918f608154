package secagg

import (
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNoiseNormBoundHolds measures the secret-dependent noise e = c0 + c1*s - m of real
// aggregates (the committee's secrets are known here) and checks that the bound the flooding
// sigma is sized from holds, and is not loose by more than its stated tail factor.
func TestNoiseNormBoundHolds(t *testing.T) {
	for _, name := range []string{PresetSimulation, PresetKeyRecovery} {
		lit, err := PresetLiteral(name)
		require.NoError(t, err)
		p, err := NewParams(lit)
		require.NoError(t, err)
		const members = 10
		c := setupCommittee(t, p, members, 4, 300)
		ringQ := p.he.RingQ()
		s := ringQ.NewPoly()
		for _, m := range c.members {
			ringQ.Add(s, m.secret.Value.Q, s)
		}
		d := newDecoder(p)
		for _, contributions := range []int{1, 10, 100} {
			aggregate := encryptAndSum(t, p, c.publicKey, make2D(contributions, 16))
			_, body, err := parseCiphertextSet(p, aggregate)
			require.NoError(t, err)
			c0, c1 := ringQ.NewPoly(), ringQ.NewPoly()
			rest, err := readRows(body, c0.Coeffs, p.he.Q(), kindCiphertext)
			require.NoError(t, err)
			_, err = readRows(rest, c1.Coeffs, p.he.Q(), kindCiphertext)
			require.NoError(t, err)
			// The secret is kept in the Montgomery domain, so the product comes out standard.
			ringQ.MulCoeffsMontgomeryThenAdd(c1, s, c0)
			ringQ.INTT(c0, c0)
			var sq float64
			for i := range p.he.N() {
				e := d.lift(c0.Coeffs, i)
				sq += e * e
			}
			measured := math.Sqrt(sq)
			bound := noiseNormBound(lit.LogN, contributions, members)
			t.Logf("%s, %d contributions: ||e|| = 2^%.2f, bound 2^%.2f", name, contributions, math.Log2(measured), math.Log2(bound))
			assert.LessOrEqual(t, measured, bound, "%s, %d contributions", name, contributions)
			assert.GreaterOrEqual(t, measured, bound/math.Sqrt(normTail)/1.2, "%s, %d contributions: the bound is loose", name, contributions)
		}
	}
}

// make2D returns count zero vectors of length n: the phase of their encryption is the noise.
func make2D(count, n int) [][]float64 {
	out := make([][]float64, count)
	for i := range out {
		out[i] = make([]float64, n)
	}
	return out
}

// TestMembersEnforceTheFloodingBound: a member refuses an aggregate of more contributions
// than its flooding noise hides, and any share past the key's decryption budget, and the count
// survives a restart.
func TestMembersEnforceTheFloodingBound(t *testing.T) {
	lit := SimulationParamsLiteral()
	lit.MaxContributors, lit.DecryptionBudget, lit.SmudgingSigma = 2, 3, 0
	p, err := NewParams(lit)
	require.NoError(t, err)
	c := setupCommittee(t, p, 3, 2, 301)
	r := mrand.New(mrand.NewPCG(3, 3))
	active := []int{1, 2}

	tooMany := encryptAndSum(t, p, c.publicKey, randomVectors(r, 3, 10, 1))
	_, err = c.member(1).DecryptionShare(tooMany, active)
	require.ErrorIs(t, err, ErrBeyondBound)
	assert.Zero(t, c.member(1).Decrypted(), "a refused aggregate does not count")

	two := encryptAndSum(t, p, c.publicKey, randomVectors(r, 2, 10, 1))
	for i := range 3 {
		_, err := c.member(1).DecryptionShare(two, active)
		require.NoError(t, err, "share %d", i+1)
	}
	assert.Equal(t, 3, c.member(1).Decrypted())

	raw, err := c.member(1).MarshalBinary()
	require.NoError(t, err)
	restarted, err := UnmarshalMember(p, raw)
	require.NoError(t, err)
	assert.Equal(t, 3, restarted.Decrypted())
	_, err = restarted.DecryptionShare(two, active)
	assert.ErrorIs(t, err, ErrBeyondBound)
	_, err = c.member(2).DecryptionShare(two, active)
	assert.NoError(t, err, "each member counts its own shares")
}
