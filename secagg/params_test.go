package secagg

import (
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultParams(t *testing.T) {
	p := testParams(t)
	assert.Equal(t, 2048, p.Slots())
	assert.Equal(t, 0, p.CiphertextsFor(0))
	assert.Equal(t, 1, p.CiphertextsFor(2000))
	assert.Equal(t, 1, p.CiphertextsFor(2048))
	assert.Equal(t, 3, p.CiphertextsFor(5000))
	assert.InDelta(t, math.Exp2(45), p.MaxAbsValue(), math.Exp2(40))
	assert.InDelta(t, p.MaxAbsValue()/100, p.MaxAbsPerContribution(100), 1)
	lit := p.Literal()
	assert.Equal(t, DefaultParamsLiteral(), lit)
	lit.LogQ[0] = 1
	assert.Equal(t, 55, p.Literal().LogQ[0], "Literal returns a copy")
}

func TestNewParamsRejects(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*ParamsLiteral)
	}{
		{"ring too large", func(l *ParamsLiteral) { l.LogN = 16 }},
		{"ring too small", func(l *ParamsLiteral) { l.LogN = 9 }},
		{"no modulus", func(l *ParamsLiteral) { l.LogQ = nil }},
		{"modulus over 58 bits", func(l *ParamsLiteral) { l.LogQ = []int{60, 40} }},
		{"above the 128-bit bound", func(l *ParamsLiteral) { l.LogQ = []int{55, 55} }},
		{"no headroom above the scale", func(l *ParamsLiteral) { l.LogQ, l.LogDefaultScale = []int{50}, 50 }},
		{"big.Float encoder", func(l *ParamsLiteral) { l.EncoderPrecision = 64 }},
		{"smudging above 2^22", func(l *ParamsLiteral) { l.SmudgingSigma = 1 << 23 }},
		{"smudging too small", func(l *ParamsLiteral) { l.SmudgingSigma = 100 }},
		{"smudging NaN", func(l *ParamsLiteral) { l.SmudgingSigma = math.NaN() }},
		{"release grid finer than the noise", func(l *ParamsLiteral) { l.LogDecodePrecision = 40 }},
		{"negative release grid", func(l *ParamsLiteral) { l.LogDecodePrecision = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lit := DefaultParamsLiteral()
			tc.modify(&lit)
			_, err := NewParams(lit)
			assert.ErrorIs(t, err, ErrInvalidParams)
		})
	}
}

// TestOtherModuliChain runs a three-modulus chain end to end: it takes lattigo's generic
// decoding path instead of the two-modulus CRT.
func TestOtherModuliChain(t *testing.T) {
	lit := ParamsLiteral{LogN: 13, LogQ: []int{55, 54, 54}, LogDefaultScale: 62, LogDecodePrecision: 29}
	p, err := NewParams(lit)
	require.NoError(t, err)
	assert.Equal(t, 4096, p.Slots())
	c := setupCommittee(t, p, 3, 2, 70)
	vectors := randomVectors(mrand.New(mrand.NewPCG(8, 8)), 5, 5000, 1e3)
	got := c.decrypt(t, encryptAndSum(t, p, c.publicKey, vectors), []int{1, 3})
	diff, _ := maxAbsDiff(got, plainSum(vectors))
	assert.Less(t, diff, 1e-8)
}

func TestEncryptRefusesValuesThatCouldWrap(t *testing.T) {
	p := testParams(t)
	c := setupCommittee(t, p, 2, 2, 80)
	enc, err := NewEncryptor(p, c.publicKey, nil)
	require.NoError(t, err)
	tests := []struct {
		name    string
		values  []float64
		wantErr error
	}{
		{"empty", nil, ErrLengthMismatch},
		{"NaN", []float64{1, math.NaN()}, ErrValueOutOfRange},
		{"+Inf", []float64{math.Inf(1)}, ErrValueOutOfRange},
		{"-Inf", []float64{math.Inf(-1)}, ErrValueOutOfRange},
		{"beyond the bound", []float64{0, -2 * p.MaxAbsValue()}, ErrValueOutOfRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := enc.Encrypt(tc.values)
			assert.ErrorIs(t, err, tc.wantErr)
		})
	}

	t.Run("sums up to the bound decode", func(t *testing.T) {
		per := p.MaxAbsPerContribution(4)
		vectors := [][]float64{{per, -per, 0.5, -1e-9}, {per, -per, 0.25, 3}, {per, -per, 1, 0}, {per, -per, 0, 0}}
		got := c.decrypt(t, encryptAndSum(t, p, c.publicKey, vectors), []int{1, 2})
		want := plainSum(vectors)
		for i := range want {
			assert.InDelta(t, want[i], got[i], 1e-13*p.MaxAbsValue()+1e-9, "value %d", i)
		}
	})
}
