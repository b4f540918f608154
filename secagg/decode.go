package secagg

import (
	"fmt"
	"math"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// decoder turns a decrypted plaintext back into real values. It is lattigo's
// Encoder.DecodePublic for the float64 encoder (same centring, same FFT, same rounding to the
// release grid) with one step replaced: lattigo lifts every coefficient from RNS to a big.Int
// (about 45,000 allocations and 3 ms per ciphertext), where Garner's mixed-radix conversion
// needs a few modular products per coefficient and no allocation.
type decoder struct {
	params   Params
	lattigo  *hefloat.Encoder
	buf      []complex128
	poly     ring.Poly
	logSlots int
	// Garner constants: moduli, their Barrett constants, inv[i][j] = q_i^-1 mod q_j (i < j).
	q      []uint64
	brc    [][]uint64
	inv    [][]uint64
	digits []uint64
	neg    []uint64
}

func newDecoder(p Params) *decoder {
	d := &decoder{
		params:   p,
		lattigo:  hefloat.NewEncoder(p.he, p.lit.EncoderPrecision),
		buf:      make([]complex128, p.Slots()),
		poly:     p.he.RingQ().NewPoly(),
		logSlots: p.he.LogMaxSlots(),
	}
	sub := p.he.RingQ().SubRings
	d.digits = make([]uint64, len(sub))
	d.neg = make([]uint64, len(sub))
	for _, s := range sub {
		d.q = append(d.q, s.Modulus)
		d.brc = append(d.brc, s.BRedConstant)
	}
	d.inv = make([][]uint64, len(sub))
	for i := range sub {
		d.inv[i] = make([]uint64, len(sub))
		for j := i + 1; j < len(sub); j++ {
			d.inv[i][j] = ring.ModExp(d.q[i]%d.q[j], d.q[j]-2, d.q[j]) // q_j is prime
		}
	}
	return d
}

// decode writes the first len(out) slots of pt (NTT domain, default scale, all slots) to out,
// rounded to multiples of 2^-logRound (no rounding when logRound is 0). Only real parts are
// kept: the inputs are real, so the imaginary parts carry nothing but noise.
func (d *decoder) decode(pt *rlwe.Plaintext, out []float64, logRound float64) error {
	d.params.he.RingQ().AtLevel(pt.Level()).INTT(pt.Value, d.poly)
	slots := len(d.buf)
	invScale := 1 / pt.Scale.Float64()
	rows := d.poly.Coeffs
	for i := range d.buf {
		re := d.lift(rows, i) * invScale
		im := d.lift(rows, i+slots) * invScale
		d.buf[i] = complex(re, im)
	}
	if err := d.lattigo.FFT(d.buf, d.logSlots); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	grid := math.Exp2(logRound)
	for i := range out {
		v := real(d.buf[i])
		if logRound != 0 {
			v = math.Round(v*grid) / grid
		}
		out[i] = v
	}
	return nil
}

// lift returns the centred representative in (-Q/2, Q/2] of coefficient i, whose residue
// modulo q_j is rows[j][i], as a float64 (relative error a few 2^-53).
func (d *decoder) lift(rows [][]uint64, i int) float64 {
	for j := range d.q {
		d.neg[j] = rows[j][i]
	}
	d.garner(d.neg, d.digits)
	top := len(d.q) - 1
	if d.digits[top] < d.q[top]/2 {
		return d.value(d.digits)
	}
	// In the upper half: the value is -(Q - x), whose residues are q_j - x_j.
	for j, q := range d.q {
		if x := rows[j][i]; x != 0 {
			d.neg[j] = q - x
		} else {
			d.neg[j] = 0
		}
	}
	d.garner(d.neg, d.digits)
	return -d.value(d.digits)
}

// garner writes the mixed-radix digits of the x in [0, Q) with residues res: x = v_0 +
// q_0*(v_1 + q_1*(v_2 + ...)), v_j in [0, q_j). res is overwritten.
func (d *decoder) garner(res, v []uint64) {
	for j, q := range d.q {
		x := res[j]
		for i := range j {
			vi := v[i]
			if vi >= q {
				vi = ring.BRedAdd(vi, q, d.brc[j])
			}
			x += q - vi // < 2q
			if x >= q {
				x -= q
			}
			x = ring.BRed(x, d.inv[i][j], q, d.brc[j])
		}
		v[j] = x
	}
}

// value evaluates the mixed-radix digits in float64, from the most significant.
func (d *decoder) value(v []uint64) float64 {
	x := 0.0
	for j := len(v) - 1; j >= 0; j-- {
		x = x*float64(d.q[j]) + float64(v[j])
	}
	return x
}
