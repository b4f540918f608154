package secagg

import (
	"math"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// exactResidue is round-half-away-from-zero(x*2^logScale) mod q, computed with big numbers.
func exactResidue(x float64, logScale int, q uint64) uint64 {
	f := new(big.Float).SetPrec(2048).SetFloat64(x)
	f.SetMantExp(f, logScale)
	half := big.NewFloat(0.5)
	if x < 0 {
		f.Sub(f, half)
	} else {
		f.Add(f, half)
	}
	i, _ := f.Int(nil) // truncates towards zero
	i.Mod(i, new(big.Int).SetUint64(q))
	return i.Uint64()
}

func TestEncoderCoefficientsAreExact(t *testing.T) {
	p := testParams(t)
	e := newEncoder(p)
	r := mrand.New(mrand.NewPCG(13, 13))
	values := []float64{
		1, -1, 0.5, -0.5, 3, 4, 4.5, 1e-300, -1e-300, 5e-324, math.SmallestNonzeroFloat64,
		math.Ldexp(1, -62), math.Ldexp(1, -63), math.Ldexp(3, -64), math.Ldexp(1, -80),
		math.Ldexp(1, -115), math.Ldexp(1, -116), math.Ldexp(3, -117), math.Ldexp(1, -130),
		math.Ldexp(1, 52) + 1, -(math.Ldexp(1, 52) + 1), p.MaxAbsValue(), -p.MaxAbsValue(), 1234.5678,
	}
	for range 2000 {
		values = append(values, math.Ldexp(r.Float64()-0.5, r.IntN(100)-60))
	}
	moduli := p.he.Q()
	coeffs := make([][]uint64, len(moduli))
	for j := range coeffs {
		coeffs[j] = make([]uint64, 1)
	}
	for _, x := range values {
		require.NoError(t, e.setCoefficient(coeffs, 0, x))
		for j, q := range moduli {
			require.Equal(t, exactResidue(x, p.lit.LogDefaultScale, q), coeffs[j][0], "x=%g modulus %d", x, j)
		}
	}
	assert.ErrorIs(t, e.setCoefficient(coeffs, 0, math.Inf(1)), ErrValueOutOfRange)
	assert.ErrorIs(t, e.setCoefficient(coeffs, 0, math.Ldexp(1, 110)), ErrValueOutOfRange)
}

// TestEncoderMatchesLattigo compares whole plaintexts with lattigo's encoder. Lattigo rounds
// x*scale+0.5 in float64, which can be off by one for odd integers between 2^53 and 2^64, so
// coefficients may differ by one unit, never more. Values are drawn on the release grid, which
// the encoder rounds to first (lattigo's encoder does not).
func TestEncoderMatchesLattigo(t *testing.T) {
	p := testParams(t)
	grid := 1 / p.ReleaseGrid()
	ours := newEncoder(p)
	theirs := hefloat.NewEncoder(p.he, 53)
	r := mrand.New(mrand.NewPCG(14, 14))
	level := p.he.MaxLevel()
	ringQ := p.he.RingQ()
	for _, n := range []int{1, 17, 2000, 2048} {
		for _, scale := range []float64{1e-6, 1, 1e3, 1e9} {
			values := make([]float64, n)
			for i := range values {
				values[i] = math.Round(scale*(2*r.Float64()-1)*grid) / grid
			}
			a := hefloat.NewPlaintext(p.he, level)
			b := hefloat.NewPlaintext(p.he, level)
			require.NoError(t, ours.encode(values, a))
			require.NoError(t, theirs.Encode(values, b))
			ringQ.INTT(a.Value, a.Value)
			ringQ.INTT(b.Value, b.Value)
			for j, q := range p.he.Q() {
				for i := range a.Value.Coeffs[j] {
					d := (a.Value.Coeffs[j][i] + q - b.Value.Coeffs[j][i]) % q
					require.True(t, d <= 1 || d == q-1, "n=%d scale=%g coefficient %d differs by %d", n, scale, i, d)
				}
			}
		}
	}
}

func TestDecoderMatchesLattigo(t *testing.T) {
	for _, name := range []string{PresetSimulation, PresetKeyRecovery, "four moduli"} {
		t.Run(name, func(t *testing.T) {
			lit, err := PresetLiteral(name)
			if name == "four moduli" {
				lit = ParamsLiteral{LogN: 13, LogQ: []int{50, 50, 50, 50}, LogDefaultScale: 120, LogDecodePrecision: 28}
				err = nil
			}
			require.NoError(t, err)
			p, err := NewParams(lit)
			require.NoError(t, err)
			ours := newDecoder(p)
			theirs := hefloat.NewEncoder(p.he, 53)
			r := mrand.New(mrand.NewPCG(15, 15))
			level := p.he.MaxLevel()
			logGrid := float64(p.lit.LogDecodePrecision)
			for _, magnitude := range []float64{1e-3, 1, 1e6, p.MaxAbsValue()} {
				values := make([]float64, p.Slots())
				for i := range values {
					values[i] = magnitude * (2*r.Float64() - 1)
				}
				pt := hefloat.NewPlaintext(p.he, level)
				require.NoError(t, newEncoder(p).encode(values, pt))
				for _, logRound := range []float64{0, logGrid} {
					got := make([]float64, len(values))
					want := make([]float64, len(values))
					require.NoError(t, ours.decode(pt, got, logRound))
					require.NoError(t, theirs.DecodePublic(pt, want, logRound))
					diff, _ := maxAbsDiff(got, want)
					// Both round to the grid; a value within float error of a midpoint may round either way.
					assert.LessOrEqual(t, diff, 1e-15*magnitude+math.Exp2(-logRound)*boolToFloat(logRound > 0), "magnitude %g round %g", magnitude, logRound)
					diff, _ = maxAbsDiff(got, values)
					assert.LessOrEqual(t, diff, 1e-14*magnitude+math.Exp2(-logRound), "magnitude %g round %g", magnitude, logRound)
				}
			}
			// Small values on both sides of zero lift exactly.
			rows := make([][]uint64, len(ours.q))
			for _, x := range []int64{0, 5, -1, -12345, 1 << 40, -(1 << 50)} {
				for j, q := range ours.q {
					rows[j] = []uint64{reduce(x, q)}
				}
				assert.InDelta(t, float64(x), ours.lift(rows, 0), 0, "lift(%d)", x)
			}
		})
	}
}

func boolToFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
