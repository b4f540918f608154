package secagg

import (
	"bytes"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewParamsIsBuiltOnce: the same literal gives parameters built once, so that a simulator
// whose 100,000 clients each make an encryptor does not rebuild the NTT tables 100,000 times.
func TestNewParamsIsBuiltOnce(t *testing.T) {
	a, err := NewParams(DefaultParamsLiteral())
	require.NoError(t, err)
	b, err := NewParams(DefaultParamsLiteral())
	require.NoError(t, err)
	assert.Same(t, a.shared, b.shared)
	lit := DefaultParamsLiteral()
	lit.LogDecodePrecision = 20
	c, err := NewParams(lit)
	require.NoError(t, err)
	assert.NotSame(t, a.shared, c.shared, "another literal, other parameters")
	assert.Equal(t, 20, c.Literal().LogDecodePrecision)
}

// TestIdleEncryptorsAreSmall: an Encryptor keeps only its stream and a reference to the
// decoded key its kind share; the working buffers (about 0.8 MB) are taken per Encrypt call.
func TestIdleEncryptorsAreSmall(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 3, 2, 1)
	const n = 500
	encs := make([]*Encryptor, n)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range encs {
		// Each gets its own copy of the key bytes, as clients decoding a task would.
		e, err := NewEncryptor(p, bytes.Clone(c.publicKey), seededReader(uint64(i)))
		require.NoError(t, err)
		_, err = e.Encrypt([]float64{1, 2, 3})
		require.NoError(t, err)
		encs[i] = e
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEncryptor := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	assert.Less(t, perEncryptor, int64(16<<10), "bytes retained per idle encryptor")
	assert.Same(t, encs[0].key, encs[n-1].key, "one decoded key")
	runtime.KeepAlive(encs)
}

func TestEncryptsUnderComparesTheKeyBytes(t *testing.T) {
	p := testParams(t)
	c1 := setupCommittee(t, p, 3, 2, 1)
	c2 := setupCommittee(t, p, 3, 2, 2)
	enc, err := NewEncryptor(p, c1.publicKey, nil)
	require.NoError(t, err)
	assert.True(t, enc.EncryptsUnder(bytes.Clone(c1.publicKey)))
	assert.False(t, enc.EncryptsUnder(c2.publicKey))
	assert.False(t, enc.EncryptsUnder(nil))
}

// TestConcurrentEncryptorsShareScratchSafely: clients encrypting at once on several
// goroutines, each with its own Encryptor of the same key, draw their buffers from one pool;
// their sum still decrypts to the plaintext sum, and a seeded Encryptor repeats its ciphertext.
func TestConcurrentEncryptorsShareScratchSafely(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 3, 2, 1)
	vectors := randomVectors(mrand.New(mrand.NewPCG(3, 4)), 32, 3000, 1e3) // two ciphertexts each
	cts := make([][]byte, len(vectors))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(vectors); i += 4 {
				enc, err := NewEncryptor(p, c.publicKey, seededReader(uint64(i)))
				if err != nil {
					panic(err)
				}
				if cts[i], err = enc.Encrypt(vectors[i]); err != nil {
					panic(err)
				}
			}
		})
	}
	wg.Wait()
	sum, err := NewSum(p, c.publicKey, len(vectors[0]))
	require.NoError(t, err)
	for _, ct := range cts {
		require.NoError(t, sum.Add(ct))
	}
	aggregate, err := sum.MarshalBinary()
	require.NoError(t, err)
	got := c.decrypt(t, aggregate, []int{1, 3})
	diff, _ := maxAbsDiff(got, plainSum(vectors))
	assert.Less(t, diff, 1e-6)

	again, err := NewEncryptor(p, c.publicKey, seededReader(5))
	require.NoError(t, err)
	ct, err := again.Encrypt(vectors[5])
	require.NoError(t, err)
	assert.Equal(t, cts[5], ct, "a seeded encryptor repeats its ciphertext, whatever ran before on the pool")
}
