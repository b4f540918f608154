package secagg

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// A ciphertext set is a vector of `length` values encrypted as CiphertextsFor(length)
// ciphertexts. Its wire form, shared by client updates and by running sums:
//
//	header (16) | key id (8) | length uint32 | contributions uint32 |
//	for each ciphertext: c0 rows, then c1 rows (Q moduli), N words each.
const ciphertextHeaderSize = headerSize + 8 + 4 + 4

// ciphertextHeader is the fixed part of a ciphertext set.
type ciphertextHeader struct {
	keyID  [8]byte
	length int
	count  int
}

func (p Params) ciphertextSetSize(length int) int {
	return ciphertextHeaderSize + 8*p.CiphertextsFor(length)*p.wordsPerCiphertext()
}

func putCiphertextHeader(b []byte, p Params, h ciphertextHeader) []byte {
	putHeader(b, kindCiphertext, p)
	copy(b[16:24], h.keyID[:])
	binary.LittleEndian.PutUint32(b[24:28], uint32(h.length))
	binary.LittleEndian.PutUint32(b[28:32], uint32(h.count))
	return b[ciphertextHeaderSize:]
}

// parseCiphertextSet checks the header and the exact size and returns the coefficient body.
// It does not range-check the words: callers do, in the way that suits them.
func parseCiphertextSet(p Params, b []byte) (ciphertextHeader, []byte, error) {
	if err := checkHeader(b, kindCiphertext, p); err != nil {
		return ciphertextHeader{}, nil, err
	}
	if len(b) < ciphertextHeaderSize {
		return ciphertextHeader{}, nil, fmt.Errorf("%w: ciphertext: %d bytes, shorter than its header", ErrMalformed, len(b))
	}
	var h ciphertextHeader
	copy(h.keyID[:], b[16:24])
	h.length = int(binary.LittleEndian.Uint32(b[24:28]))
	h.count = int(binary.LittleEndian.Uint32(b[28:32]))
	if h.length < 1 || h.length > maxLength {
		return ciphertextHeader{}, nil, fmt.Errorf("%w: ciphertext: length %d, want 1..%d", ErrMalformed, h.length, maxLength)
	}
	if err := checkSize(b, kindCiphertext, p.ciphertextSetSize(h.length)); err != nil {
		return ciphertextHeader{}, nil, err
	}
	return h, b[ciphertextHeaderSize:], nil
}

// Encryptor encrypts real vectors under the committee's collective public key. Any client,
// committee member or not, uses one. It is not safe for concurrent use; make one per
// goroutine.
//
// The encryption randomness (the ternary mask and the two Gaussian errors) is drawn by
// lattigo's rlwe.Encryptor from its own crypto/rand-keyed PRNG: lattigo v5 offers no way to
// inject it for public-key encryption, so ciphertext bytes are never reproducible. Decrypted
// sums are, up to the release rounding (see the package documentation).
type Encryptor struct {
	params Params
	keyID  [8]byte
	enc    *rlwe.Encryptor
	ecd    *encoder
	pt     *rlwe.Plaintext
	ct     *rlwe.Ciphertext
}

// NewEncryptor decodes the collective public key (the bytes PublicKeyAggregator.PublicKey
// produced) and returns an Encryptor for it.
func NewEncryptor(p Params, publicKey []byte) (*Encryptor, error) {
	pk, keyID, err := decodePublicKey(p, publicKey)
	if err != nil {
		return nil, err
	}
	level := p.he.MaxLevel()
	return &Encryptor{
		params: p,
		keyID:  keyID,
		enc:    rlwe.NewEncryptor(p.he, pk),
		ecd:    newEncoder(p),
		pt:     hefloat.NewPlaintext(p.he, level),
		ct:     hefloat.NewCiphertext(p.he, 1, level),
	}, nil
}

// Encrypt encrypts values (at least one) and returns the wire form of the update: a
// ciphertext set counting one contribution. Vectors longer than Slots span several
// ciphertexts. It refuses NaN, infinities and magnitudes above MaxAbsValue; callers clip
// each contribution to MaxAbsPerContribution so that the sum cannot wrap either.
func (e *Encryptor) Encrypt(values []float64) ([]byte, error) {
	if len(values) < 1 || len(values) > maxLength {
		return nil, fmt.Errorf("%w: %d values, want 1..%d", ErrLengthMismatch, len(values), maxLength)
	}
	limit := e.params.maxAbs
	for i, v := range values {
		if math.IsNaN(v) || math.Abs(v) > limit { // Abs(±Inf) > limit
			return nil, fmt.Errorf("%w: value %d is %g, the bound is ±%g", ErrValueOutOfRange, i, v, limit)
		}
	}
	out := make([]byte, e.params.ciphertextSetSize(len(values)))
	body := putCiphertextHeader(out, e.params, ciphertextHeader{keyID: e.keyID, length: len(values), count: 1})
	slots := e.params.Slots()
	for start := 0; start < len(values); start += slots {
		chunk := values[start:min(start+slots, len(values))]
		if err := e.ecd.encode(chunk, e.pt); err != nil {
			return nil, err
		}
		if err := e.enc.Encrypt(e.pt, e.ct); err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		body = putRows(body, e.ct.Value[0].Coeffs)
		body = putRows(body, e.ct.Value[1].Coeffs)
	}
	return out, nil
}

// KeyID returns the fingerprint of the public key the Encryptor encrypts under, in hex.
func (e *Encryptor) KeyID() string { return fmt.Sprintf("%x", e.keyID) }
