package secagg

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
)

// Collective public-key generation (setup round 1). The coordinator publishes a fresh seed per
// setup; every member expands it into the same common reference polynomial a and returns
// -s_i*a + e_i; the coordinator adds the shares as they arrive and publishes
// (sum_i(-s_i*a + e_i), a), an RLWE public key for s = sum_i s_i that nobody knows.
//
// Wire forms:
//
//	public-key share: header (16) | CRS id (8) | member uint32 | reserved uint32 | poly over QP
//	public key:       header (16) | CRS id (8) | members uint32 | reserved uint32 | key id (8) |
//	                  2 polys over QP
//
// The key id fingerprints the CRS id and the key's coefficients. It is computed once, when the
// key is made, so the coordinator can start a Sum every round without hashing the key again;
// NewEncryptor recomputes and checks it.
const (
	keyHeaderSize       = headerSize + 8 + 4 + 4
	publicKeyHeaderSize = keyHeaderSize + 8
)

const (
	minCRSSeed = 16
	maxCRSSeed = 64
)

// crpFromSeed expands the coordinator's seed into the common reference polynomial.
func crpFromSeed(p Params, proto mhe.PublicKeyGenProtocol, crsSeed []byte) (mhe.PublicKeyGenCRP, [8]byte, error) {
	if len(crsSeed) < minCRSSeed || len(crsSeed) > maxCRSSeed {
		return mhe.PublicKeyGenCRP{}, [8]byte{}, fmt.Errorf("%w: CRS seed of %d bytes, want %d..%d", ErrMalformed, len(crsSeed), minCRSSeed, maxCRSSeed)
	}
	crs, err := newStreamPRNG("fedprop/secagg/crs/v1", crsSeed)
	if err != nil {
		return mhe.PublicKeyGenCRP{}, [8]byte{}, err
	}
	return proto.SampleCRP(crs), fingerprint8("fedprop/secagg/crs/v1", crsSeed), nil
}

// qpRows lists the RNS rows of a polynomial over QP, Q first, without aliasing its storage.
func qpRows(poly ringqp.Poly) [][]uint64 {
	rows := make([][]uint64, 0, len(poly.Q.Coeffs)+len(poly.P.Coeffs))
	rows = append(rows, poly.Q.Coeffs...)
	return append(rows, poly.P.Coeffs...)
}

// qpModuli lists the moduli matching qpRows.
func (p Params) qpModuli() []uint64 {
	return append(slices.Clone(p.he.Q()), p.he.P()...)
}

// PublicKeyAggregator is the coordinator's side of collective public-key generation: it folds
// members' shares as they arrive, one per member, and produces the collective public key. It
// holds nothing secret. It is not safe for concurrent use.
type PublicKeyAggregator struct {
	params  Params
	crsID   [8]byte
	proto   mhe.PublicKeyGenProtocol
	crp     mhe.PublicKeyGenCRP
	sum     mhe.PublicKeyGenShare
	scratch mhe.PublicKeyGenShare
	members map[int]bool
}

// NewPublicKeyAggregator starts aggregating shares made over the CRS seed crsSeed (16 to 64
// bytes, fresh per setup, published to every member).
func NewPublicKeyAggregator(p Params, crsSeed []byte) (*PublicKeyAggregator, error) {
	proto := mhe.NewPublicKeyGenProtocol(p.he)
	crp, crsID, err := crpFromSeed(p, proto, crsSeed)
	if err != nil {
		return nil, err
	}
	return &PublicKeyAggregator{
		params:  p,
		crsID:   crsID,
		proto:   proto,
		crp:     crp,
		sum:     proto.AllocateShare(),
		scratch: proto.AllocateShare(),
		members: make(map[int]bool),
	}, nil
}

// Add folds one member's public-key share into the aggregate and returns the member's index.
// A second share from the same member is refused (ErrDuplicate): counting a member twice
// would make the key one nobody can decrypt for.
func (a *PublicKeyAggregator) Add(share []byte) (int, error) {
	p := a.params
	if err := checkHeader(share, kindPublicKeyShare, p); err != nil {
		return 0, err
	}
	if err := checkSize(share, kindPublicKeyShare, keyHeaderSize+8*p.wordsPerQPPoly()); err != nil {
		return 0, err
	}
	if [8]byte(share[16:24]) != a.crsID {
		return 0, fmt.Errorf("%w: public-key share made over another CRS", ErrKeyMismatch)
	}
	member := int(binary.LittleEndian.Uint32(share[24:28]))
	if member < 1 || member > maxMembers || binary.LittleEndian.Uint32(share[28:32]) != 0 {
		return 0, fmt.Errorf("%w: public-key share: member %d", ErrMalformed, member)
	}
	if a.members[member] {
		return 0, fmt.Errorf("%w: public-key share from member %d", ErrDuplicate, member)
	}
	if _, err := readRows(share[keyHeaderSize:], qpRows(a.scratch.Value), p.qpModuli(), kindPublicKeyShare); err != nil {
		return 0, err
	}
	a.proto.AggregateShares(a.sum, a.scratch, &a.sum)
	a.members[member] = true
	return member, nil
}

// Members returns the indices of the members whose shares were added, in increasing order.
func (a *PublicKeyAggregator) Members() []int {
	out := make([]int, 0, len(a.members))
	for m := range a.members {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// PublicKey returns the collective public key over the shares added so far. Call it once
// every committee member's share is in: the threshold setup must cover exactly these members.
func (a *PublicKeyAggregator) PublicKey() ([]byte, error) {
	if len(a.members) == 0 {
		return nil, fmt.Errorf("%w: no public-key share added", ErrMissingShare)
	}
	p := a.params
	pk := rlwe.NewPublicKey(p.he)
	a.proto.GenPublicKey(a.sum, a.crp, pk)
	out := make([]byte, p.publicKeySize())
	putHeader(out, kindPublicKey, p)
	copy(out[16:24], a.crsID[:])
	binary.LittleEndian.PutUint32(out[24:28], uint32(len(a.members)))
	rest := putRows(out[publicKeyHeaderSize:], qpRows(pk.Value[0]))
	putRows(rest, qpRows(pk.Value[1]))
	id := keyID(out)
	copy(out[keyHeaderSize:publicKeyHeaderSize], id[:])
	return out, nil
}

func (p Params) publicKeySize() int { return publicKeyHeaderSize + 2*8*p.wordsPerQPPoly() }

// parsePublicKeyHeader checks a public key's header and size and returns its embedded key id.
func parsePublicKeyHeader(p Params, b []byte) ([8]byte, error) {
	if err := checkHeader(b, kindPublicKey, p); err != nil {
		return [8]byte{}, err
	}
	if err := checkSize(b, kindPublicKey, p.publicKeySize()); err != nil {
		return [8]byte{}, err
	}
	if n := binary.LittleEndian.Uint32(b[24:28]); n < 1 || n > maxMembers || binary.LittleEndian.Uint32(b[28:32]) != 0 {
		return [8]byte{}, fmt.Errorf("%w: public key: %d members", ErrMalformed, n)
	}
	return [8]byte(b[keyHeaderSize:publicKeyHeaderSize]), nil
}

// decodePublicKey parses a collective public key, checking its coefficients and its key id.
func decodePublicKey(p Params, b []byte) (*rlwe.PublicKey, [8]byte, error) {
	id, err := parsePublicKeyHeader(p, b)
	if err != nil {
		return nil, [8]byte{}, err
	}
	if keyID(b) != id {
		return nil, [8]byte{}, fmt.Errorf("%w: public key: key id does not match its contents", ErrMalformed)
	}
	pk := rlwe.NewPublicKey(p.he)
	moduli := p.qpModuli()
	rest, err := readRows(b[publicKeyHeaderSize:], qpRows(pk.Value[0]), moduli, kindPublicKey)
	if err != nil {
		return nil, [8]byte{}, err
	}
	if _, err := readRows(rest, qpRows(pk.Value[1]), moduli, kindPublicKey); err != nil {
		return nil, [8]byte{}, err
	}
	return pk, id, nil
}

// keyID fingerprints a public key: its CRS id and its coefficients (not its own id field).
func keyID(publicKey []byte) [8]byte {
	return fingerprint8("fedprop/secagg/key/v1", publicKey[16:24], publicKey[publicKeyHeaderSize:])
}
