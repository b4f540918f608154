package coordinator

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/task"
)

// committee is the secure-aggregation sub-state machine of a run in he mode: the committee
// setup (the three keygen steps that make the collective key) and the threshold decryption of
// each aggregate by an active set of exactly T members. It decides what each step asks of a
// member, what it accepts back, when the key is complete, which members form the next active
// set and when their shares combine; it issues no task, keeps no deadline and counts no
// attempt. The core runs each step as a phase (tasks, deadlines, retries, the run record) and
// hands it what comes back, so that the collection machinery is written once for every phase.
//
// The setup's persisted part is the run's SecAggState, passed in by the core; what lives only
// here (an unfinished setup, the aggregate being decrypted) a restarted coordinator starts
// again.
type committee struct {
	cfg    SecureAggregationConfig
	params secagg.Params
	// identity holds the X25519 identity keys members announced at registration, for the
	// sealed threshold shares.
	identity map[string][]byte
	keygen   *keygenState
	dec      *decryptState
	// keyInfoCache is keyInfo's value for the current setup.
	keyInfoCache *task.CollectiveKey
}

// keygenState is an unfinished committee setup; it lives only in memory (a restarted
// coordinator starts a new setup).
type keygenState struct {
	step   int
	pk     *secagg.PublicKeyAggregator
	boxes  map[int][]task.SealedShare // recipient index -> boxes
	shares map[int][]byte             // member index -> its public-key share, relayed at step 3
	// endorsements are the members' step-3 signatures over the collective key.
	endorsements map[int]task.Endorsement
}

// decryptState is one aggregate being decrypted by the committee.
type decryptState struct {
	purpose      phase
	aggregate    []byte
	contributors int
	length       int
	active       []int
	shares       map[int][]byte
	excluded     map[int]bool // members that missed a share deadline for this aggregate
	waited       bool
	attempt      int // active sets tried for this aggregate
	// records is what the contributors announced at registration (0: unknown), the bound of
	// the aggregate's counts.
	records int
	// contribs are the results the aggregate sums, in order, as members fetch them; list is
	// what decrypt tasks say of them; digest is secagg.Digest(aggregate).
	contribs []heContribution
	list     []task.Contribution
	digest   string
	// record is the index of this aggregate's DecryptionRecord in the run's record.
	record int
	// refused are the members that refused this aggregate: they are not asked again.
	refused map[int]bool
}

func newCommittee(cfg SecureAggregationConfig) (*committee, error) {
	lit, err := secagg.PresetLiteral(cfg.Parameters)
	if err != nil {
		return nil, fmt.Errorf("run.secure_aggregation.parameters: %w", err)
	}
	params, err := secagg.NewParams(lit)
	if err != nil {
		return nil, fmt.Errorf("secure aggregation: %w", err)
	}
	return &committee{cfg: cfg, params: params, identity: map[string][]byte{}}, nil
}

// memberIndex returns a client's Shamir point, or 0 when it is not a committee member.
func (m *committee) memberIndex(clientID string) int {
	return slices.Index(m.cfg.Committee, clientID) + 1
}

// ready reports whether every member has registered with an identity key.
func (m *committee) ready() bool {
	for _, id := range m.cfg.Committee {
		if len(m.identity[id]) == 0 {
			return false
		}
	}
	return true
}

// newSetup starts the run's next committee setup (generation prev+1) at its first step: its
// id, its common reference string (from the run's seed, so that the same run sets up the
// same way), and the members with their identity keys.
func (m *committee) newSetup(runID string, seed uint64, prev *SecAggState) (*SecAggState, error) {
	gen := 1
	if prev != nil {
		gen = prev.Generation + 1
	}
	setup := fmt.Sprintf("%s/setup-%d", runID, gen)
	crs := sha256.Sum256(binary.BigEndian.AppendUint64([]byte(setup), seed))
	agg, err := secagg.NewPublicKeyAggregator(m.params, crs[:])
	if err != nil {
		return nil, err
	}
	members := make([]task.CommitteeMember, 0, len(m.cfg.Committee))
	for i, id := range m.cfg.Committee {
		members = append(members, task.CommitteeMember{ClientID: id, Index: i + 1, IdentityKey: m.identity[id]})
	}
	m.keygen = &keygenState{step: task.KeygenPublicKey, pk: agg, boxes: map[int][]task.SealedShare{}, shares: map[int][]byte{},
		endorsements: map[int]task.Endorsement{}}
	return &SecAggState{SetupID: setup, CRSSeed: crs[:], Threshold: m.cfg.Threshold, Members: members, Generation: gen}, nil
}

// keyInfo is what a task carrying the collective key says about it, built once per setup and
// shared by every task (read only).
func (m *committee) keyInfo(st *SecAggState) *task.CollectiveKey {
	if k := m.keyInfoCache; k != nil && k.SetupID == st.SetupID && len(k.Endorsements) == len(st.KeyEndorsements) {
		return k
	}
	k := &task.CollectiveKey{SetupID: st.SetupID, Threshold: st.Threshold, Endorsements: st.KeyEndorsements}
	for _, mem := range st.Members {
		k.Members = append(k.Members, mem.ClientID)
	}
	m.keyInfoCache = k
	return k
}

// keygenSpec is what the current setup step asks of a member.
func (m *committee) keygenSpec(st *SecAggState, clientID string) *task.KeygenSpec {
	idx := m.memberIndex(clientID)
	spec := &task.KeygenSpec{SetupID: st.SetupID, Step: m.keygen.step, Index: idx, Threshold: st.Threshold, CRSSeed: st.CRSSeed,
		Parameters: m.cfg.Parameters}
	if m.keygen.step >= task.KeygenShares {
		spec.Members = st.Members
	}
	if m.keygen.step == task.KeygenCombine {
		spec.Boxes = m.keygen.boxes[idx]
		for i := range st.Members {
			spec.PublicKeyShares = append(spec.PublicKeyShares, m.keygen.shares[i+1])
		}
	}
	return spec
}

// submitKeygen folds one member's answer to the current step into the setup; an answer it
// refuses leaves the setup unchanged, and the error names the field at fault.
func (m *committee) submitKeygen(st *SecAggState, r task.Result, perr func(string, error) error) error {
	idx := m.memberIndex(r.ClientID)
	switch m.keygen.step {
	case task.KeygenPublicKey:
		if len(r.PublicKeyShare) == 0 {
			return perr("public_key_share", fmt.Errorf("%w: missing", ErrInvalid))
		}
		if _, err := m.keygen.pk.Add(r.PublicKeyShare); err != nil {
			return perr("public_key_share", fmt.Errorf("%w: %v", ErrInvalid, err))
		}
		// Relayed to the other members as sent: they check the member's own signature, which
		// the coordinator can neither make nor vouch for.
		digest := sha256.Sum256(r.PublicKeyShare)
		mem := &st.Members[idx-1]
		mem.PublicKeyShareDigest, mem.Endorsement = digest[:], r.Endorsement
		m.keygen.shares[idx] = r.PublicKeyShare
	case task.KeygenShares:
		n := len(m.cfg.Committee)
		if len(r.Boxes) != n-1 {
			return perr("boxes", fmt.Errorf("%w: %d sealed shares, want one for each of the %d other members", ErrInvalid, len(r.Boxes), n-1))
		}
		seen := map[int]bool{}
		for _, b := range r.Boxes {
			if b.From != idx || b.To < 1 || b.To > n || b.To == idx || seen[b.To] || len(b.Box) == 0 {
				return perr("boxes", fmt.Errorf("%w: share from %d to %d is not one member %d may send", ErrInvalid, b.From, b.To, idx))
			}
			seen[b.To] = true
		}
		for _, b := range r.Boxes {
			m.keygen.boxes[b.To] = append(m.keygen.boxes[b.To], b)
		}
	case task.KeygenCombine:
		if r.Endorsement != nil {
			m.keygen.endorsements[idx] = *r.Endorsement
		}
	}
	return nil
}

// completeStep ends the current setup step once every member answered it: it moves on to the
// next step, or, after the last, makes st's collective key and reports done.
func (m *committee) completeStep(st *SecAggState) (done bool, err error) {
	switch m.keygen.step {
	case task.KeygenPublicKey:
		m.keygen.step = task.KeygenShares
		return false, nil
	case task.KeygenShares:
		for to := range m.keygen.boxes {
			slices.SortFunc(m.keygen.boxes[to], func(a, b task.SealedShare) int { return a.From - b.From })
		}
		m.keygen.step = task.KeygenCombine
		return false, nil
	}
	pk, err := m.keygen.pk.PublicKey()
	if err != nil {
		return false, fmt.Errorf("collective public key: %w", err)
	}
	st.PublicKey = pk
	st.Ready = true
	st.KeyEndorsements = nil
	for i := range st.Members {
		if e, ok := m.keygen.endorsements[i+1]; ok {
			st.KeyEndorsements = append(st.KeyEndorsements, e)
		}
	}
	m.keygen = nil
	return true, nil
}

// step is the setup step in progress (0 when none).
func (m *committee) step() int {
	if m.keygen == nil {
		return 0
	}
	return m.keygen.step
}

// rekeyDue reports whether a round whose train aggregates take trainCiphertexts ciphertexts
// (a tree's levels are several aggregates) and whose evaluate results are evalLen values, each
// retried up to maxAttempts times with as many active sets as the committee can form, could
// take st's key past the decryptions it may serve.
func (m *committee) rekeyDue(st *SecAggState, trainCiphertexts, evalLen, maxAttempts int) bool {
	if st == nil || !st.Ready || st.Decrypted == 0 {
		// A fresh key is never replaced: a round that needs more than a key may serve would
		// otherwise re-key for ever (the members' own budget still holds).
		return false
	}
	limit := m.cfg.RekeyAfter
	if limit == 0 {
		limit = m.params.DecryptionBudget()
	}
	cost := trainCiphertexts + m.params.CiphertextsFor(evalLen)
	sets := len(m.cfg.Committee) - m.cfg.Threshold + 1
	return st.Decrypted+cost*maxAttempts*sets > limit
}

// nextSet fixes and orders a new active set of exactly T members for the aggregate being
// decrypted: the first in committee order that are live and have neither missed a deadline
// for this aggregate nor refused it. It reports false, changing nothing, when fewer than T
// are available; otherwise st counts the decryptions the set will make under its key.
func (m *committee) nextSet(st *SecAggState, live func(clientID string) bool) (ids []string, points []int, ok bool) {
	t := m.cfg.Threshold
	for i, id := range m.cfg.Committee {
		if len(ids) == t {
			break
		}
		if !live(id) || m.dec.excluded[i+1] || m.dec.refused[i+1] {
			continue
		}
		ids = append(ids, id)
		points = append(points, i+1)
	}
	if len(ids) < t {
		return nil, nil, false
	}
	m.dec.active = points
	m.dec.shares = map[int][]byte{}
	m.dec.attempt++
	// Every member of the set decrypts the aggregate's ciphertexts under the current key.
	st.Decrypted += m.params.CiphertextsFor(m.dec.length)
	return ids, points, true
}

// decryptSpec is what a decrypt task asks of the active set (the core adds the noise the
// contributors were asked for).
func (m *committee) decryptSpec(round int) *task.DecryptSpec {
	return &task.DecryptSpec{
		Purpose:        m.dec.purpose.kind(),
		AggregateRound: round,
		Contributors:   m.dec.contributors,
		Aggregate:      m.dec.aggregate,
		Active:         m.dec.active,
		Contributions:  m.dec.list,
	}
}

// addShare keeps a member's decryption share.
func (m *committee) addShare(clientID string, share []byte) {
	m.dec.shares[m.memberIndex(clientID)] = share
}

// refusers are the active members that answered without a share: they refused the aggregate
// (their own policy; see client.Member), refuse it again, and are not asked again.
func (m *committee) refusers() []int {
	var refused []int
	for _, p := range m.dec.active {
		if _, ok := m.dec.shares[p]; !ok {
			refused = append(refused, p)
		}
	}
	for _, p := range refused {
		m.dec.refused[p] = true
	}
	return refused
}

// combine decrypts the aggregate from the active set's shares. When they do not combine the
// whole set is excluded from this aggregate, so that the next set is another.
func (m *committee) combine() ([]float64, error) {
	values, err := secagg.CombineDecryption(m.params, m.dec.aggregate, m.dec.active, m.dec.shares)
	if err != nil {
		for _, p := range m.dec.active {
			m.dec.excluded[p] = true
		}
		return nil, err
	}
	return values[:m.dec.length], nil
}

// timedOut marks, at a share deadline, the members still owing their share as excluded from
// this aggregate, and those of the set that answered without one as refusing it.
func (m *committee) timedOut(outstanding []string) {
	for _, id := range outstanding {
		m.dec.excluded[m.memberIndex(id)] = true
	}
	for _, p := range m.dec.active {
		if _, answered := m.dec.shares[p]; !answered && !m.dec.excluded[p] {
			m.dec.refused[p] = true // answered without a share before the others timed out
		}
	}
}
