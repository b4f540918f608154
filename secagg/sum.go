package secagg

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// Sum is the coordinator's running sum of encrypted vectors: one ciphertext set, to which
// results are added as they arrive. It holds nothing secret. It is not safe for concurrent
// use.
//
// Adding two ciphertexts is adding their coefficients modulo q. Sum defers the modular
// reduction: every incoming word is below 2^b (b = bit length of its modulus, at most 58), so a
// 64-bit accumulator takes 2^(64-b)-1 additions (511 for the default 55-bit modulus) before
// it must be reduced. Add is then one pass of plain 64-bit additions straight from the wire
// bytes, which keeps the homomorphic sum within a small factor of a plaintext float64 sum
// even though a ciphertext is 8x larger than the vector it carries.
type Sum struct {
	params     Params
	keyID      [8]byte
	length     int
	count      int
	acc        []uint64 // the wire body's words, reduced lazily
	pending    int      // additions since the last reduction
	maxPending int
}

// maxCount bounds the contributions one sum can count (the wire field is 32-bit).
const maxCount = math.MaxUint32

// NewSum starts an empty sum of vectors of length values encrypted under publicKey.
func NewSum(p Params, publicKey []byte, length int) (*Sum, error) {
	if length < 1 || length > maxLength {
		return nil, fmt.Errorf("%w: length %d, want 1..%d", ErrLengthMismatch, length, maxLength)
	}
	// The coordinator's own key: the header (with the id computed when the key was made) is
	// enough, and hashing 64 KiB every round is not needed.
	id, err := parsePublicKeyHeader(p, publicKey)
	if err != nil {
		return nil, err
	}
	return newSum(p, id, length), nil
}

func newSum(p Params, keyID [8]byte, length int) *Sum {
	maxBits := uint(0)
	for _, b := range p.qBits {
		maxBits = max(maxBits, b)
	}
	return &Sum{
		params:     p,
		keyID:      keyID,
		length:     length,
		acc:        make([]uint64, p.CiphertextsFor(length)*p.wordsPerCiphertext()),
		maxPending: 1<<(64-maxBits) - 1,
	}
}

// Add adds one client's encrypted update (Encryptor.Encrypt's output). It refuses, leaving the
// sum unchanged, bytes that are malformed, made under other parameters or another public key
// (ErrKeyMismatch), of another length (ErrLengthMismatch), or that claim to sum more than one
// contribution.
func (s *Sum) Add(ciphertext []byte) error {
	return s.add(ciphertext, true)
}

// Merge adds a partial sum (another Sum's MarshalBinary, from a regional aggregator) and
// counts all the contributions it states. Use Add for client updates.
func (s *Sum) Merge(aggregate []byte) error {
	return s.add(aggregate, false)
}

func (s *Sum) add(b []byte, single bool) error {
	h, body, err := parseCiphertextSet(s.params, b)
	if err != nil {
		return err
	}
	if h.keyID != s.keyID {
		return fmt.Errorf("%w: ciphertext under key %x, the sum is under %x", ErrKeyMismatch, h.keyID, s.keyID)
	}
	if h.length != s.length {
		return fmt.Errorf("%w: ciphertext of %d values, the sum has %d", ErrLengthMismatch, h.length, s.length)
	}
	if single && h.count != 1 {
		return fmt.Errorf("%w: an update counts 1 contribution, this one claims %d", ErrMalformed, h.count)
	}
	if h.count < 1 || uint64(s.count)+uint64(h.count) > maxCount {
		return fmt.Errorf("%w: %d contributions cannot be added to %d", ErrMalformed, h.count, s.count)
	}
	if s.pending >= s.maxPending {
		s.reduce()
	}
	n := s.params.he.N()
	levels := len(s.params.qBits)
	for r := 0; r*n < len(s.acc); r++ {
		or := addWords(s.acc[r*n:(r+1)*n], body[8*r*n:])
		if or>>s.params.qBits[r%levels] != 0 {
			// Undo rows 0..r: 64-bit wrapping addition is exactly invertible.
			for u := 0; u <= r; u++ {
				subWords(s.acc[u*n:(u+1)*n], body[8*u*n:])
			}
			return fmt.Errorf("%w: ciphertext coefficient in row %d exceeds its modulus", ErrMalformed, r)
		}
	}
	s.pending++
	s.count += h.count
	return nil
}

// reduce brings every accumulator word below its modulus.
func (s *Sum) reduce() {
	n := s.params.he.N()
	subRings := s.params.he.RingQ().SubRings
	for r := 0; r*n < len(s.acc); r++ {
		sr := subRings[r%len(subRings)]
		row := s.acc[r*n : (r+1)*n]
		for i, w := range row {
			row[i] = ring.BRedAdd(w, sr.Modulus, sr.BRedConstant)
		}
	}
	s.pending = 0
}

// Count returns the number of contributions summed so far.
func (s *Sum) Count() int { return s.count }

// Length returns the number of values in the summed vectors.
func (s *Sum) Length() int { return s.length }

// Reset empties the sum for a new aggregate of the same length under the same key, reusing its
// memory (a 128 KiB allocation per ciphertext costs more than adding dozens of updates).
func (s *Sum) Reset() {
	clear(s.acc)
	s.count = 0
	s.pending = 0
}

// MarshalBinary returns the aggregate: the wire form members decrypt and the coordinator
// persists (UnmarshalSum restores it).
func (s *Sum) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(nil)
}

// AppendBinary appends the aggregate's wire form (see MarshalBinary) to b, so a coordinator
// can reuse one buffer round after round.
func (s *Sum) AppendBinary(b []byte) ([]byte, error) {
	size := s.params.ciphertextSetSize(s.length)
	b = slices.Grow(b, size)
	out := b[len(b) : len(b)+size]
	body := putCiphertextHeader(out, s.params, ciphertextHeader{keyID: s.keyID, length: s.length, count: s.count})
	n := s.params.he.N()
	subRings := s.params.he.RingQ().SubRings
	for r := 0; r*n < len(s.acc); r++ {
		sr := subRings[r%len(subRings)]
		row := s.acc[r*n : (r+1)*n]
		dst := body[8*r*n : 8*(r+1)*n]
		for i, w := range row {
			w = ring.BRedAdd(w, sr.Modulus, sr.BRedConstant)
			row[i] = w
			binary.LittleEndian.PutUint64(dst[8*i:8*i+8], w)
		}
	}
	s.pending = 0
	return b[:len(b)+size], nil
}

// UnmarshalSum restores a running sum from MarshalBinary's output, e.g. after a coordinator
// restart.
func UnmarshalSum(p Params, aggregate []byte) (*Sum, error) {
	h, _, err := parseCiphertextSet(p, aggregate)
	if err != nil {
		return nil, err
	}
	s := newSum(p, h.keyID, h.length)
	if h.count == 0 { // an empty sum: all coefficients must be zero
		for _, c := range aggregate[ciphertextHeaderSize:] {
			if c != 0 {
				return nil, fmt.Errorf("%w: an empty sum with nonzero coefficients", ErrMalformed)
			}
		}
		return s, nil
	}
	if err := s.Merge(aggregate); err != nil {
		return nil, err
	}
	return s, nil
}
