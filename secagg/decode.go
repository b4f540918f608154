package secagg

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// decoder turns a decrypted plaintext back into real values. It is lattigo's
// Encoder.DecodePublic for the float64 encoder (same centring, same FFT, same rounding to the
// release grid) with one step replaced: lattigo lifts every coefficient from RNS to a big.Int
// (about 45,000 allocations and 3 ms per ciphertext), where for the two-modulus chain used
// here the CRT lift fits in 128 bits. Other moduli chains use lattigo's DecodePublic as is.
type decoder struct {
	params   Params
	lattigo  *hefloat.Encoder
	buf      []complex128
	poly     ring.Poly
	logSlots int
	// Two-modulus CRT constants: x = x0 + q0*((x1 - x0)*q0^-1 mod q1), Q = q0*q1.
	fast         bool
	q0, q1       uint64
	q0InvModQ1   uint64
	brc1         []uint64
	qHi, qLo     uint64
	halfHi, half uint64
}

func newDecoder(p Params) *decoder {
	d := &decoder{
		params:   p,
		lattigo:  hefloat.NewEncoder(p.he, p.lit.EncoderPrecision),
		buf:      make([]complex128, p.Slots()),
		poly:     p.he.RingQ().NewPoly(),
		logSlots: p.he.LogMaxSlots(),
	}
	if sub := p.he.RingQ().SubRings; len(sub) == 2 {
		d.fast = true
		d.q0, d.q1 = sub[0].Modulus, sub[1].Modulus
		d.brc1 = sub[1].BRedConstant
		d.q0InvModQ1 = ring.ModExp(d.q0%d.q1, d.q1-2, d.q1) // q1 is prime
		d.qHi, d.qLo = bits.Mul64(d.q0, d.q1)
		d.halfHi, d.half = d.qHi>>1, d.qLo>>1|d.qHi<<63
	}
	return d
}

// decode writes the first len(out) slots of pt (NTT domain, default scale, all slots) to out,
// rounded to multiples of 2^-logRound (no rounding when logRound is 0).
func (d *decoder) decode(pt *rlwe.Plaintext, out []float64, logRound float64) error {
	if !d.fast {
		full := make([]float64, len(d.buf))
		if err := d.lattigo.DecodePublic(pt, full, logRound); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		copy(out, full)
		return nil
	}
	d.params.he.RingQ().AtLevel(pt.Level()).INTT(pt.Value, d.poly)
	slots := len(d.buf)
	invScale := 1 / pt.Scale.Float64()
	c0, c1 := d.poly.Coeffs[0], d.poly.Coeffs[1]
	for i := range d.buf {
		re := d.lift(c0[i], c1[i]) * invScale
		im := d.lift(c0[i+slots], c1[i+slots]) * invScale
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

// lift returns the centred representative in [-Q/2, Q/2) of the residues (x0 mod q0, x1 mod
// q1), as a float64. Like lattigo, Q/2 itself maps to -Q/2.
func (d *decoder) lift(x0, x1 uint64) float64 {
	x0m := x0
	if x0m >= d.q1 {
		x0m = ring.BRedAdd(x0m, d.q1, d.brc1)
	}
	diff := x1 + d.q1 - x0m // < 2*q1
	if diff >= d.q1 {
		diff -= d.q1
	}
	t := ring.BRed(diff, d.q0InvModQ1, d.q1, d.brc1)
	hi, lo := bits.Mul64(d.q0, t)
	var carry uint64
	lo, carry = bits.Add64(lo, x0, 0)
	hi += carry
	if hi > d.halfHi || (hi == d.halfHi && lo >= d.half) {
		var borrow uint64
		lo, borrow = bits.Sub64(d.qLo, lo, 0)
		hi = d.qHi - hi - borrow
		return -(float64(hi)*0x1p64 + float64(lo))
	}
	return float64(hi)*0x1p64 + float64(lo)
}
