package secagg

import (
	"crypto/ecdh"
	"crypto/rand"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// garbageThreshold: a failed decryption decodes to values of the order of Q/scale (~2^45),
// while the true sums here are below 1e4. Anything above 1e6 away is not a decryption.
const garbageThreshold = 1e6

func TestFewerThanThresholdSharesCannotDecrypt(t *testing.T) {
	p := testParams(t)
	tests := []struct {
		name         string
		n, threshold int
	}{
		{"N5T3", 5, 3},
		{"N10T6", 10, 6},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := setupCommittee(t, p, tc.n, tc.threshold, uint64(10+i))
			vectors := randomVectors(mrand.New(mrand.NewPCG(3, uint64(i))), 10, 500, 1e3)
			want := plainSum(vectors)
			aggregate := encryptAndSum(t, p, c.publicKey, vectors)
			h, body, err := parseCiphertextSet(p, aggregate)
			require.NoError(t, err)

			active := make([]int, tc.threshold)
			for j := range active {
				active[j] = j + 1
			}
			shares := make(map[int][]byte)
			for _, a := range active {
				shares[a], err = c.member(a).DecryptionShare(aggregate, active)
				require.NoError(t, err)
			}

			t.Run("the coordinator refuses a set with a share missing", func(t *testing.T) {
				partial := make(map[int][]byte)
				for _, a := range active[1:] {
					partial[a] = shares[a]
				}
				_, err := CombineDecryption(p, aggregate, active, partial)
				assert.ErrorIs(t, err, ErrMissingShare)
			})

			t.Run("T-1 of the T shares decode to garbage", func(t *testing.T) {
				for drop := range active {
					var bodies [][]byte
					for j, a := range active {
						if j != drop {
							bodies = append(bodies, shares[a][decryptionShareHeaderSize:])
						}
					}
					d, err := NewDecryptor(p)
					require.NoError(t, err)
					got, err := d.combine(h, body, bodies)
					require.NoError(t, err)
					diff, _ := maxAbsDiff(got, want)
					assert.Greater(t, diff, garbageThreshold, "without member %d", active[drop])
				}
			})

			t.Run("members refuse an active set of T-1", func(t *testing.T) {
				_, err := c.member(1).DecryptionShare(aggregate, active[:tc.threshold-1])
				assert.ErrorIs(t, err, ErrActiveSet)
			})

			t.Run("T-1 colluders interpolating among themselves decode to garbage", func(t *testing.T) {
				colluders := active[:tc.threshold-1]
				points := make([]mhe.ShamirPublicPoint, len(colluders))
				for j, a := range colluders {
					points[j] = mhe.ShamirPublicPoint(a)
				}
				ks, err := mhe.NewKeySwitchProtocol(p.he, ring.DiscreteGaussian{Sigma: 1 << 20, Bound: 6 << 20})
				require.NoError(t, err)
				level := p.he.MaxLevel()
				ct := hefloat.NewCiphertext(p.he, 1, level)
				_, err = readRows(body[8*p.wordsPerQPoly():], ct.Value[1].Coeffs, p.he.Q(), kindCiphertext)
				require.NoError(t, err)
				var bodies [][]byte
				for _, a := range colluders {
					m := c.member(a)
					cmb := mhe.NewCombiner(*p.he.GetRLWEParameters(), mhe.ShamirPublicPoint(a), points, len(colluders))
					sk := rlwe.NewSecretKey(p.he)
					require.NoError(t, cmb.GenAdditiveShare(points, mhe.ShamirPublicPoint(a), *m.thresholdShare, sk))
					share := ks.AllocateShare(level)
					ks.GenShare(sk, rlwe.NewSecretKey(p.he), ct, &share)
					p.he.RingQ().Reduce(share.Value, share.Value)
					b := make([]byte, 8*p.wordsPerQPoly())
					putRows(b, share.Value.Coeffs)
					bodies = append(bodies, b)
				}
				d, err := NewDecryptor(p)
				require.NoError(t, err)
				got, err := d.combine(h, body, bodies)
				require.NoError(t, err)
				diff, _ := maxAbsDiff(got, want)
				assert.Greater(t, diff, garbageThreshold)
			})
		})
	}
}

func TestCoordinatorStateCannotDecrypt(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 5, 3, 20)
	vectors := randomVectors(mrand.New(mrand.NewPCG(4, 4)), 10, 500, 1e3)
	want := plainSum(vectors)
	aggregate := encryptAndSum(t, p, c.publicKey, vectors)
	h, body, err := parseCiphertextSet(p, aggregate)
	require.NoError(t, err)

	t.Run("the aggregate alone decodes to garbage", func(t *testing.T) {
		d, err := NewDecryptor(p)
		require.NoError(t, err)
		got, err := d.combine(h, body, nil) // c0 alone: decryption under the zero key
		require.NoError(t, err)
		diff, _ := maxAbsDiff(got, want)
		assert.Greater(t, diff, garbageThreshold)
	})

	t.Run("the relayed boxes do not open without a member's key", func(t *testing.T) {
		coordinatorKey, err := ecdh.X25519().GenerateKey(rand.Reader)
		require.NoError(t, err)
		for _, b := range c.boxes {
			from, to := c.roster[b.From-1].IdentityKey, c.roster[b.To-1].IdentityKey
			ctx := shareContext(p, "setup-1", c.threshold, b.From, b.To, from, to)
			for _, peer := range [][]byte{from, to} {
				_, err := openBox(coordinatorKey, peer, ctx, b.Box)
				assert.ErrorIs(t, err, ErrOpen)
			}
		}
	})

	t.Run("shares it received for another aggregate do not decrypt this one", func(t *testing.T) {
		earlier := encryptAndSum(t, p, c.publicKey, randomVectors(mrand.New(mrand.NewPCG(4, 5)), 10, 500, 1e3))
		active := []int{1, 3, 5}
		var bodies [][]byte
		for _, a := range active {
			s, err := c.member(a).DecryptionShare(earlier, active)
			require.NoError(t, err)
			bodies = append(bodies, s[decryptionShareHeaderSize:])
		}
		d, err := NewDecryptor(p)
		require.NoError(t, err)
		got, err := d.combine(h, body, bodies)
		require.NoError(t, err)
		diff, _ := maxAbsDiff(got, want)
		assert.Greater(t, diff, garbageThreshold)
	})
}

func TestSealedSharesOpenOnlyForTheirRecipient(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 4, 3, 30)
	inbox := func(to int) []SealedShare {
		var out []SealedShare
		for _, b := range c.boxes {
			if b.To == to {
				out = append(out, SealedShare{From: b.From, To: b.To, Box: append([]byte(nil), b.Box...)})
			}
		}
		return out
	}
	tests := []struct {
		name    string
		member  int
		setupID string
		t       int
		mutate  func(boxes []SealedShare) []SealedShare
		wantErr error
	}{
		{"intact", 2, "setup-1", 3, func(b []SealedShare) []SealedShare { return b }, nil},
		{"opened by another member", 3, "setup-1", 3, func(b []SealedShare) []SealedShare {
			// Member 3 is handed member 2's boxes, relabelled as its own.
			out := inbox(2)
			for i := range out {
				if out[i].From == 3 {
					out[i].From = 2
				}
				out[i].To = 3
			}
			return out
		}, ErrOpen},
		{"sender swapped", 2, "setup-1", 3, func(b []SealedShare) []SealedShare {
			b[0].From, b[1].From = b[1].From, b[0].From
			return b
		}, ErrOpen},
		{"another setup id", 2, "setup-2", 3, func(b []SealedShare) []SealedShare { return b }, ErrOpen},
		{"another threshold", 2, "setup-1", 2, func(b []SealedShare) []SealedShare { return b }, ErrOpen},
		{"a flipped bit", 2, "setup-1", 3, func(b []SealedShare) []SealedShare {
			b[1].Box[len(b[1].Box)/2] ^= 1
			return b
		}, ErrOpen},
		{"truncated", 2, "setup-1", 3, func(b []SealedShare) []SealedShare {
			b[0].Box = b[0].Box[:10]
			return b
		}, ErrOpen},
		{"delivered to the wrong member", 2, "setup-1", 3, func(b []SealedShare) []SealedShare {
			b[0].To = 4
			return b
		}, ErrMalformed},
		{"a box missing", 2, "setup-1", 3, func(b []SealedShare) []SealedShare { return b[1:] }, ErrMissingShare},
		{"a box twice", 2, "setup-1", 3, func(b []SealedShare) []SealedShare { return append(b, b[0]) }, ErrDuplicate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := c.member(tc.member)
			before, err := m.MarshalBinary()
			require.NoError(t, err)
			err = m.CombineThresholdShares(tc.setupID, tc.t, c.roster, tc.mutate(inbox(tc.member)))
			if tc.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.wantErr)
			}
			after, err := m.MarshalBinary()
			require.NoError(t, err)
			assert.Equal(t, before, after, "the member's key material must not change")
		})
	}
}

func TestMemberRefusesBadDecryptionRequests(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 5, 3, 40)
	aggregate := encryptAndSum(t, p, c.publicKey, randomVectors(mrand.New(mrand.NewPCG(5, 5)), 3, 10, 1))
	fresh, err := NewMember(p, 1, nil)
	require.NoError(t, err)
	tests := []struct {
		name    string
		member  *Member
		active  []int
		wantErr error
	}{
		{"not set up", fresh, []int{1, 2, 3}, ErrNotReady},
		{"too few", c.member(1), []int{1, 2}, ErrActiveSet},
		{"too many", c.member(1), []int{1, 2, 3, 4}, ErrActiveSet},
		{"not increasing", c.member(1), []int{2, 1, 3}, ErrActiveSet},
		{"repeated", c.member(1), []int{1, 1, 3}, ErrActiveSet},
		{"without the member", c.member(1), []int{2, 3, 4}, ErrActiveSet},
		{"not a committee member", c.member(1), []int{1, 2, 9}, ErrActiveSet},
		{"point zero", c.member(1), []int{0, 1, 2}, ErrActiveSet},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.member.DecryptionShare(aggregate, tc.active)
			assert.ErrorIs(t, err, tc.wantErr)
		})
	}

	t.Run("the contribution count is there to check before helping", func(t *testing.T) {
		info, err := InspectAggregate(p, aggregate)
		require.NoError(t, err)
		assert.Equal(t, 3, info.Contributions)
		assert.Equal(t, 10, info.Length)
		assert.Equal(t, Digest(aggregate), info.Digest)
		assert.Len(t, info.Digest, 64)
	})
}

func TestDecryptRefusesMismatchedShares(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 5, 3, 50)
	r := mrand.New(mrand.NewPCG(6, 6))
	aggregate := encryptAndSum(t, p, c.publicKey, randomVectors(r, 3, 10, 1))
	other := encryptAndSum(t, p, c.publicKey, randomVectors(r, 3, 10, 1))
	active := []int{1, 2, 3}
	sharesFor := func(agg []byte, set []int) map[int][]byte {
		out := make(map[int][]byte)
		for _, a := range set {
			s, err := c.member(a).DecryptionShare(agg, set)
			require.NoError(t, err)
			out[a] = s
		}
		return out
	}
	good := sharesFor(aggregate, active)
	tests := []struct {
		name    string
		shares  func() map[int][]byte
		wantErr error
	}{
		{"for another aggregate", func() map[int][]byte {
			s := sharesFor(aggregate, active)
			s[2] = sharesFor(other, active)[2]
			return s
		}, ErrShareMismatch},
		{"for another active set", func() map[int][]byte {
			s := sharesFor(aggregate, active)
			s[3] = sharesFor(aggregate, []int{1, 3, 4})[3]
			return s
		}, ErrShareMismatch},
		{"under another member's name", func() map[int][]byte {
			return map[int][]byte{1: good[1], 2: good[3], 3: good[2]}
		}, ErrShareMismatch},
		{"from outside the set", func() map[int][]byte {
			s := sharesFor(aggregate, active)
			s[4] = good[1]
			return s
		}, ErrShareMismatch},
		{"missing", func() map[int][]byte { return map[int][]byte{1: good[1], 2: good[2]} }, ErrMissingShare},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CombineDecryption(p, aggregate, active, tc.shares())
			assert.ErrorIs(t, err, tc.wantErr)
		})
	}
}
