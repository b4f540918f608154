package secagg

import (
	"bytes"
	"crypto/ecdh"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/utils/structs"
)

// Member is one committee member's key material for one committee setup:
//
//   - its Shamir point (Index, 1..N; never 0, the share at 0 is the secret itself);
//   - its RLWE secret s_i, whose sum over the committee is the collective secret nobody holds;
//   - its X25519 identity key, which seals and opens threshold shares;
//   - a seed from which its Shamir polynomial is derived (so retried keygen tasks resend the
//     same shares);
//   - after setup, its threshold share tsk_i = sum_j f_j(i) and the committee it belongs to.
//
// A client keeps it in its state directory (SaveFile, mode 0600) and reloads it after a
// restart. Make a new Member for every new setup. A Member is not safe for concurrent use, and
// the caller persists it after CombineThresholdShares, the only method that changes it.
type Member struct {
	params     Params
	index      int
	identity   *ecdh.PrivateKey
	shamirSeed [32]byte
	secret     *rlwe.SecretKey

	// Set by CombineThresholdShares.
	setupID        string
	threshold      int
	committee      []int // increasing
	thresholdShare *mhe.ShamirSecretShare
	// decrypted counts the ciphertexts this member has made decryption shares for, against
	// Params.DecryptionBudget.
	decrypted int
}

// NewMember creates key material for the member at Shamir point index (1..65536). All of it is
// drawn from random: pass nil for crypto/rand, or a deterministic source (for example a
// math/rand/v2 ChaCha8) to make simulations reproducible. Never use a predictable source in
// production.
func NewMember(p Params, index int, random io.Reader) (*Member, error) {
	if index < 1 || index > maxMembers {
		return nil, fmt.Errorf("%w: member index %d, want 1..%d", ErrMalformed, index, maxMembers)
	}
	if random == nil {
		random = cryptorand.Reader
	}
	var material [32 + 32 + 64]byte
	if _, err := io.ReadFull(random, material[:]); err != nil {
		return nil, fmt.Errorf("new member %d: read randomness: %w", index, err)
	}
	identity, err := ecdh.X25519().NewPrivateKey(material[:32])
	if err != nil {
		return nil, fmt.Errorf("new member %d: identity key: %w", index, err)
	}
	secret, err := sampleSecretKey(p, material[64:])
	if err != nil {
		return nil, fmt.Errorf("new member %d: %w", index, err)
	}
	m := &Member{params: p, index: index, identity: identity, secret: secret}
	copy(m.shamirSeed[:], material[32:64])
	return m, nil
}

// sampleSecretKey draws a ternary secret from a PRNG keyed with key, in the form lattigo keeps
// secret keys (NTT and Montgomery domain). It is rlwe.KeyGenerator.GenSecretKey with an
// injected PRNG, which the lattigo v5 key generator does not accept.
func sampleSecretKey(p Params, key []byte) (*rlwe.SecretKey, error) {
	prng, err := newStreamPRNG("fedprop/secagg/secret/v1", key)
	if err != nil {
		return nil, err
	}
	sampler, err := ring.NewSampler(prng, p.he.RingQ(), p.he.Xs(), false)
	if err != nil {
		return nil, fmt.Errorf("secret key sampler: %w", err)
	}
	sk := rlwe.NewSecretKey(p.he)
	sampler.Read(sk.Value.Q)
	ringQP := p.he.RingQP()
	if levelP := sk.LevelP(); levelP > -1 {
		ringQP.ExtendBasisSmallNormAndCenter(sk.Value.Q, levelP, sk.Value.Q, sk.Value.P)
	}
	ringQP.NTT(sk.Value, sk.Value)
	ringQP.MForm(sk.Value, sk.Value)
	return sk, nil
}

// Index returns the member's Shamir point.
func (m *Member) Index() int { return m.index }

// IdentityPublicKey returns the member's X25519 identity public key (32 bytes), which the
// coordinator registers at enrolment and hands to the other members as a Recipient.
func (m *Member) IdentityPublicKey() []byte { return m.identity.PublicKey().Bytes() }

// Ready reports whether the threshold setup is complete, so the member can help decrypt.
func (m *Member) Ready() bool { return m.thresholdShare != nil }

// SetupID returns the setup the member's threshold share belongs to ("" before setup).
func (m *Member) SetupID() string { return m.setupID }

// Threshold returns T, the number of members needed to decrypt (0 before setup).
func (m *Member) Threshold() int { return m.threshold }

// Decrypted returns how many ciphertexts the member has made decryption shares for under its
// collective key; it refuses to go past Params.DecryptionBudget.
func (m *Member) Decrypted() int { return m.decrypted }

// Committee returns the committee's Shamir points, in increasing order (nil before setup).
func (m *Member) Committee() []int { return slices.Clone(m.committee) }

// PublicKeyShare returns the member's share of the collective public key over the common
// reference polynomial expanded from crsSeed (setup round 1). The noise in it is drawn by
// lattigo's mhe.PublicKeyGenProtocol from crypto/rand; any share of a member is as good as
// another, and the coordinator keeps the first.
func (m *Member) PublicKeyShare(crsSeed []byte) ([]byte, error) {
	p := m.params
	proto := mhe.NewPublicKeyGenProtocol(p.he)
	crp, crsID, err := crpFromSeed(p, proto, crsSeed)
	if err != nil {
		return nil, err
	}
	share := proto.AllocateShare()
	proto.GenShare(m.secret, crp, &share)
	p.he.RingQP().Reduce(share.Value, share.Value) // the wire form is canonical
	out := make([]byte, keyHeaderSize+8*p.wordsPerQPPoly())
	putHeader(out, kindPublicKeyShare, p)
	copy(out[16:24], crsID[:])
	binary.LittleEndian.PutUint32(out[24:28], uint32(m.index))
	putRows(out[keyHeaderSize:], qpRows(share.Value))
	return out, nil
}

// checkCommittee validates a committee list and returns it sorted by index, with the member's
// own entry checked against its identity key.
func (m *Member) checkCommittee(setupID string, threshold int, committee []Recipient) ([]Recipient, error) {
	if len(setupID) == 0 || len(setupID) > maxSetupID {
		return nil, fmt.Errorf("%w: setup id of %d bytes, want 1..%d", ErrMalformed, len(setupID), maxSetupID)
	}
	sorted := slices.Clone(committee)
	slices.SortFunc(sorted, func(a, b Recipient) int { return a.Index - b.Index })
	self := false
	for i, r := range sorted {
		if r.Index < 1 || r.Index > maxMembers {
			return nil, fmt.Errorf("%w: committee member %d, want 1..%d", ErrMalformed, r.Index, maxMembers)
		}
		if i > 0 && sorted[i-1].Index == r.Index {
			return nil, fmt.Errorf("%w: committee member %d listed twice", ErrDuplicate, r.Index)
		}
		if len(r.IdentityKey) != 32 {
			return nil, fmt.Errorf("%w: identity key of member %d has %d bytes, want 32", ErrMalformed, r.Index, len(r.IdentityKey))
		}
		if r.Index == m.index {
			if !bytes.Equal(r.IdentityKey, m.IdentityPublicKey()) {
				return nil, fmt.Errorf("%w: the committee lists another identity key for member %d", ErrKeyMismatch, m.index)
			}
			self = true
		}
	}
	if !self {
		return nil, fmt.Errorf("%w: committee does not include member %d", ErrMalformed, m.index)
	}
	if threshold < 2 || threshold > len(sorted) {
		return nil, fmt.Errorf("%w: threshold %d for a committee of %d, want 2..%d", ErrMalformed, threshold, len(sorted), len(sorted))
	}
	return sorted, nil
}

// shamirPolynomial returns the member's secret-sharing polynomial f_i of degree threshold-1
// with f_i(0) = s_i. Its other coefficients come from a PRNG keyed by the member's seed and
// everything that defines the setup, so the same setup always gives the same shares (a
// retried keygen task is harmless) and another setup gets an unrelated polynomial. It builds
// what mhe.Thresholdizer.GenShamirPolynomial builds, but from an injected PRNG.
func (m *Member) shamirPolynomial(setupID string, threshold int, committee []Recipient) (mhe.ShamirPolynomial, error) {
	p := m.params
	var setup []byte
	setup = append(setup, p.id[:]...)
	setup = binary.LittleEndian.AppendUint32(setup, uint32(threshold))
	for _, r := range committee {
		setup = binary.LittleEndian.AppendUint32(setup, uint32(r.Index))
		setup = append(setup, r.IdentityKey...)
	}
	prng, err := newStreamPRNG("fedprop/secagg/shamir/v1", m.shamirSeed[:], []byte(setupID), setup)
	if err != nil {
		return mhe.ShamirPolynomial{}, err
	}
	ringQP := p.he.RingQP()
	uniform := ringqp.NewUniformSampler(prng, *ringQP)
	coeffs := make([]ringqp.Poly, threshold)
	coeffs[0] = *m.secret.Value.CopyNew()
	for i := 1; i < threshold; i++ {
		coeffs[i] = ringQP.NewPoly()
		uniform.Read(coeffs[i])
	}
	return mhe.ShamirPolynomial{Value: structs.Vector[ringqp.Poly](coeffs)}, nil
}

// Shamir share plaintext (inside a sealed box): header (16) | from uint32 | to uint32 | poly over QP.
const shamirHeaderSize = headerSize + 8

// SealedThresholdShares returns the member's Shamir share f_i(j) for every other member j of
// the committee, each sealed for its recipient (setup round 2). committee lists every member,
// this one included, with their identity keys; threshold is T (2..N). The result is the same
// on every call with the same arguments.
func (m *Member) SealedThresholdShares(setupID string, threshold int, committee []Recipient) ([]SealedShare, error) {
	p := m.params
	sorted, err := m.checkCommittee(setupID, threshold, committee)
	if err != nil {
		return nil, err
	}
	poly, err := m.shamirPolynomial(setupID, threshold, sorted)
	if err != nil {
		return nil, err
	}
	thr := mhe.NewThresholdizer(p.he)
	ringQP := p.he.RingQP()
	share := thr.AllocateThresholdSecretShare()
	plaintext := make([]byte, shamirHeaderSize+8*p.wordsPerQPPoly())
	own := m.IdentityPublicKey()
	out := make([]SealedShare, 0, len(sorted)-1)
	for _, r := range sorted {
		if r.Index == m.index {
			continue
		}
		thr.GenShamirSecretShare(mhe.ShamirPublicPoint(r.Index), poly, &share)
		ringQP.Reduce(share.Poly, share.Poly)
		putHeader(plaintext, kindShamirShare, p)
		binary.LittleEndian.PutUint32(plaintext[16:20], uint32(m.index))
		binary.LittleEndian.PutUint32(plaintext[20:24], uint32(r.Index))
		putRows(plaintext[shamirHeaderSize:], qpRows(share.Poly))
		context := shareContext(p, setupID, threshold, m.index, r.Index, own, r.IdentityKey)
		box, err := sealBox(m.identity, r.IdentityKey, context, plaintext)
		if err != nil {
			return nil, fmt.Errorf("seal share for member %d: %w", r.Index, err)
		}
		out = append(out, SealedShare{From: m.index, To: r.Index, Box: box})
	}
	return out, nil
}

// CombineThresholdShares opens the boxes addressed to this member, one from every other
// committee member, adds them to the member's own share and keeps the result as its threshold
// share tsk_i. The arguments are those every member passed to SealedThresholdShares. On error
// the member is unchanged; on success the caller persists it.
func (m *Member) CombineThresholdShares(setupID string, threshold int, committee []Recipient, boxes []SealedShare) error {
	p := m.params
	sorted, err := m.checkCommittee(setupID, threshold, committee)
	if err != nil {
		return err
	}
	keys := make(map[int][]byte, len(sorted))
	for _, r := range sorted {
		keys[r.Index] = r.IdentityKey
	}
	// Open and check every box before any key material is computed.
	thr := mhe.NewThresholdizer(p.he)
	var received []mhe.ShamirSecretShare
	moduli := p.qpModuli()
	own := m.IdentityPublicKey()
	seen := make(map[int]bool, len(boxes))
	for _, b := range boxes {
		if b.To != m.index {
			return fmt.Errorf("%w: box for member %d delivered to member %d", ErrMalformed, b.To, m.index)
		}
		senderKey, ok := keys[b.From]
		if !ok || b.From == m.index {
			return fmt.Errorf("%w: box from member %d, not another committee member", ErrMalformed, b.From)
		}
		if seen[b.From] {
			return fmt.Errorf("%w: two boxes from member %d", ErrDuplicate, b.From)
		}
		seen[b.From] = true
		context := shareContext(p, setupID, threshold, b.From, m.index, senderKey, own)
		plaintext, err := openBox(m.identity, senderKey, context, b.Box)
		if err != nil {
			return fmt.Errorf("box from member %d: %w", b.From, err)
		}
		if err := checkHeader(plaintext, kindShamirShare, p); err != nil {
			return fmt.Errorf("box from member %d: %w", b.From, err)
		}
		if err := checkSize(plaintext, kindShamirShare, shamirHeaderSize+8*p.wordsPerQPPoly()); err != nil {
			return fmt.Errorf("box from member %d: %w", b.From, err)
		}
		if int(binary.LittleEndian.Uint32(plaintext[16:20])) != b.From || int(binary.LittleEndian.Uint32(plaintext[20:24])) != m.index {
			return fmt.Errorf("%w: box from member %d names another sender or recipient", ErrMalformed, b.From)
		}
		share := thr.AllocateThresholdSecretShare()
		if _, err := readRows(plaintext[shamirHeaderSize:], qpRows(share.Poly), moduli, kindShamirShare); err != nil {
			return fmt.Errorf("box from member %d: %w", b.From, err)
		}
		received = append(received, share)
	}
	var missing []int
	for _, r := range sorted {
		if r.Index != m.index && !seen[r.Index] {
			missing = append(missing, r.Index)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: no threshold share from members %v", ErrMissingShare, missing)
	}
	poly, err := m.shamirPolynomial(setupID, threshold, sorted)
	if err != nil {
		return err
	}
	tsk := thr.AllocateThresholdSecretShare()
	thr.GenShamirSecretShare(mhe.ShamirPublicPoint(m.index), poly, &tsk)
	for _, share := range received {
		if err := thr.AggregateShares(tsk, share, &tsk); err != nil {
			return fmt.Errorf("aggregate threshold shares: %w", err)
		}
	}
	p.he.RingQP().Reduce(tsk.Poly, tsk.Poly) // persisted in canonical form
	m.setupID = setupID
	m.threshold = threshold
	m.committee = make([]int, len(sorted))
	for i, r := range sorted {
		m.committee[i] = r.Index
	}
	m.thresholdShare = &tsk
	return nil
}

// checkActive validates an active decryption set: exactly T distinct committee points in
// increasing order, the member's own among them.
func (m *Member) checkActive(active []int) error {
	if len(active) != m.threshold {
		return fmt.Errorf("%w: %d active members, the threshold is %d", ErrActiveSet, len(active), m.threshold)
	}
	self := false
	for i, a := range active {
		if i > 0 && active[i-1] >= a {
			return fmt.Errorf("%w: %v is not strictly increasing", ErrActiveSet, active)
		}
		if _, found := slices.BinarySearch(m.committee, a); !found {
			return fmt.Errorf("%w: %d is not a committee member", ErrActiveSet, a)
		}
		self = self || a == m.index
	}
	if !self {
		return fmt.Errorf("%w: %v does not include member %d", ErrActiveSet, active, m.index)
	}
	return nil
}

// DecryptionShare returns this member's share for decrypting aggregate (a Sum's
// MarshalBinary) with the active set fixed beforehand: exactly T committee points in
// increasing order, this member's included. The member turns its threshold share into an
// additive share for that set (mhe.Combiner.GenAdditiveShare) and key-switches the aggregate
// towards the zero key with smudging noise (mhe.KeySwitchProtocol), so the share reveals
// nothing about its key. The caller checks the run, round, purpose and InspectAggregate's
// contribution count before calling, and logs Digest(aggregate).
//
// The member refuses an aggregate of more contributions than Params.MaxContributors, and any
// share that would take it past Params.DecryptionBudget ciphertexts (ErrBeyondBound): the
// flooding noise is sized for that bound and no further. Each share counts against the
// budget, so the caller persists the member (SaveFile) before it sends the share.
func (m *Member) DecryptionShare(aggregate []byte, active []int) ([]byte, error) {
	if !m.Ready() {
		return nil, ErrNotReady
	}
	if err := m.checkActive(active); err != nil {
		return nil, err
	}
	p := m.params
	h, body, err := parseCiphertextSet(p, aggregate)
	if err != nil {
		return nil, err
	}
	nCt := p.CiphertextsFor(h.length)
	moduli := p.he.Q()
	// A malformed aggregate is refused whole, before any key material is touched.
	if err := checkRows(body, moduli, 2*nCt*len(moduli), p.he.N(), kindCiphertext); err != nil {
		return nil, err
	}
	if h.count > p.lit.MaxContributors {
		return nil, fmt.Errorf("%w: an aggregate of %d contributions, the flooding noise hides at most %d", ErrBeyondBound, h.count, p.lit.MaxContributors)
	}
	if m.decrypted+nCt > p.lit.DecryptionBudget {
		return nil, fmt.Errorf("%w: %d more ciphertexts after %d, the key's budget is %d: a new committee setup is due", ErrBeyondBound, nCt, m.decrypted, p.lit.DecryptionBudget)
	}
	points := make([]mhe.ShamirPublicPoint, len(active))
	for i, a := range active {
		points[i] = mhe.ShamirPublicPoint(a)
	}
	own := mhe.ShamirPublicPoint(m.index)
	combiner := mhe.NewCombiner(*p.he.GetRLWEParameters(), own, points, m.threshold)
	additive := rlwe.NewSecretKey(p.he)
	if err := combiner.GenAdditiveShare(points, own, *m.thresholdShare, additive); err != nil {
		return nil, fmt.Errorf("additive share: %w", err)
	}
	// The key switch adds only fresh-encryption-sized noise; the flooding noise that hides
	// the aggregate's secret-dependent noise comes from FloodSampler, seeded from crypto/rand
	// (lattigo's Gaussian sampler is not smooth enough for it: see flood.go).
	keySwitch, err := mhe.NewKeySwitchProtocol(p.he, p.he.Xe())
	if err != nil {
		return nil, fmt.Errorf("key switch: %w", err)
	}
	flood, err := NewFloodSampler(p.lit.SmudgingSigma, nil)
	if err != nil {
		return nil, err
	}
	zero := rlwe.NewSecretKey(p.he)
	level := p.he.MaxLevel()
	ct := hefloat.NewCiphertext(p.he, 1, level)
	share := keySwitch.AllocateShare(level)

	out := make([]byte, decryptionShareHeaderSize+8*nCt*p.wordsPerQPoly())
	putDecryptionShareHeader(out, p, decryptionShareHeader{
		keyID:  h.keyID,
		member: m.index,
		length: h.length,
		digest: sha256.Sum256(aggregate),
		active: activeID(active),
	})
	rest := out[decryptionShareHeaderSize:]
	ringQ := p.he.RingQ().AtLevel(level)
	noise := ringQ.NewPoly()
	wordsQ := p.wordsPerQPoly()
	for k := range nCt {
		// Only c1 enters a share.
		c1 := body[8*(2*k+1)*wordsQ:]
		if _, err := readRows(c1, ct.Value[1].Coeffs, moduli, kindCiphertext); err != nil {
			return nil, err
		}
		keySwitch.GenShare(additive, zero, ct, &share)
		// GenShare may leave coefficients in [q, 2q) (a lazy product plus noise): reduced,
		// so that the wire form is canonical after the noise is added.
		// The ciphertext is in the NTT domain, so the noise is drawn per coefficient and
		// transformed before it is added.
		for _, limb := range noise.Coeffs {
			clear(limb)
		}
		if err := flood.AddTo(noise.Coeffs, moduli); err != nil {
			return nil, err
		}
		ringQ.NTT(noise, noise)
		ringQ.Reduce(share.Value, share.Value)
		ringQ.Add(share.Value, noise, share.Value)
		rest = putRows(rest, share.Value.Coeffs)
	}
	m.decrypted += nCt
	return out, nil
}
