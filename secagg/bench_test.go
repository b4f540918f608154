package secagg

import (
	"math"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/floats"
)

// What BENCHMARKS.md records, for 100 clients x 2,000 parameters, under each parameter set
// (sub-benchmarks simulation and key-recovery):
//
//	BenchmarkEncrypt2000             client encode+encrypt, bytes/update and its ratio to float64
//	BenchmarkHomomorphicSum100x2000  coordinator sum of 100 updates, x-plain: ratio to the float64 sum
//	BenchmarkDecryptT6               6 shares + combine + decode
//	BenchmarkSetupN10T6              committee setup N=10, T=6
//
// Run: go test -run='^$' -bench=. -benchmem ./secagg/

const (
	benchClients = 100
	benchLength  = 2000
)

func benchVectors() [][]float64 {
	return randomVectors(mrand.New(mrand.NewPCG(1, 2)), benchClients, benchLength, 1e3)
}

// presets runs bench once per parameter set.
func presets(b *testing.B, bench func(b *testing.B, p Params)) {
	for _, name := range []string{PresetSimulation, PresetKeyRecovery} {
		b.Run(name, func(b *testing.B) {
			lit, err := PresetLiteral(name)
			require.NoError(b, err)
			p, err := NewParams(lit)
			require.NoError(b, err)
			bench(b, p)
		})
	}
}

func BenchmarkEncrypt2000(b *testing.B) { presets(b, benchEncrypt) }

func benchEncrypt(b *testing.B, p Params) {
	c := setupCommittee(b, p, 3, 2, 1)
	enc, err := NewEncryptor(p, c.publicKey, nil)
	require.NoError(b, err)
	values := benchVectors()[0]
	var size int
	for b.Loop() {
		ct, err := enc.Encrypt(values)
		if err != nil {
			b.Fatal(err)
		}
		size = len(ct)
	}
	b.ReportMetric(float64(size), "bytes/update")
	b.ReportMetric(float64(size)/float64(8*benchLength), "x-plaintext-bytes")
}

// plainSum100 is the plaintext baseline: the coordinator's sum in `none` mode, with gonum's
// (SIMD) floats.Add.
func plainSum100(acc []float64, vectors [][]float64) {
	clear(acc)
	for _, v := range vectors {
		floats.Add(acc, v)
	}
}

func BenchmarkPlainSum100x2000(b *testing.B) {
	vectors := benchVectors()
	acc := make([]float64, benchLength)
	for b.Loop() {
		plainSum100(acc, vectors)
	}
}

// BenchmarkHomomorphicSum100x2000 measures what the coordinator does per round: empty its
// running sum, add 100 updates from their wire bytes, and marshal the aggregate into its
// buffer. Its x-plain metric is the ratio to the plaintext baseline, both timed interleaved in
// the same run and each taken as the best of 25, so that load from other processes on the
// machine affects both alike.
func BenchmarkHomomorphicSum100x2000(b *testing.B) { presets(b, benchHomomorphicSum) }

func benchHomomorphicSum(b *testing.B, p Params) {
	c := setupCommittee(b, p, 3, 2, 1)
	enc, err := NewEncryptor(p, c.publicKey, nil)
	require.NoError(b, err)
	vectors := benchVectors()
	updates := make([][]byte, len(vectors))
	for i, v := range vectors {
		updates[i], err = enc.Encrypt(v)
		require.NoError(b, err)
	}
	sum, err := NewSum(p, c.publicKey, benchLength)
	require.NoError(b, err)
	var aggregate []byte
	round := func() {
		sum.Reset()
		for _, u := range updates {
			if err := sum.Add(u); err != nil {
				b.Fatal(err)
			}
		}
		if aggregate, err = sum.AppendBinary(aggregate[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		round()
	}
	b.StopTimer()

	acc := make([]float64, benchLength)
	bestPlain, bestHE := math.Inf(1), math.Inf(1)
	for range 25 {
		start := time.Now()
		for range 10 {
			plainSum100(acc, vectors)
		}
		bestPlain = min(bestPlain, float64(time.Since(start).Nanoseconds())/10)
		start = time.Now()
		round()
		bestHE = min(bestHE, float64(time.Since(start).Nanoseconds()))
	}
	b.ReportMetric(bestPlain, "plain-ns/op")
	b.ReportMetric(bestHE, "best-ns/op")
	b.ReportMetric(bestHE/bestPlain, "x-plain")
}

func BenchmarkDecryptT6(b *testing.B) { presets(b, benchDecrypt) }

func benchDecrypt(b *testing.B, p Params) {
	c := setupCommittee(b, p, 10, 6, 1)
	aggregate := encryptAndSum(b, p, c.publicKey, benchVectors())
	active := []int{2, 3, 5, 7, 8, 10}
	for b.Loop() {
		shares := make(map[int][]byte, len(active))
		for _, a := range active {
			c.member(a).decrypted = 0 // the benchmark may run past a key's budget
			s, err := c.member(a).DecryptionShare(aggregate, active)
			if err != nil {
				b.Fatal(err)
			}
			shares[a] = s
		}
		if _, err := CombineDecryption(p, aggregate, active, shares); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetupN10T6(b *testing.B) { presets(b, benchSetup) }

func benchSetup(b *testing.B, p Params) {
	for b.Loop() {
		setupCommittee(b, p, 10, 6, 1)
	}
}
