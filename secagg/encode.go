package secagg

import (
	"fmt"
	"math"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// encoder maps a real vector to a CKKS plaintext exactly as lattigo's float64 encoder does
// (same inverse FFT, same placement, same rounding), except for one step: turning the scaled
// coefficients into RNS residues. With scale 2^62 every coefficient above 4 overflows uint64,
// and lattigo then goes through big.Float and big.Int for each of them (about 1 ms and 18,000
// allocations per 2,048 values). A float64 is mant*2^e exactly, so coefficient*2^logScale is
// mant*2^(e+logScale), whose residue is (mant mod q)*(2^(e+logScale) mod q) mod q: exact, and
// a table lookup plus one Barrett multiplication per residue.
type encoder struct {
	params   Params
	lattigo  *hefloat.Encoder
	buf      []complex128
	logSlots int
	// pow2[j][k] = 2^k mod q_j, for k below maxLog: coefficients are at most
	// MaxAbsValue*scale < Q/4.
	pow2   [][]uint64
	maxLog int
}

func newEncoder(p Params) *encoder {
	e := &encoder{
		params:   p,
		lattigo:  hefloat.NewEncoder(p.he, p.lit.EncoderPrecision),
		buf:      make([]complex128, p.Slots()),
		logSlots: p.he.LogMaxSlots(),
		maxLog:   int(math.Ceil(p.he.LogQ())),
	}
	for _, s := range p.he.RingQ().SubRings {
		q := s.Modulus
		row := make([]uint64, e.maxLog)
		v := uint64(1) % q
		for k := range row {
			row[k] = v
			v = (v << 1) % q // v < q < 2^63, so v<<1 does not overflow
		}
		e.pow2 = append(e.pow2, row)
	}
	return e
}

// encode writes values (len <= Slots, all finite) into pt, a plaintext at the top level with
// the default scale, in the NTT domain.
func (e *encoder) encode(values []float64, pt *rlwe.Plaintext) error {
	if err := e.coefficients(values, pt.Value); err != nil {
		return err
	}
	rlwe.NTTSparseAndMontgomery(e.params.he.RingQ().AtLevel(pt.Level()), pt.MetaData, pt.Value)
	return nil
}

// coefficients is encode without the final NTT: it leaves the plaintext polynomial in the
// coefficient domain. Values are first rounded to the release grid: a decrypted sum of grid
// points is a grid point plus noise far below half a step, so rounding the decryption
// recovers the sum exactly, and a released value never depends on the noise.
func (e *encoder) coefficients(values []float64, poly ring.Poly) error {
	slots := len(e.buf)
	grid := math.Ldexp(1, e.params.lit.LogDecodePrecision)
	for i, v := range values {
		e.buf[i] = complex(math.Round(v*grid)/grid, 0)
	}
	clear(e.buf[len(values):])
	if err := e.lattigo.IFFT(e.buf, e.logSlots); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	coeffs := poly.Coeffs
	for i, c := range e.buf {
		if err := e.setCoefficient(coeffs, i, real(c)); err != nil {
			return err
		}
		if err := e.setCoefficient(coeffs, i+slots, imag(c)); err != nil {
			return err
		}
	}
	return nil
}

// setCoefficient sets coefficient i of every RNS row to round(x*2^logScale) mod q_j,
// rounding half away from zero as lattigo does.
func (e *encoder) setCoefficient(coeffs [][]uint64, i int, x float64) error {
	if x == 0 {
		for j := range coeffs {
			coeffs[j][i] = 0
		}
		return nil
	}
	b := math.Float64bits(x)
	negative := b>>63 == 1
	exp := int(b>>52) & 0x7ff
	mant := b & (1<<52 - 1)
	switch exp {
	case 0x7ff:
		return fmt.Errorf("%w: coefficient %g is not finite", ErrValueOutOfRange, x)
	case 0: // subnormal: mant*2^-1074
		exp = 1
	default:
		mant |= 1 << 52
	}
	k := exp - 1075 + e.params.lit.LogDefaultScale // |x|*scale = mant*2^k
	subRings := e.params.he.RingQ().SubRings
	if k >= 0 {
		if k >= e.maxLog {
			return fmt.Errorf("%w: coefficient %g too large for the modulus", ErrValueOutOfRange, x)
		}
		for j := range coeffs {
			s := subRings[j]
			m := mant
			if m >= s.Modulus {
				m %= s.Modulus
			}
			coeffs[j][i] = ring.BRed(m, e.pow2[j][k], s.Modulus, s.BRedConstant)
		}
	} else {
		var v uint64 // round(mant*2^k); mant < 2^53 so the rounding carry cannot overflow
		if shift := uint(-k); shift < 64 {
			v = (mant + 1<<(shift-1)) >> shift
		}
		for j := range coeffs {
			r := v
			if q := subRings[j].Modulus; r >= q {
				r %= q
			}
			coeffs[j][i] = r
		}
	}
	if negative {
		for j := range coeffs {
			if c := coeffs[j][i]; c != 0 {
				coeffs[j][i] = subRings[j].Modulus - c
			}
		}
	}
	return nil
}
