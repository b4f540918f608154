package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/fedprop/fedprop/model/gbdt"
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

func (c *Core) he() bool { return c.cfg.SecureAggregation.Mode == SecAggHE }

// startKeygen runs a setup step as a phase with the whole committee as its cohort; step 1
// starts a new setup (a new generation, recorded in the run before any task goes out).
func (c *Core) startKeygen(step int) {
	if step == task.KeygenPublicKey {
		c.attemptFor(phaseKeygen, 0)
		st, err := c.sec.newSetup(c.cfg.ID, c.cfg.Seed, c.run.SecAgg)
		if err != nil {
			c.fail(fmt.Sprintf("committee setup: %v", err))
			return
		}
		c.run.SecAgg = st
		c.pending.Run = c.snapshot()
	}
	c.beginCollect(phaseKeygen, c.cfg.SecureAggregation.Committee)
	c.note(slog.LevelInfo, "committee setup step", slog.Int("step", step), slog.String("setup", c.run.SecAgg.SetupID),
		slog.Int("members", len(c.cfg.SecureAggregation.Committee)), slog.Int("threshold", c.cfg.SecureAggregation.Threshold))
}

// finishKeygen ends a setup step every member answered: the next step, or, with the key made,
// the phase the run was waiting for.
func (c *Core) finishKeygen() {
	done, err := c.sec.completeStep(c.run.SecAgg)
	if err != nil {
		c.fail(fmt.Sprintf("committee setup: %v", err))
		return
	}
	if !done {
		c.startKeygen(c.sec.step())
		return
	}
	c.pending.Run = c.snapshot()
	c.note(slog.LevelInfo, "committee setup complete", slog.String("setup", c.run.SecAgg.SetupID),
		slog.Int("members", len(c.run.SecAgg.Members)), slog.Int("threshold", c.run.SecAgg.Threshold))
	if c.encoder == nil {
		c.startPhase(phaseStats, 0)
	} else {
		// A new key for a run under way (re-keying, or a restart during one): training goes
		// on where it stopped.
		c.startPhase(phaseTrain, c.run.LastRound+1)
	}
}

// rekeyDue reports whether the next round could take the collective key past the decryptions
// it may serve (committee.rekeyDue).
func (c *Core) rekeyDue() bool {
	return c.sec.rekeyDue(c.run.SecAgg, c.trainCiphertexts(), c.resultLen(task.KindEvaluate), c.cfg.MaxAttempts)
}

// trainCiphertexts bounds the ciphertexts a train round's aggregates take: one vector for a
// logistic round; for a tree, one per level, the root's and then at most one child of every
// split (the other is derived), 2^(d-1) nodes at depth d.
func (c *Core) trainCiphertexts() int {
	if !c.cfg.Trees() || c.trees == nil {
		return c.sec.params.CiphertextsFor(c.resultLen(task.KindTrain))
	}
	layout, err := gbdt.LayoutOf(c.trees.Features)
	if err != nil {
		return c.sec.params.CiphertextsFor(c.resultLen(task.KindTrain))
	}
	total := c.sec.params.CiphertextsFor(layout.HistogramLen(1))
	for d := 1; d < c.cfg.TreeParams().MaxDepth; d++ {
		total += c.sec.params.CiphertextsFor(layout.HistogramLen(1 << (d - 1)))
	}
	return total
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
	c.summed = c.summed[:0]
	for _, k := range kept {
		c.summed = append(c.summed, k.client)
	}
	dec := &decryptState{purpose: c.phase, aggregate: agg, contributors: sum.count(), length: sum.sum.Length(), excluded: map[int]bool{},
		records: c.submittedRecords(), contribs: kept, digest: secagg.Digest(agg), refused: map[int]bool{}}
	rec := DecryptionRecord{Round: c.round, Purpose: c.phase.kind().String(), Digest: dec.digest}
	for _, k := range kept {
		dec.list = append(dec.list, task.Contribution{ClientID: k.client, Digest: k.digest[:], Endorsement: k.endorsement})
		rec.Contributors = append(rec.Contributors, k.client)
		rec.ContributionDigests = append(rec.ContributionDigests, hex.EncodeToString(k.digest[:]))
	}
	dec.record = c.recordDecryption(rec)
	c.sec.dec = dec
	c.phase = phaseDecrypt
	c.note(slog.LevelInfo, "aggregate ready for decryption", slog.String("purpose", dec.purpose.kind().String()), slog.Int("round", c.round),
		slog.Int("contributors", dec.contributors), slog.String("digest", dec.digest))
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

// nextDecryptSet has the committee fix a new active set of exactly T live members and asks
// them for their shares, after naming the set in the run's record of decryptions (a member's
// share log must find its set there before it answers). It reports false when fewer than T
// are available.
func (c *Core) nextDecryptSet() bool {
	live := func(id string) bool {
		seen, registered := c.clients[id]
		return registered && c.tick-seen <= c.deadlineTicks
	}
	active, points, ok := c.sec.nextSet(c.run.SecAgg, live)
	if !ok {
		return false
	}
	dec := c.sec.dec
	rec := c.run.Decryptions[dec.record]
	rec.Active = append(slices.Clone(rec.Active), slices.Clone(points))
	c.run.Decryptions[dec.record] = rec
	c.pending.Run = c.snapshot()
	c.beginCollect(phaseDecrypt, active)
	c.note(slog.LevelInfo, "decryption set fixed", slog.Int("round", c.round), slog.String("purpose", dec.purpose.kind().String()),
		slog.Any("active", points), slog.Int("attempt", dec.attempt))
	return true
}

func (c *Core) decryptTask(t *task.Task) {
	t.Decrypt = c.sec.decryptSpec(c.round)
	// What the contributors were asked for, so that members can check the noise the sum
	// carries against their own floor.
	switch c.sec.dec.purpose {
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
	c.sec.addShare(r.ClientID, r.DecryptionShare)
	return nil
}

// progressDecrypt combines the shares once all of the active set answered; past the deadline
// it excludes the members that did not and tries a new set, and when fewer than T members
// remain it waits one more deadline for members to come back, then fails the phase.
func (c *Core) progressDecrypt() {
	dec := c.sec.dec
	if len(c.outstanding) == 0 && dec.active != nil {
		if refused := c.sec.refusers(); len(refused) > 0 {
			// A member that refused this aggregate refuses it again; the others may not, so the
			// next set goes without it.
			c.note(slog.LevelWarn, "committee members refused the aggregate; fixing a new set without them", slog.Int("round", c.round),
				slog.String("purpose", dec.purpose.kind().String()), slog.Any("refused", refused), slog.String("digest", dec.digest))
			c.retryDecrypt()
			return
		}
		values, err := c.sec.combine()
		if err != nil {
			c.note(slog.LevelWarn, "decryption shares did not combine; trying another set", slog.Int("round", c.round), slog.String("err", err.Error()))
			c.retryDecrypt()
			return
		}
		c.sec.dec = nil
		c.phase = dec.purpose
		if err := c.plausibleAggregate(dec.purpose, values, dec.contributors, dec.records); err != nil {
			// No single result could be read: the whole round is discarded, never committed.
			c.implausible++
			c.noteEvent(EventAggregateDiscarded, slog.LevelError, "implausible aggregate discarded", slog.String("purpose", dec.purpose.kind().String()),
				slog.Int("round", c.round), slog.Int("contributors", dec.contributors), slog.String("why", err.Error()))
			c.phaseFailed(fmt.Sprintf("implausible %s aggregate: %v", dec.purpose.kind(), err))
			return
		}
		c.finishWith(values, dec.contributors)
		return
	}
	if dec.active == nil && c.nextDecryptSet() {
		return
	}
	if c.tick < c.deadline {
		return
	}
	if dec.active != nil {
		c.sec.timedOut(c.Outstanding())
		c.note(slog.LevelWarn, "committee members missed the decryption deadline; fixing a new set", slog.Int("round", c.round),
			slog.Any("missing", c.Outstanding()))
	}
	c.retryDecrypt()
}

func (c *Core) retryDecrypt() {
	if c.nextDecryptSet() {
		return
	}
	dec := c.sec.dec
	if !dec.waited {
		// Wait one more deadline for enough members to come back.
		dec.waited, dec.active = true, nil
		c.outstanding = map[string]task.Task{}
		c.deadline = c.tick + c.deadlineTicks
		c.note(slog.LevelWarn, "fewer than T live committee members; waiting", slog.Int("round", c.round),
			slog.Int("threshold", c.cfg.SecureAggregation.Threshold))
		return
	}
	if dec.purpose == phaseStats && len(dec.refused) == 0 && c.attempt < c.cfg.MaxAttempts {
		// Clients answer statistics once per run (a repeat gets the same ciphertext): rather
		// than collect them again, the same aggregate waits for the committee, one attempt per
		// deadline.
		c.attempt++
		dec.waited, dec.active, dec.excluded = false, nil, map[int]bool{}
		c.outstanding = map[string]task.Task{}
		c.deadline = c.tick + c.deadlineTicks
		c.note(slog.LevelWarn, "fewer than T live committee members for the statistics aggregate; asking again", slog.Int("attempt", c.attempt),
			slog.Int("threshold", c.cfg.SecureAggregation.Threshold))
		return
	}
	purpose := dec.purpose
	c.sec.dec = nil
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
	dec := c.sec.dec
	if dec == nil || !ok || t.Kind != task.KindDecrypt {
		return nil, perr("client_id", fmt.Errorf("%w: no decrypt task is outstanding for this client", ErrStale))
	}
	if q.Round != c.round || q.Purpose != dec.purpose.kind() || q.AggregateDigest != dec.digest {
		return nil, perr("aggregate_sha256", fmt.Errorf("%w: the aggregate being decrypted is the %s aggregate of round %d, sha256 %s",
			ErrStale, dec.purpose.kind(), c.round, dec.digest))
	}
	out := make([][]byte, len(dec.contribs))
	for i, k := range dec.contribs {
		out[i] = k.ciphertext
	}
	return out, nil
}
