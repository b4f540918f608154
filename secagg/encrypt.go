package secagg

import (
	"bytes"
	cryptorand "crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
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
// An idle Encryptor holds only its randomness stream and a reference to the decoded key, which
// the Encryptors of one key share: the encoder, the samplers and the polynomial buffers (about
// 0.8 MB) are taken for each Encrypt call and given back, so that a simulator's 100,000 app
// clients cost no more memory than the few that encrypt at once.
type Encryptor struct {
	params Params
	key    *decodedKey // shared with other Encryptors of the same key: read only
	prng   *streamPRNG
}

// NewEncryptor decodes the collective public key (the bytes PublicKeyAggregator.PublicKey
// produced) and returns an Encryptor for it. Encryption randomness comes from a stream keyed
// with 32 bytes read from random: nil means crypto/rand; a seeded source (a math/rand/v2
// ChaCha8, say) makes a simulation's ciphertexts reproducible. Never use a predictable source
// in production.
func NewEncryptor(p Params, publicKey []byte, random io.Reader) (*Encryptor, error) {
	key, err := p.shared.publicKey(p, publicKey)
	if err != nil {
		return nil, err
	}
	if random == nil {
		random = cryptorand.Reader
	}
	var seed [32]byte
	if _, err := io.ReadFull(random, seed[:]); err != nil {
		return nil, fmt.Errorf("new encryptor: read randomness: %w", err)
	}
	prng, err := newStreamPRNG("fedprop/secagg/encrypt/v1", seed[:])
	if err != nil {
		return nil, err
	}
	return &Encryptor{params: p, key: key, prng: prng}, nil
}

// encryptScratch is what one Encrypt call works in. The polynomials hold the plaintext and the
// encryption's secret randomness while it runs, and are cleared before they are given back.
type encryptScratch struct {
	ecd     *encoder
	ct      *rlwe.Ciphertext
	m, u, e ring.Poly
}

// sharedState is what the objects built from one Params share.
type sharedState struct {
	scratch sync.Pool // *encryptScratch
	mu      sync.Mutex
	keys    []*decodedKey // the latest decoded public keys, newest last
}

// decodedKey is a public key as received and as decoded.
type decodedKey struct {
	raw []byte
	id  [8]byte
	pk  *rlwe.PublicKey
}

// maxSharedKeys bounds the decoded keys kept: a client sees one collective key per run.
const maxSharedKeys = 4

// publicKey decodes publicKey, or returns the decoding of the identical bytes made before.
func (s *sharedState) publicKey(p Params, publicKey []byte) (*decodedKey, error) {
	s.mu.Lock()
	for _, k := range s.keys {
		if bytes.Equal(k.raw, publicKey) {
			s.mu.Unlock()
			return k, nil
		}
	}
	s.mu.Unlock()
	pk, id, err := decodePublicKey(p, publicKey)
	if err != nil {
		return nil, err
	}
	k := &decodedKey{raw: bytes.Clone(publicKey), id: id, pk: pk}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keys) == maxSharedKeys {
		s.keys = slices.Delete(s.keys, 0, 1)
	}
	s.keys = append(s.keys, k)
	return k, nil
}

func (p Params) getScratch() *encryptScratch {
	if s, ok := p.shared.scratch.Get().(*encryptScratch); ok {
		return s
	}
	ringQ := p.he.RingQ()
	return &encryptScratch{ecd: newEncoder(p), ct: hefloat.NewCiphertext(p.he, 1, p.he.MaxLevel()),
		m: ringQ.NewPoly(), u: ringQ.NewPoly(), e: ringQ.NewPoly()}
}

func (p Params) putScratch(s *encryptScratch) {
	for _, poly := range []ring.Poly{s.m, s.u, s.e} {
		for _, row := range poly.Coeffs {
			clear(row)
		}
	}
	clear(s.ecd.buf)
	p.shared.scratch.Put(s)
}

// encrypt sets ct (NTT domain) to a public-key encryption of the plaintext polynomial m, given
// in the coefficient domain:
//
//	c0 = u*pk0 + NTT(m + e0),  c1 = u*pk1 + NTT(e1),  u ternary, e0 and e1 Gaussian.
//
// It is lattigo's rlwe.Encryptor public-key encryption (encryptZeroPkNoP, then addPtToCt) with
// two differences: the samplers are fed by this Encryptor's stream (lattigo v5 draws that
// randomness from its own crypto/rand-keyed blake2b PRNG, which can be neither injected nor
// made fast, and was most of the encryption time), and e0 joins the plaintext before its NTT,
// which saves one of four NTTs. m is overwritten.
func (e *Encryptor) encrypt(s *encryptScratch, ternary, gauss ring.Sampler) {
	ringQ := e.params.he.RingQ()
	m, ct := s.m, s.ct
	ternary.Read(s.u)
	ringQ.NTT(s.u, s.u)
	// The key is in the Montgomery domain, so these products come out in the standard one.
	pk := e.key.pk
	ringQ.MulCoeffsMontgomery(s.u, pk.Value[0].Q, ct.Value[0])
	ringQ.MulCoeffsMontgomery(s.u, pk.Value[1].Q, ct.Value[1])
	gauss.ReadAndAdd(m)
	ringQ.NTT(m, m)
	ringQ.Add(ct.Value[0], m, ct.Value[0])
	gauss.Read(s.e)
	ringQ.NTT(s.e, s.e)
	ringQ.Add(ct.Value[1], s.e, ct.Value[1])
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
	// The samplers read this Encryptor's own stream; they are cheap to make, and not keeping
	// them keeps an idle Encryptor small.
	ringQ := e.params.he.RingQ()
	ternary, err := ring.NewSampler(e.prng, ringQ, e.params.he.Xs(), false)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	gauss, err := ring.NewSampler(e.prng, ringQ, e.params.he.Xe(), false)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	s := e.params.getScratch()
	defer e.params.putScratch(s)
	out := make([]byte, e.params.ciphertextSetSize(len(values)))
	body := putCiphertextHeader(out, e.params, ciphertextHeader{keyID: e.key.id, length: len(values), count: 1})
	slots := e.params.Slots()
	for start := 0; start < len(values); start += slots {
		chunk := values[start:min(start+slots, len(values))]
		if err := s.ecd.coefficients(chunk, s.m); err != nil {
			return nil, err
		}
		e.encrypt(s, ternary, gauss)
		body = putRows(body, s.ct.Value[0].Coeffs)
		body = putRows(body, s.ct.Value[1].Coeffs)
	}
	return out, nil
}

// KeyID returns the fingerprint of the public key the Encryptor encrypts under, in hex.
func (e *Encryptor) KeyID() string { return fmt.Sprintf("%x", e.key.id) }

// EncryptsUnder reports whether publicKey is, byte for byte, the key the Encryptor encrypts
// under: a client that keeps its Encryptor between tasks need not keep its own copy of the key
// to notice a new one.
func (e *Encryptor) EncryptsUnder(publicKey []byte) bool { return bytes.Equal(e.key.raw, publicKey) }
