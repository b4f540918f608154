package secagg

import (
	"encoding/binary"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSumRefusesWhatItCannotAdd(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 3, 2, 90)
	stranger := setupCommittee(t, p, 3, 2, 91)
	r := mrand.New(mrand.NewPCG(9, 9))
	encrypt := func(pk []byte, n int) []byte {
		enc, err := NewEncryptor(p, pk, nil)
		require.NoError(t, err)
		ct, err := enc.Encrypt(randomVectors(r, 1, n, 1)[0])
		require.NoError(t, err)
		return ct
	}
	sum, err := NewSum(p, c.publicKey, 100)
	require.NoError(t, err)
	good := encrypt(c.publicKey, 100)
	require.NoError(t, sum.Add(good))

	unreduced := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(unreduced[len(unreduced)-8:], 1<<63)

	tests := []struct {
		name    string
		add     func() error
		wantErr error
	}{
		{"another public key", func() error { return sum.Add(encrypt(stranger.publicKey, 100)) }, ErrKeyMismatch},
		{"another length", func() error { return sum.Add(encrypt(c.publicKey, 99)) }, ErrLengthMismatch},
		{"a coefficient beyond its modulus", func() error { return sum.Add(unreduced) }, ErrMalformed},
		{"a public key", func() error { return sum.Add(c.publicKey) }, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, err := sum.MarshalBinary()
			require.NoError(t, err)
			require.ErrorIs(t, tc.add(), tc.wantErr)
			after, err := sum.MarshalBinary()
			require.NoError(t, err)
			assert.Equal(t, before, after, "a refused add leaves the sum unchanged")
		})
	}

	t.Run("an update claiming two contributions (a partial sum belongs in Merge)", func(t *testing.T) {
		two := append([]byte(nil), good...)
		binary.LittleEndian.PutUint32(two[28:32], 2)
		assert.ErrorIs(t, sum.Add(two), ErrMalformed)
	})
}

func TestSumsMergeRestoreAndReset(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 3, 2, 100)
	vectors := randomVectors(mrand.New(mrand.NewPCG(10, 10)), 9, 3000, 1e3)
	enc, err := NewEncryptor(p, c.publicKey, nil)
	require.NoError(t, err)
	updates := make([][]byte, len(vectors))
	for i, v := range vectors {
		updates[i], err = enc.Encrypt(v)
		require.NoError(t, err)
	}

	// Two regional aggregators and a coordinator that restarts in between.
	regionA, err := NewSum(p, c.publicKey, 3000)
	require.NoError(t, err)
	regionB, err := NewSum(p, c.publicKey, 3000)
	require.NoError(t, err)
	for i, u := range updates {
		if i%2 == 0 {
			require.NoError(t, regionA.Add(u))
		} else {
			require.NoError(t, regionB.Add(u))
		}
	}
	partA, err := regionA.MarshalBinary()
	require.NoError(t, err)
	partB, err := regionB.MarshalBinary()
	require.NoError(t, err)

	coordinator, err := NewSum(p, c.publicKey, 3000)
	require.NoError(t, err)
	require.NoError(t, coordinator.Merge(partA))
	persisted, err := coordinator.MarshalBinary()
	require.NoError(t, err)
	restarted, err := UnmarshalSum(p, persisted)
	require.NoError(t, err)
	require.NoError(t, restarted.Merge(partB))
	assert.Equal(t, 9, restarted.Count())
	assert.Equal(t, 3000, restarted.Length())
	merged, err := restarted.MarshalBinary()
	require.NoError(t, err)

	direct, err := NewSum(p, c.publicKey, 3000)
	require.NoError(t, err)
	for _, u := range updates {
		require.NoError(t, direct.Add(u))
	}
	straight, err := direct.MarshalBinary()
	require.NoError(t, err)
	assert.Equal(t, straight, merged, "the sum does not depend on how it was split")

	got := setupDecrypt(t, c, merged, []int{1, 2})
	diff, _ := maxAbsDiff(got, plainSum(vectors))
	assert.Less(t, diff, 1e-8)

	direct.Reset()
	assert.Equal(t, 0, direct.Count())
	empty, err := direct.MarshalBinary()
	require.NoError(t, err)
	restored, err := UnmarshalSum(p, empty)
	require.NoError(t, err)
	assert.Equal(t, 0, restored.Count())
	assert.ErrorIs(t, restored.Merge(empty), ErrMalformed, "an empty partial sum counts nothing")
}

func setupDecrypt(t *testing.T, c *committee, aggregate []byte, active []int) []float64 {
	t.Helper()
	return c.decrypt(t, aggregate, active)
}

// TestSumLazyReduction adds far more ciphertexts than the accumulator holds before it must
// reduce, and checks every coefficient against modular arithmetic.
func TestSumLazyReduction(t *testing.T) {
	p := testParams(t)
	r := mrand.New(mrand.NewPCG(11, 11))
	keyID := [8]byte{1}
	sum := newSum(p, keyID, 1)
	moduli := p.he.Q()
	n := p.he.N()
	const distinct, adds = 3, 700
	require.Greater(t, adds, sum.maxPending)
	cts := make([][]byte, distinct)
	for i := range cts {
		cts[i] = make([]byte, p.ciphertextSetSize(1))
		body := putCiphertextHeader(cts[i], p, ciphertextHeader{keyID: keyID, length: 1, count: 1})
		for w := 0; 8*w < len(body); w++ {
			q := moduli[(w/n)%len(moduli)]
			v := r.Uint64N(q)
			if w%97 == 0 {
				v = q - 1 // the largest canonical word
			}
			binary.LittleEndian.PutUint64(body[8*w:], v)
		}
	}
	for i := range adds {
		require.NoError(t, sum.Add(cts[i%distinct]))
	}
	out, err := sum.MarshalBinary()
	require.NoError(t, err)
	body := out[ciphertextHeaderSize:]
	for w := 0; 8*w < len(body); w++ {
		q := moduli[(w/n)%len(moduli)]
		var want uint64
		for i := range distinct {
			times := uint64(adds / distinct)
			if i < adds%distinct {
				times++
			}
			v := binary.LittleEndian.Uint64(cts[i][ciphertextHeaderSize+8*w:])
			want = (want + (v%q)*times%q) % q // v < 2^56 and times < 2^8: no overflow
		}
		if got := binary.LittleEndian.Uint64(body[8*w:]); got != want {
			t.Fatalf("word %d: got %d, want %d", w, got, want)
		}
	}
}

func TestAddWordsMatchesGeneric(t *testing.T) {
	r := mrand.New(mrand.NewPCG(12, 12))
	for _, n := range []int{0, 1, 15, 16, 17, 33, 4096, 4099} {
		for _, offset := range []int{0, 1, 3, 8} {
			src := make([]byte, offset+8*n)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			acc := make([]uint64, n)
			for i := range acc {
				acc[i] = r.Uint64()
			}
			want := slices.Clone(acc)
			wantOr := addWordsGeneric(want, src[offset:])
			gotOr := addWords(acc, src[offset:])
			require.Equal(t, want, acc, "n=%d offset=%d", n, offset)
			require.Equal(t, wantOr, gotOr, "n=%d offset=%d", n, offset)
			subWords(acc, src[offset:])
			addWordsGeneric(acc, src[offset:])
			require.Equal(t, want, acc, "subWords undoes addWords")
		}
	}
}
