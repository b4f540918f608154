package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// Decryption share wire form:
//
//	header (16) | key id (8) | member uint32 | length uint32 | SHA-256 of the aggregate (32) |
//	active-set id (8) | one poly over Q per ciphertext
const decryptionShareHeaderSize = headerSize + 8 + 4 + 4 + 32 + 8

type decryptionShareHeader struct {
	keyID  [8]byte
	member int
	length int
	digest [32]byte
	active [8]byte
}

func putDecryptionShareHeader(b []byte, p Params, h decryptionShareHeader) {
	putHeader(b, kindDecryptionShare, p)
	copy(b[16:24], h.keyID[:])
	binary.LittleEndian.PutUint32(b[24:28], uint32(h.member))
	binary.LittleEndian.PutUint32(b[28:32], uint32(h.length))
	copy(b[32:64], h.digest[:])
	copy(b[64:72], h.active[:])
}

// activeID fingerprints an active set, so shares made for different sets are never mixed:
// each carries Lagrange coefficients for its own set.
func activeID(active []int) [8]byte {
	b := make([]byte, 0, 4*len(active))
	for _, a := range active {
		b = binary.LittleEndian.AppendUint32(b, uint32(a))
	}
	return fingerprint8("fedprop/secagg/active/v1", b)
}

// Digest returns the hex SHA-256 of an aggregate's bytes. Members log it with every
// decryption share they give and the coordinator logs it with every aggregate it decrypts,
// so an audit can match the two logs.
func Digest(aggregate []byte) string {
	sum := sha256.Sum256(aggregate)
	return hex.EncodeToString(sum[:])
}

// AggregateInfo describes an aggregate without decrypting it: what a member checks before it
// helps decrypt, and what it logs.
type AggregateInfo struct {
	// Length is the number of values in the encrypted vector.
	Length int
	// Contributions is the number of client updates the aggregate claims to sum. The
	// coordinator states it; members trust it as far as they trust the coordinator to be
	// honest-but-curious, and the audit log makes a lie visible afterwards.
	Contributions int
	// KeyID is the fingerprint of the collective public key it is encrypted under (hex).
	KeyID string
	// Digest is Digest(aggregate).
	Digest string
}

// InspectAggregate decodes an aggregate's header (and checks its size) without decrypting it.
func InspectAggregate(p Params, aggregate []byte) (AggregateInfo, error) {
	h, _, err := parseCiphertextSet(p, aggregate)
	if err != nil {
		return AggregateInfo{}, err
	}
	return AggregateInfo{Length: h.length, Contributions: h.count, KeyID: hex.EncodeToString(h.keyID[:]), Digest: Digest(aggregate)}, nil
}

// Decryptor is the coordinator's side of threshold decryption: it combines the active
// members' shares with the aggregate and decodes the sum. It holds nothing secret. It is not
// safe for concurrent use.
type Decryptor struct {
	params    Params
	keySwitch mhe.KeySwitchProtocol
	decoder   *decoder
	ct        *rlwe.Ciphertext
	combined  mhe.KeySwitchShare
	received  mhe.KeySwitchShare
	// logRound is the DecodePublic rounding; tests set 0 (no rounding) to measure raw noise.
	logRound float64
}

// NewDecryptor returns a Decryptor for p.
func NewDecryptor(p Params) (*Decryptor, error) {
	sigma := p.lit.SmudgingSigma
	// The protocol's own noise is never sampled here: the coordinator only adds shares.
	keySwitch, err := mhe.NewKeySwitchProtocol(p.he, ring.DiscreteGaussian{Sigma: sigma, Bound: 6 * sigma})
	if err != nil {
		return nil, fmt.Errorf("key switch: %w", err)
	}
	level := p.he.MaxLevel()
	return &Decryptor{
		params:    p,
		keySwitch: keySwitch,
		decoder:   newDecoder(p),
		ct:        hefloat.NewCiphertext(p.he, 1, level),
		combined:  keySwitch.AllocateShare(level),
		received:  keySwitch.AllocateShare(level),
		logRound:  float64(p.lit.LogDecodePrecision),
	}, nil
}

// CombineDecryption is NewDecryptor(p) followed by Decrypt.
func CombineDecryption(p Params, aggregate []byte, active []int, shares map[int][]byte) ([]float64, error) {
	d, err := NewDecryptor(p)
	if err != nil {
		return nil, err
	}
	return d.Decrypt(aggregate, active, shares)
}

// Decrypt combines the decryption shares of exactly the active set (the one the shares were
// requested for, increasing) with aggregate and returns the decoded sum, rounded to
// multiples of 2^-LogDecodePrecision (lattigo's DecodePublic). A share made for another
// aggregate, set or member is refused (ErrShareMismatch); a missing one is ErrMissingShare.
// Fewer than T shares cannot be detected here and decode to noise: that is the threshold.
func (d *Decryptor) Decrypt(aggregate []byte, active []int, shares map[int][]byte) ([]float64, error) {
	p := d.params
	h, body, err := parseCiphertextSet(p, aggregate)
	if err != nil {
		return nil, err
	}
	if len(active) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrActiveSet)
	}
	for i, a := range active {
		if a < 1 || a > maxMembers || (i > 0 && active[i-1] >= a) {
			return nil, fmt.Errorf("%w: %v is not strictly increasing committee points", ErrActiveSet, active)
		}
	}
	for member := range shares {
		if _, found := slices.BinarySearch(active, member); !found {
			return nil, fmt.Errorf("%w: share from member %d, not in the active set %v", ErrShareMismatch, member, active)
		}
	}
	want := decryptionShareHeader{keyID: h.keyID, length: h.length, digest: sha256.Sum256(aggregate), active: activeID(active)}
	nCt := p.CiphertextsFor(h.length)
	shareSize := decryptionShareHeaderSize + 8*nCt*p.wordsPerQPoly()
	shareBodies := make([][]byte, len(active))
	for i, a := range active {
		s, ok := shares[a]
		if !ok {
			return nil, fmt.Errorf("%w: member %d", ErrMissingShare, a)
		}
		if err := checkHeader(s, kindDecryptionShare, p); err != nil {
			return nil, fmt.Errorf("share of member %d: %w", a, err)
		}
		if err := checkSize(s, kindDecryptionShare, shareSize); err != nil {
			return nil, fmt.Errorf("share of member %d: %w", a, err)
		}
		want.member = a
		var got decryptionShareHeader
		copy(got.keyID[:], s[16:24])
		got.member = int(binary.LittleEndian.Uint32(s[24:28]))
		got.length = int(binary.LittleEndian.Uint32(s[28:32]))
		copy(got.digest[:], s[32:64])
		copy(got.active[:], s[64:72])
		if got != want {
			return nil, fmt.Errorf("%w: share of member %d was made for another aggregate, active set or member", ErrShareMismatch, a)
		}
		shareBodies[i] = s[decryptionShareHeaderSize:]
	}
	return d.combine(h, body, shareBodies)
}

// combine adds the share bodies (one poly over Q per ciphertext each, already matched to the
// aggregate) to the aggregate body and decodes. Share bodies are consumed.
func (d *Decryptor) combine(h ciphertextHeader, body []byte, shareBodies [][]byte) ([]float64, error) {
	p := d.params
	nCt := p.CiphertextsFor(h.length)
	var err error
	moduli := p.he.Q()
	ringQ := p.he.RingQ()
	out := make([]float64, h.length)
	slots := p.Slots()
	for k := range nCt {
		if body, err = readRows(body, d.ct.Value[0].Coeffs, moduli, kindCiphertext); err != nil {
			return nil, err
		}
		if body, err = readRows(body, d.ct.Value[1].Coeffs, moduli, kindCiphertext); err != nil {
			return nil, err
		}
		d.combined.Value.Zero()
		for i := range shareBodies {
			if shareBodies[i], err = readRows(shareBodies[i], d.received.Value.Coeffs, moduli, kindDecryptionShare); err != nil {
				return nil, fmt.Errorf("share %d: %w", i, err)
			}
			ringQ.Add(d.combined.Value, d.received.Value, d.combined.Value)
		}
		// ct0 + sum_i(c1*s_i + e_i) = m + e: a ciphertext under the zero key, i.e. a plaintext.
		d.keySwitch.KeySwitch(d.ct, d.combined, d.ct)
		pt, err := rlwe.NewPlaintextAtLevelFromPoly(d.ct.Level(), d.ct.Value[0])
		if err != nil {
			return nil, fmt.Errorf("decrypt: %w", err)
		}
		*pt.MetaData = *d.ct.MetaData
		if err := d.decoder.decode(pt, out[k*slots:min((k+1)*slots, h.length)], d.logRound); err != nil {
			return nil, err
		}
	}
	return out, nil
}
