package coordinator

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/task"
)

// Secure-aggregation modes.
const (
	SecAggNone = "none"
	SecAggHE   = "he"
)

// SecureAggregationConfig chooses how client sums are protected from the coordinator.
type SecureAggregationConfig struct {
	// Mode is "none" (plaintext sums, for trusted research settings) or "he" (threshold
	// multiparty CKKS: the coordinator adds ciphertexts it cannot read).
	Mode string `yaml:"mode" json:"mode"`
	// Committee lists the client ids that jointly hold the decryption key, in Shamir-point
	// order (the first is point 1).
	Committee []string `yaml:"committee" json:"committee,omitempty"`
	// Threshold is T: any T members can decrypt an aggregate, no T-1 can.
	Threshold int `yaml:"threshold" json:"threshold,omitempty"`
	// MinContributors is the fewest results an aggregate must sum before the committee helps
	// decrypt it (members enforce their own copy of this setting).
	MinContributors int `yaml:"min_contributors" json:"min_contributors,omitempty"`
	// Parameters names the parameter set (secagg.PresetLiteral): "simulation" (the default)
	// or "key-recovery", the lighter set for app cohorts. Members and clients accept only
	// the sets their own configuration names.
	Parameters string `yaml:"parameters" json:"parameters,omitempty"`
	// RekeyAfter is how many ciphertext decryptions a collective key serves before the
	// coordinator runs a new committee setup, at the start of a round; 0 means the parameter
	// set's decryption budget (members refuse to go past it), less a margin for retries.
	RekeyAfter int `yaml:"rekey_after" json:"rekey_after,omitempty"`
}

func (c SecureAggregationConfig) withDefaults() SecureAggregationConfig {
	if c.Mode == "" {
		c.Mode = SecAggNone
	}
	if c.Mode == SecAggHE && c.MinContributors == 0 {
		c.MinContributors = 2
	}
	if c.Mode == SecAggHE && c.Parameters == "" {
		c.Parameters = secagg.PresetSimulation
	}
	return c
}

func (c SecureAggregationConfig) validate(quorum int) []error {
	var errs []error
	switch c.Mode {
	case SecAggNone:
		return nil
	case SecAggHE:
	default:
		return []error{fmt.Errorf("run.secure_aggregation.mode: %q is not none or he", c.Mode)}
	}
	n := len(c.Committee)
	if n == 0 {
		errs = append(errs, errors.New("run.secure_aggregation.committee: required in he mode"))
	}
	seen := map[string]bool{}
	for _, id := range c.Committee {
		if id == "" || seen[id] {
			errs = append(errs, fmt.Errorf("run.secure_aggregation.committee: %q is empty or listed twice", id))
		}
		seen[id] = true
	}
	if c.Threshold < 1 || c.Threshold > n {
		errs = append(errs, fmt.Errorf("run.secure_aggregation.threshold: must be in [1, %d], got %d", n, c.Threshold))
	}
	if c.MinContributors < 2 {
		errs = append(errs, fmt.Errorf("run.secure_aggregation.min_contributors: must be at least 2, got %d", c.MinContributors))
	}
	if quorum < c.MinContributors {
		errs = append(errs, fmt.Errorf("run.quorum: %d is below secure_aggregation.min_contributors %d: the committee would refuse to decrypt such a round", quorum, c.MinContributors))
	}
	if lit, err := secagg.PresetLiteral(c.Parameters); err != nil {
		errs = append(errs, fmt.Errorf("run.secure_aggregation.parameters: %q is not one of %v", c.Parameters, secagg.Presets()))
	} else {
		if n > lit.MaxCommittee {
			errs = append(errs, fmt.Errorf("run.secure_aggregation.committee: %d members, the %s parameter set's flooding noise is sized for at most %d", n, c.Parameters, lit.MaxCommittee))
		}
		if c.RekeyAfter < 0 || c.RekeyAfter > lit.DecryptionBudget {
			errs = append(errs, fmt.Errorf("run.secure_aggregation.rekey_after: %d, want 0 (the default) to %d, the %s parameter set's decryption budget", c.RekeyAfter, lit.DecryptionBudget, c.Parameters))
		}
	}
	return errs
}

// SecAggState is the persisted committee setup of a run: a restarted coordinator needs no new
// setup.
type SecAggState struct {
	SetupID   string                 `json:"setup_id"`
	CRSSeed   []byte                 `json:"crs_seed"`
	Threshold int                    `json:"threshold"`
	Members   []task.CommitteeMember `json:"members"`
	PublicKey []byte                 `json:"public_key,omitempty"`
	Ready     bool                   `json:"ready"`
	// KeyEndorsements are the members' signatures over the collective key, relayed with
	// every task that carries it so that clients can check who made it.
	KeyEndorsements []task.Endorsement `json:"key_endorsements,omitempty"`
	// Generation numbers the run's committee setups (1 for the first); every setup has its
	// own id and CRS.
	Generation int `json:"generation"`
	// Decrypted counts the ciphertext decryptions asked under this key, every active set of
	// every aggregate: an upper bound on any member's own count against its budget.
	Decrypted int `json:"decrypted,omitempty"`
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

func (c *Core) he() bool { return c.cfg.SecureAggregation.Mode == SecAggHE }

// memberIndex returns a client's Shamir point, or 0 when it is not a committee member.
func (c *Core) memberIndex(clientID string) int {
	return slices.Index(c.cfg.SecureAggregation.Committee, clientID) + 1
}

// committeeReady reports whether every committee member has registered with an identity key.
func (c *Core) committeeReady() bool {
	for _, id := range c.cfg.SecureAggregation.Committee {
		if len(c.identity[id]) == 0 {
			return false
		}
	}
	return true
}

func (c *Core) startKeygen(step int) {
	if step == task.KeygenPublicKey {
		c.attemptFor(phaseKeygen, 0)
		gen := 1
		if c.run.SecAgg != nil {
			gen = c.run.SecAgg.Generation + 1
		}
		setup := fmt.Sprintf("%s/setup-%d", c.cfg.ID, gen)
		seed := sha256.Sum256(binary.BigEndian.AppendUint64([]byte(setup), c.cfg.Seed))
		agg, err := secagg.NewPublicKeyAggregator(c.params, seed[:])
		if err != nil {
			c.fail(fmt.Sprintf("committee setup: %v", err))
			return
		}
		members := make([]task.CommitteeMember, 0, len(c.cfg.SecureAggregation.Committee))
		for i, id := range c.cfg.SecureAggregation.Committee {
			members = append(members, task.CommitteeMember{ClientID: id, Index: i + 1, IdentityKey: c.identity[id]})
		}
		c.run.SecAgg = &SecAggState{SetupID: setup, CRSSeed: seed[:], Threshold: c.cfg.SecureAggregation.Threshold, Members: members, Generation: gen}
		c.keygen = &keygenState{pk: agg, boxes: map[int][]task.SealedShare{}, shares: map[int][]byte{}, endorsements: map[int]task.Endorsement{}}
		c.pending.Run = c.snapshot()
	}
	c.keygen.step = step
	c.beginCollect(phaseKeygen, c.cfg.SecureAggregation.Committee)
	c.note(slog.LevelInfo, "committee setup step", slog.Int("step", step), slog.String("setup", c.run.SecAgg.SetupID),
		slog.Int("members", len(c.cfg.SecureAggregation.Committee)), slog.Int("threshold", c.cfg.SecureAggregation.Threshold))
}

// keyInfo is what a task carrying the collective key says about it, built once per setup and
// shared by every task (read only).
func (c *Core) keyInfo() *task.CollectiveKey {
	st := c.run.SecAgg
	if k := c.keyInfoCache; k != nil && k.SetupID == st.SetupID && len(k.Endorsements) == len(st.KeyEndorsements) {
		return k
	}
	k := &task.CollectiveKey{SetupID: st.SetupID, Threshold: st.Threshold, Endorsements: st.KeyEndorsements}
	for _, m := range st.Members {
		k.Members = append(k.Members, m.ClientID)
	}
	c.keyInfoCache = k
	return k
}

func (c *Core) keygenTask(t *task.Task, clientID string) {
	st := c.run.SecAgg
	idx := c.memberIndex(clientID)
	spec := &task.KeygenSpec{SetupID: st.SetupID, Step: c.keygen.step, Index: idx, Threshold: st.Threshold, CRSSeed: st.CRSSeed,
		Parameters: c.cfg.SecureAggregation.Parameters}
	if c.keygen.step >= task.KeygenShares {
		spec.Members = st.Members
	}
	if c.keygen.step == task.KeygenCombine {
		spec.Boxes = c.keygen.boxes[idx]
		for i := range st.Members {
			spec.PublicKeyShares = append(spec.PublicKeyShares, c.keygen.shares[i+1])
		}
	}
	t.Keygen = spec
}

// submitKeygen folds one member's keygen result.
func (c *Core) submitKeygen(r task.Result, perr func(string, error) error) error {
	idx := c.memberIndex(r.ClientID)
	switch c.keygen.step {
	case task.KeygenPublicKey:
		if len(r.PublicKeyShare) == 0 {
			return perr("public_key_share", fmt.Errorf("%w: missing", ErrInvalid))
		}
		if _, err := c.keygen.pk.Add(r.PublicKeyShare); err != nil {
			return perr("public_key_share", fmt.Errorf("%w: %v", ErrInvalid, err))
		}
		// Relayed to the other members as sent: they check the member's own signature, which
		// the coordinator can neither make nor vouch for.
		digest := sha256.Sum256(r.PublicKeyShare)
		m := &c.run.SecAgg.Members[idx-1]
		m.PublicKeyShareDigest, m.Endorsement = digest[:], r.Endorsement
		c.keygen.shares[idx] = r.PublicKeyShare
	case task.KeygenShares:
		n := len(c.cfg.SecureAggregation.Committee)
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
			c.keygen.boxes[b.To] = append(c.keygen.boxes[b.To], b)
		}
	case task.KeygenCombine:
		if r.Endorsement != nil {
			c.keygen.endorsements[idx] = *r.Endorsement
		}
	}
	return nil
}

func (c *Core) finishKeygen() {
	switch c.keygen.step {
	case task.KeygenPublicKey:
		c.startKeygen(task.KeygenShares)
	case task.KeygenShares:
		for to := range c.keygen.boxes {
			slices.SortFunc(c.keygen.boxes[to], func(a, b task.SealedShare) int { return a.From - b.From })
		}
		c.startKeygen(task.KeygenCombine)
	case task.KeygenCombine:
		pk, err := c.keygen.pk.PublicKey()
		if err != nil {
			c.fail(fmt.Sprintf("committee setup: collective public key: %v", err))
			return
		}
		c.run.SecAgg.PublicKey = pk
		c.run.SecAgg.Ready = true
		c.run.SecAgg.KeyEndorsements = nil
		for i := range c.run.SecAgg.Members {
			if e, ok := c.keygen.endorsements[i+1]; ok {
				c.run.SecAgg.KeyEndorsements = append(c.run.SecAgg.KeyEndorsements, e)
			}
		}
		c.keygen = nil
		c.pending.Run = c.snapshot()
		c.note(slog.LevelInfo, "committee setup complete", slog.String("setup", c.run.SecAgg.SetupID),
			slog.Int("members", len(c.run.SecAgg.Members)), slog.Int("threshold", c.run.SecAgg.Threshold))
		if c.encoder == nil {
			c.startPhase(phaseStats, 0)
		} else {
			// A new key for a run under way (re-keying, or a restart during one): training
			// goes on where it stopped.
			c.startPhase(phaseTrain, c.run.LastRound+1)
		}
	}
}

// rekeyDue reports whether the next round could take the collective key past the decryptions
// it may serve: the round's train (and evaluation) aggregates, each retried as often as the
// run allows with as many active sets as the committee can form.
func (c *Core) rekeyDue() bool {
	st := c.run.SecAgg
	if st == nil || !st.Ready || st.Decrypted == 0 {
		// A fresh key is never replaced: a round that needs more than a key may serve would
		// otherwise re-key for ever (the members' own budget still holds).
		return false
	}
	limit := c.cfg.SecureAggregation.RekeyAfter
	if limit == 0 {
		limit = c.params.DecryptionBudget()
	}
	cost := c.params.CiphertextsFor(c.resultLen(task.KindTrain)) + c.params.CiphertextsFor(c.resultLen(task.KindEvaluate))
	sets := len(c.cfg.SecureAggregation.Committee) - c.cfg.SecureAggregation.Threshold + 1
	return st.Decrypted+cost*c.cfg.MaxAttempts*sets > limit
}

// startDecrypt asks the committee to decrypt the phase's aggregate: the sum of the results
// the members' differencing rules admit (see admissible), recorded in the run before any
// decrypt task goes out.
func (c *Core) startDecrypt() {
	sum := c.acc.(*heSum)
	minimum := c.cfg.SecureAggregation.MinContributors
	kept, dropped := admissible(sum.contribs, c.run.Decryptions, c.phase.kind(), minimum)
	if len(kept) < minimum {
		c.phaseFailed(fmt.Sprintf("of %d results, %d can be decrypted together without the aggregate differing from one decrypted before by fewer than min_contributors %d clients",
			len(sum.contribs), len(kept), minimum))
		return
	}
	if len(dropped) > 0 {
		if err := sum.keep(kept); err != nil {
			c.fail(fmt.Sprintf("%s phase of round %d: aggregate: %v", c.phase.kind(), c.round, err))
			return
		}
		c.submitters = c.submitters[:0]
		for _, k := range kept {
			c.submitters = append(c.submitters, k.client)
		}
		c.note(slog.LevelWarn, "results left out of the aggregate so that it differs from every one decrypted before by none or at least min_contributors clients",
			slog.String("purpose", c.phase.kind().String()), slog.Int("round", c.round), slog.Int("kept", len(kept)),
			slog.Any("left_out", firstIDs(dropped, 20)), slog.Int("min_contributors", minimum))
	}
	agg, err := sum.sum.MarshalBinary()
	if err != nil {
		c.fail(fmt.Sprintf("%s phase of round %d: aggregate: %v", c.phase.kind(), c.round, err))
		return
	}
	c.dec = &decryptState{purpose: c.phase, aggregate: agg, contributors: sum.count(), length: sum.sum.Length(), excluded: map[int]bool{},
		records: c.submittedRecords(), contribs: kept, digest: secagg.Digest(agg), refused: map[int]bool{}}
	rec := DecryptionRecord{Round: c.round, Purpose: c.phase.kind().String(), Digest: c.dec.digest}
	for _, k := range kept {
		c.dec.list = append(c.dec.list, task.Contribution{ClientID: k.client, Digest: k.digest[:], Endorsement: k.endorsement})
		rec.Contributors = append(rec.Contributors, k.client)
		rec.ContributionDigests = append(rec.ContributionDigests, hex.EncodeToString(k.digest[:]))
	}
	c.dec.record = c.recordDecryption(rec)
	c.phase = phaseDecrypt
	c.note(slog.LevelInfo, "aggregate ready for decryption", slog.String("purpose", c.dec.purpose.kind().String()), slog.Int("round", c.round),
		slog.Int("contributors", c.dec.contributors), slog.String("digest", c.dec.digest))
	c.nextDecryptSet()
}

// recordDecryption appends rec to the run's record of decryptions and returns its index. The
// contribution digests of other rounds are dropped from the record: each contribution is
// signed for its round, so only this round's can come back, and the record stays the size of
// a round however long the run.
func (c *Core) recordDecryption(rec DecryptionRecord) int {
	for i, old := range c.run.Decryptions {
		if old.Round != rec.Round && old.ContributionDigests != nil {
			old.ContributionDigests = nil
			c.run.Decryptions[i] = old
		}
	}
	c.run.Decryptions = append(c.run.Decryptions, rec)
	c.pending.Run = c.snapshot()
	return len(c.run.Decryptions) - 1
}

// nextDecryptSet fixes and orders a new active set of exactly T live members (none that
// already missed a deadline for this aggregate) before any share is computed. It reports
// false when fewer than T are available.
func (c *Core) nextDecryptSet() bool {
	t := c.cfg.SecureAggregation.Threshold
	var active []string
	var points []int
	for i, id := range c.cfg.SecureAggregation.Committee {
		if len(active) == t {
			break
		}
		seen, registered := c.clients[id]
		if !registered || c.dec.excluded[i+1] || c.dec.refused[i+1] || c.tick-seen > c.deadlineTicks {
			continue
		}
		active = append(active, id)
		points = append(points, i+1)
	}
	if len(active) < t {
		return false
	}
	c.dec.active = points
	c.dec.shares = map[int][]byte{}
	c.dec.attempt++
	// Every member of the set decrypts the aggregate's ciphertexts under the current key.
	c.run.SecAgg.Decrypted += c.params.CiphertextsFor(c.dec.length)
	// The record names every active set asked, before any of them answers: a member's share
	// log must find its set here.
	rec := c.run.Decryptions[c.dec.record]
	rec.Active = append(slices.Clone(rec.Active), slices.Clone(points))
	c.run.Decryptions[c.dec.record] = rec
	c.pending.Run = c.snapshot()
	c.beginCollect(phaseDecrypt, active)
	c.note(slog.LevelInfo, "decryption set fixed", slog.Int("round", c.round), slog.String("purpose", c.dec.purpose.kind().String()),
		slog.Any("active", points), slog.Int("attempt", c.dec.attempt))
	return true
}

func (c *Core) decryptTask(t *task.Task) {
	t.Decrypt = &task.DecryptSpec{
		Purpose:        c.dec.purpose.kind(),
		AggregateRound: c.round,
		Contributors:   c.dec.contributors,
		Aggregate:      c.dec.aggregate,
		Active:         c.dec.active,
		Contributions:  c.dec.list,
	}
	// What the contributors were asked for, so that members can check the noise the sum
	// carries against their own floor.
	switch c.dec.purpose {
	case phaseTrain:
		t.Decrypt.DP = c.trainDPSpec()
	case phaseStats, phaseEvaluate:
		t.Decrypt.Noise = c.releaseNoise()
	}
}

func (c *Core) submitDecrypt(r task.Result, perr func(string, error) error) error {
	if len(r.DecryptionShare) == 0 {
		return perr("decryption_share", fmt.Errorf("%w: missing", ErrInvalid))
	}
	c.dec.shares[c.memberIndex(r.ClientID)] = r.DecryptionShare
	return nil
}

// progressDecrypt combines the shares once all of the active set answered; past the deadline
// it excludes the members that did not and tries a new set, and when fewer than T members
// remain it waits one more deadline for members to come back, then fails the phase.
func (c *Core) progressDecrypt() {
	if len(c.outstanding) == 0 && c.dec.active != nil {
		var refused []int
		for _, p := range c.dec.active {
			if _, ok := c.dec.shares[p]; !ok {
				refused = append(refused, p) // answered without a share: a refusal
			}
		}
		if len(refused) > 0 {
			// A member that refused this aggregate (its own policy: see client.Member) refuses
			// it again; the others may not, so the next set goes without it.
			for _, p := range refused {
				c.dec.refused[p] = true
			}
			c.note(slog.LevelWarn, "committee members refused the aggregate; fixing a new set without them", slog.Int("round", c.round),
				slog.String("purpose", c.dec.purpose.kind().String()), slog.Any("refused", refused), slog.String("digest", c.dec.digest))
			c.retryDecrypt()
			return
		}
		values, err := secagg.CombineDecryption(c.params, c.dec.aggregate, c.dec.active, c.dec.shares)
		if err != nil {
			c.note(slog.LevelWarn, "decryption shares did not combine; trying another set", slog.Int("round", c.round), slog.String("err", err.Error()))
			for _, p := range c.dec.active {
				c.dec.excluded[p] = true
			}
			c.retryDecrypt()
			return
		}
		dec := c.dec
		c.dec = nil
		c.phase = dec.purpose
		if err := c.plausibleAggregate(dec.purpose, values[:dec.length], dec.contributors, dec.records); err != nil {
			// No single result could be read: the whole round is discarded, never committed.
			c.implausible++
			c.noteEvent(EventAggregateDiscarded, slog.LevelError, "implausible aggregate discarded", slog.String("purpose", dec.purpose.kind().String()),
				slog.Int("round", c.round), slog.Int("contributors", dec.contributors), slog.String("why", err.Error()))
			c.phaseFailed(fmt.Sprintf("implausible %s aggregate: %v", dec.purpose.kind(), err))
			return
		}
		c.finishWith(values[:dec.length], dec.contributors)
		return
	}
	if c.dec.active == nil && c.nextDecryptSet() {
		return
	}
	if c.tick < c.deadline {
		return
	}
	if c.dec.active != nil {
		for _, id := range c.Outstanding() {
			c.dec.excluded[c.memberIndex(id)] = true
		}
		for _, p := range c.dec.active {
			if _, answered := c.dec.shares[p]; !answered && !c.dec.excluded[p] {
				c.dec.refused[p] = true // answered without a share before the others timed out
			}
		}
		c.note(slog.LevelWarn, "committee members missed the decryption deadline; fixing a new set", slog.Int("round", c.round),
			slog.Any("missing", c.Outstanding()))
	}
	c.retryDecrypt()
}

func (c *Core) retryDecrypt() {
	if c.nextDecryptSet() {
		return
	}
	if !c.dec.waited {
		// Wait one more deadline for enough members to come back.
		c.dec.waited, c.dec.active = true, nil
		c.outstanding = map[string]task.Task{}
		c.deadline = c.tick + c.deadlineTicks
		c.note(slog.LevelWarn, "fewer than T live committee members; waiting", slog.Int("round", c.round),
			slog.Int("threshold", c.cfg.SecureAggregation.Threshold))
		return
	}
	if c.dec.purpose == phaseStats && len(c.dec.refused) == 0 && c.attempt < c.cfg.MaxAttempts {
		// Clients answer statistics once per run (a repeat gets the same ciphertext): rather
		// than collect them again, the same aggregate waits for the committee, one attempt per
		// deadline.
		c.attempt++
		c.dec.waited, c.dec.active, c.dec.excluded = false, nil, map[int]bool{}
		c.outstanding = map[string]task.Task{}
		c.deadline = c.tick + c.deadlineTicks
		c.note(slog.LevelWarn, "fewer than T live committee members for the statistics aggregate; asking again", slog.Int("attempt", c.attempt),
			slog.Int("threshold", c.cfg.SecureAggregation.Threshold))
		return
	}
	purpose := c.dec.purpose
	c.dec = nil
	c.phase = purpose
	c.phaseFailed(fmt.Sprintf("fewer than T=%d live committee members could decrypt the %s aggregate of round %d before the deadline",
		c.cfg.SecureAggregation.Threshold, purpose.kind(), c.round))
}

// heSum is the running sum of one phase's encrypted results, with the results themselves:
// committee members fetch them to check that the aggregate is their sum.
type heSum struct {
	sum      *secagg.Sum
	contribs []heContribution
}

// heContribution is one client's encrypted result as the coordinator keeps it until the
// phase's aggregate is decrypted.
type heContribution struct {
	client      string
	digest      [sha256.Size]byte
	ciphertext  []byte
	endorsement *task.Endorsement
}

func (s *heSum) add(v task.Vector) error {
	if v.Ciphertext == nil {
		return errors.New("this run aggregates encrypted sums: a plaintext result is refused")
	}
	if err := s.sum.Add(v.Ciphertext); err != nil {
		return err
	}
	return nil
}

func (s *heSum) count() int { return s.sum.Count() }

// keep makes the sum that of kept alone.
func (s *heSum) keep(kept []heContribution) error {
	s.sum.Reset()
	for _, k := range kept {
		if err := s.sum.Add(k.ciphertext); err != nil {
			return fmt.Errorf("client %s: %w", k.client, err)
		}
	}
	s.contribs = kept
	return nil
}

// addContribution adds an encrypted result to the phase's sum and keeps it, with its digest
// and its client's signature, for the members' check.
func (c *Core) addContribution(r task.Result) error {
	s := c.acc.(*heSum)
	if err := s.add(r.Sum); err != nil {
		return err
	}
	s.contribs = append(s.contribs, heContribution{client: r.ClientID, digest: sha256.Sum256(r.Sum.Ciphertext), ciphertext: r.Sum.Ciphertext,
		endorsement: r.Endorsement})
	return nil
}

// Contributions returns, to a committee member holding a decrypt task for the aggregate q
// names, that aggregate's contributions in the task's order, so that the member can re-add
// them. The slices are the coordinator's own and must not be changed.
func (c *Core) Contributions(q task.ContributionQuery) ([][]byte, error) {
	perr := func(field string, err error) error {
		return &ProtocolError{Client: q.ClientID, Run: q.RunID, Round: q.Round, Field: field, Err: err}
	}
	if q.RunID != c.cfg.ID {
		return nil, perr("run_id", fmt.Errorf("%w: the active run is %q", ErrStale, c.cfg.ID))
	}
	t, ok := c.outstanding[q.ClientID]
	if c.dec == nil || !ok || t.Kind != task.KindDecrypt {
		return nil, perr("client_id", fmt.Errorf("%w: no decrypt task is outstanding for this client", ErrStale))
	}
	if q.Round != c.round || q.Purpose != c.dec.purpose.kind() || q.AggregateDigest != c.dec.digest {
		return nil, perr("aggregate_sha256", fmt.Errorf("%w: the aggregate being decrypted is the %s aggregate of round %d, sha256 %s",
			ErrStale, c.dec.purpose.kind(), c.round, c.dec.digest))
	}
	out := make([][]byte, len(c.dec.contribs))
	for i, k := range c.dec.contribs {
		out[i] = k.ciphertext
	}
	return out, nil
}
