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
	assert.Equal(t, 4096, p.Slots())
	assert.Equal(t, 0, p.CiphertextsFor(0))
	assert.Equal(t, 1, p.CiphertextsFor(2000))
	assert.Equal(t, 1, p.CiphertextsFor(4096))
	assert.Equal(t, 3, p.CiphertextsFor(9000))
	assert.InDelta(t, math.Exp2(48), p.MaxAbsValue(), math.Exp2(43))
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
		{"above the 128-bit bound", func(l *ParamsLiteral) { l.LogQ = []int{55, 55, 55, 55} }},
		{"no headroom above the scale", func(l *ParamsLiteral) { l.LogDefaultScale = 150 }},
		{"big.Float encoder", func(l *ParamsLiteral) { l.EncoderPrecision = 64 }},
		{"smudging above 2^80", func(l *ParamsLiteral) { l.SmudgingSigma = math.Ldexp(1, 81) }},
		{"smudging below the bound", func(l *ParamsLiteral) { l.SmudgingSigma = math.Ldexp(1, 71) }},
		{"smudging NaN", func(l *ParamsLiteral) { l.SmudgingSigma = math.NaN() }},
		{"key-recovery sigma for a simulation guarantee", func(l *ParamsLiteral) { l.SmudgingSigma = KeyRecoveryParamsLiteral().SmudgingSigma }},
		{"unknown guarantee", func(l *ParamsLiteral) { l.Guarantee = "best effort" }},
		{"budget beyond the sigma", func(l *ParamsLiteral) { l.DecryptionBudget = 1 << 20 }},
		{"more contributors than the sigma hides", func(l *ParamsLiteral) { l.MaxContributors = 1 << 20 }},
		{"one-member committee", func(l *ParamsLiteral) { l.MaxCommittee = 1 }},
		{"negative budget", func(l *ParamsLiteral) { l.DecryptionBudget = -1 }},
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

// TestOtherParameterSets runs the key-recovery set and a four-modulus chain end to end.
func TestOtherParameterSets(t *testing.T) {
	for _, lit := range []ParamsLiteral{
		KeyRecoveryParamsLiteral(),
		{LogN: 13, LogQ: []int{50, 50, 50, 50}, LogDefaultScale: 120, LogDecodePrecision: 28},
	} {
		t.Run(lit.String(), func(t *testing.T) {
			p, err := NewParams(lit)
			require.NoError(t, err)
			c := setupCommittee(t, p, 3, 2, 70)
			vectors := randomVectors(mrand.New(mrand.NewPCG(8, 8)), 5, 5000, 1e3)
			got := c.decrypt(t, encryptAndSum(t, p, c.publicKey, vectors), []int{1, 3})
			diff, scale := maxAbsDiff(got, gridSum(p, vectors))
			assert.LessOrEqual(t, diff, 1e-15*scale)
		})
	}
}

// TestPresetsStateTheirGuarantee pins the arithmetic of the two parameter sets: the sigma each
// needs, the security level it gives, and the bound members enforce.
func TestPresetsStateTheirGuarantee(t *testing.T) {
	tests := []struct {
		name                string
		logN, logScale      int
		logSigma, minBits   float64
		guarantee           Guarantee
		maxAbsAtLeast, grid float64
	}{
		{PresetSimulation, 13, 115, 72, SimulationBits, GuaranteeSimulation, 1e14, math.Ldexp(1, -30)},
		{PresetKeyRecovery, 12, 67, 33, 63, GuaranteeKeyRecovery, 1e12, math.Ldexp(1, -20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lit, err := PresetLiteral(tc.name)
			require.NoError(t, err)
			p, err := NewParams(lit)
			require.NoError(t, err)
			assert.Equal(t, lit, p.Literal())
			assert.Equal(t, tc.logN, lit.LogN)
			assert.Equal(t, tc.logScale, lit.LogDefaultScale)
			sec := p.Security()
			assert.Equal(t, tc.guarantee, sec.Guarantee)
			assert.InDelta(t, tc.logSigma, sec.LogSigma, 1e-9)
			assert.GreaterOrEqual(t, sec.Bits, tc.minBits)
			assert.Less(t, sec.Bits, tc.minBits+1.5, "sigma is the smallest power of two that gives the guarantee")
			assert.GreaterOrEqual(t, p.MaxAbsValue(), tc.maxAbsAtLeast)
			assert.InDelta(t, tc.grid, p.ReleaseGrid(), 0)
			assert.Contains(t, sec.String(), string(tc.guarantee))
		})
	}
	_, err := PresetLiteral("strong")
	assert.ErrorIs(t, err, ErrInvalidParams)
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

// TestPresetOfReadsTheKeysParameters: a client learns from a collective key's own header which
// parameter set, and so which guarantee, it carries.
func TestPresetOfReadsTheKeysParameters(t *testing.T) {
	for _, name := range Presets() {
		lit, err := PresetLiteral(name)
		require.NoError(t, err)
		p, err := NewParams(lit)
		require.NoError(t, err)
		c := setupCommittee(t, p, 3, 2, 90)
		got, gp, err := PresetOf(c.publicKey)
		require.NoError(t, err)
		assert.Equal(t, name, got)
		assert.Equal(t, lit, gp.Literal())
	}
	other, err := NewParams(ParamsLiteral{LogN: 13, LogQ: []int{50, 50, 50, 50}, LogDefaultScale: 120, LogDecodePrecision: 28})
	require.NoError(t, err)
	c := setupCommittee(t, other, 3, 2, 91)
	_, _, err = PresetOf(c.publicKey)
	assert.ErrorIs(t, err, ErrParamsMismatch)
	_, _, err = PresetOf([]byte("short"))
	assert.ErrorIs(t, err, ErrMalformed)
}
