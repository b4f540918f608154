package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mathrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/secagg"
	"github.com/fedprop/fedprop/task"
)

// ErrRefused: a committee member declined to help decrypt an aggregate.
var ErrRefused = errors.New("decryption refused")

// MemberConfig configures a committee member.
type MemberConfig struct {
	// MinContributors is the fewest results an aggregate must sum before this member helps
	// decrypt it: the member's own setting, not the coordinator's (at least 2).
	MinContributors int
	// Identity is the member's long-term X25519 key, announced at registration.
	Identity *ecdh.PrivateKey
	// Saved is the member's persisted key material (from Persist), nil before its first setup.
	Saved []byte
	// Persist is called with the member's key material whenever a setup completes; the agent
	// writes it to the state directory with mode 0600. Nil keeps it in memory only.
	Persist func([]byte) error
	// Random is the source of the member's secrets: nil for crypto/rand; the simulator passes
	// a seeded source so that runs repeat.
	Random io.Reader
	// Floor is the member's own privacy floor: it helps decrypt only aggregates whose
	// contributors were asked for at least this much noise, enough of them to carry it.
	Floor privacy.Floor
	// MinThreshold and MinThresholdRatio are the weakest committee this member joins: at
	// least MinThreshold members (default 2, at least 2) and MinThresholdRatio of the
	// committee (default 0.5) must take part in every decryption, whatever the coordinator
	// asks.
	MinThreshold      int
	MinThresholdRatio float64
	// Signer endorses this member's identity key and public-key share at every setup with
	// its certificate's key; Verifier checks every other member's endorsement against the CA
	// before anything is sealed. Both are set from the client's TLS kit; without them (a
	// plaintext research deployment, the simulator) the roster is the coordinator's word.
	Signer   *pki.Signer
	Verifier *pki.Verifier
	// ShareLog is the member's log of the shares it gave (StateDir.ShareLog), nil on first
	// start. Every later aggregate of a run is checked against the run's records
	// (task.CheckDifference). LogShare, when set, appends a record to the persisted log
	// (StateDir.AppendShare) before the share leaves the member; a failed write withholds
	// the share. Without it the log lives in memory only.
	ShareLog []ShareRecord
	LogShare func(ShareRecord) error
	// Parameters lists the secure-aggregation parameter sets (secagg.Presets) this member
	// makes key material under; nil means only the default, simulation-secure set. A keygen
	// task naming another set is refused.
	Parameters []string
	// Contributions fetches an aggregate's ciphertexts for the check that the aggregate is
	// their sum, which a member with a Verifier makes before every share (and refuses
	// without). NewAgent sets it from its connection when unset and the connection can.
	Contributions ContributionSource
}

// memberDomain is the domain of a member's endorsement of its identity key and public-key
// share: run, setup, point, client id, identity key, SHA-256 of the share.
const memberDomain = "fedprop/committee-member/v1"

func memberStatement(run, setup string, index int, clientID string, identityKey, shareDigest []byte) [][]byte {
	return [][]byte{[]byte(run), []byte(setup), []byte(strconv.Itoa(index)), []byte(clientID), identityKey, shareDigest}
}

// keyDomain is the domain of a member's endorsement of a collective public key: run, setup,
// threshold, the members' client ids in point order, SHA-256 of the key.
const keyDomain = "fedprop/collective-key/v1"

func keyStatement(run string, k *task.CollectiveKey, publicKey []byte) [][]byte {
	digest := sha256.Sum256(publicKey)
	return [][]byte{[]byte(run), []byte(k.SetupID), []byte(strconv.Itoa(k.Threshold)), []byte(strings.Join(k.Members, "\n")), digest[:]}
}

// withDefaults fills the committee policy's unset values.
func (c MemberConfig) withDefaults() MemberConfig {
	if c.MinThreshold == 0 {
		c.MinThreshold = 2
	}
	if c.MinThresholdRatio == 0 {
		c.MinThresholdRatio = 0.5
	}
	return c
}

// ShareRecord is what a member logs for every decryption share it gives, so that an audit
// can match its log against the coordinator's, and what it checks every later aggregate of
// the run against (task.CheckDifference). The member persists it (MemberConfig.LogShare)
// before the share leaves it.
type ShareRecord struct {
	// Member is the client id of the member that gave the share.
	Member       string
	Run          string
	Round        int
	Purpose      task.Kind
	Contributors int
	// Digest is the hex SHA-256 of the aggregate.
	Digest string
	// Active is the active set the share was made for, in order.
	Active []int
	// ContributorIDs are the clients whose results the aggregate sums and
	// ContributionDigests the hex SHA-256 of each one's ciphertext, in the same order.
	ContributorIDs      []string
	ContributionDigests []string
}

// contributorSet is the record's contributors as the differencing rules see them.
func (r ShareRecord) contributorSet() task.ContributorSet {
	return task.ContributorSet{IDs: r.ContributorIDs, Digests: r.ContributionDigests}
}

// Member is a client's part of the decryption committee: it generates its key shares in
// keygen tasks and checks every decrypt task before it computes a share.
type Member struct {
	params     secagg.Params
	paramsName string
	cfg        MemberConfig
	key        *secagg.Member
	run        string // the run whose committee this member's key belongs to
	round      int    // the latest round this member has seen of that run
	// pending is a setup in progress: its fresh secret, the setup id step 1 named, and the
	// committee (threshold and roster) that step 2 bound it to. The finished key stays in
	// use until a setup completes; a secret is shared for one committee only, so that a
	// replayed step 2 can never hand out a second set of points of the same polynomial.
	pending *pendingSetup
	// trainDP is the DP spec of the latest train task this member was itself given, by round,
	// to check a decrypt task's statement against.
	trainDP      *task.DPSpec
	trainDPRound int
	// log is every share this member gave (ShareLog, then those of this process).
	log []ShareRecord
}

type pendingSetup struct {
	run, setupID string
	params       string // the parameter set's name
	key          *secagg.Member
	shareDigest  []byte // SHA-256 of the public-key share step 1 sent
	committee    string // digest of (threshold, roster) once step 2 answered; "" before
	boxes        []task.SealedShare
}

type savedMember struct {
	Run string `json:"run"`
	// Parameters names the parameter set the key material is made under ("" for the
	// default).
	Parameters string `json:"parameters,omitempty"`
	Member     []byte `json:"member"`
}

// NewMember makes a committee member, restoring its key material from cfg.Saved.
func NewMember(cfg MemberConfig) (*Member, error) {
	if cfg.MinContributors < 2 {
		return nil, fmt.Errorf("committee member: min_contributors must be at least 2, got %d", cfg.MinContributors)
	}
	if cfg.Identity == nil {
		return nil, errors.New("committee member: identity key required")
	}
	cfg = cfg.withDefaults()
	if cfg.MinThreshold < 2 || cfg.MinThresholdRatio <= 0 || cfg.MinThresholdRatio > 1 || math.IsNaN(cfg.MinThresholdRatio) {
		return nil, fmt.Errorf("committee member: min_threshold %d must be at least 2 and min_threshold_ratio %v in (0, 1]", cfg.MinThreshold, cfg.MinThresholdRatio)
	}
	p, err := secagg.NewParams(secagg.DefaultParamsLiteral())
	if err != nil {
		return nil, err
	}
	m := &Member{params: p, paramsName: secagg.PresetSimulation, cfg: cfg, log: slices.Clone(cfg.ShareLog)}
	if len(cfg.Saved) > 0 {
		var s savedMember
		if err := json.Unmarshal(cfg.Saved, &s); err != nil {
			return nil, fmt.Errorf("committee member: saved key material: %w", err)
		}
		name, p, err := acceptedParams(cfg.Parameters, s.Parameters)
		if err != nil {
			return nil, fmt.Errorf("committee member: saved key material: %w", err)
		}
		key, err := secagg.UnmarshalMember(p, s.Member)
		if err != nil {
			return nil, fmt.Errorf("committee member: saved key material: %w", err)
		}
		m.key, m.run, m.params, m.paramsName = key, s.Run, p, name
	}
	return m, nil
}

// paramsNotAccepted is a parameter set a client's configuration does not list.
type paramsNotAccepted struct {
	name     string
	accepted []string
}

func (e *paramsNotAccepted) Error() string {
	return fmt.Sprintf("parameter set %q is not among this client's secure_aggregation.parameters %v", e.name, e.accepted)
}

// acceptedParams returns the named parameter set ("" is the default) if accepted lists it
// (nil accepts only the default), and a *paramsNotAccepted otherwise: a coordinator cannot
// talk a client or member into a weaker guarantee than it configured.
func acceptedParams(accepted []string, name string) (string, secagg.Params, error) {
	if name == "" {
		name = secagg.PresetSimulation
	}
	if accepted == nil {
		accepted = []string{secagg.PresetSimulation}
	}
	if !slices.Contains(accepted, name) {
		return "", secagg.Params{}, &paramsNotAccepted{name: name, accepted: accepted}
	}
	lit, err := secagg.PresetLiteral(name)
	if err != nil {
		return "", secagg.Params{}, err
	}
	p, err := secagg.NewParams(lit)
	return name, p, err
}

// persistKey saves key material (with its run and parameter set) through cfg.Persist.
func (m *Member) persistKey(run, params string, key *secagg.Member) error {
	if m.cfg.Persist == nil {
		return nil
	}
	b, err := key.MarshalBinary()
	if err != nil {
		return err
	}
	saved, err := json.Marshal(savedMember{Run: run, Parameters: params, Member: b})
	if err != nil {
		return err
	}
	return m.cfg.Persist(saved)
}

// IdentityKey is the public identity key to announce at registration.
func (m *Member) IdentityKey() []byte { return m.cfg.Identity.PublicKey().Bytes() }

// observe keeps track of the run and round this member has seen, for its decrypt checks.
func (m *Member) observe(t task.Task) {
	if t.RunID == m.run && t.Round > m.round {
		m.round = t.Round
	}
	if t.RunID == m.run && t.Kind == task.KindTrain && t.DP != nil {
		dp := *t.DP
		m.trainDP, m.trainDPRound = &dp, t.Round
	}
}

func recipients(members []task.CommitteeMember) []secagg.Recipient {
	out := make([]secagg.Recipient, len(members))
	for i, mm := range members {
		out[i] = secagg.Recipient{Index: mm.Index, IdentityKey: mm.IdentityKey}
	}
	return out
}

// keygen answers one step of a committee setup. The lifecycle is one way: step 1 draws a
// fresh secret for the setup it names; step 2 shares that secret with one committee, checked
// against this member's own policy, and only that one (a repeat gets the same boxes); step 3
// opens the boxes of that same setup and committee and only then replaces the finished key.
// A new step 1 after a completed setup is answered (a coordinator retrying a setup that failed
// at step 3 needs it), but the finished key stays in use until the new setup completes.
func (m *Member) keygen(t task.Task, clientID string, res *task.Result) error {
	spec := t.Keygen
	if spec == nil {
		return fmt.Errorf("keygen: %w: no keygen spec", task.ErrInvalid)
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("keygen: %w: %s", ErrRefused, fmt.Sprintf(format, args...))
	}
	switch spec.Step {
	case task.KeygenPublicKey:
		if spec.SetupID == "" {
			return fmt.Errorf("keygen: %w: no setup id", task.ErrInvalid)
		}
		name, params, err := acceptedParams(m.cfg.Parameters, spec.Parameters)
		if err != nil {
			return refuse("%v", err)
		}
		key, err := secagg.NewMemberWithIdentity(params, spec.Index, m.cfg.Identity, m.cfg.Random)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		share, err := key.PublicKeyShare(spec.CRSSeed)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		digest := sha256.Sum256(share)
		if m.cfg.Signer != nil {
			e, err := m.cfg.Signer.Sign(memberDomain, memberStatement(t.RunID, spec.SetupID, spec.Index, clientID, m.IdentityKey(), digest[:])...)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			res.Endorsement = &task.Endorsement{Certificate: e.Certificate, Signature: e.Signature}
		}
		m.pending = &pendingSetup{run: t.RunID, setupID: spec.SetupID, params: name, key: key, shareDigest: digest[:]}
		res.PublicKeyShare = share
	case task.KeygenShares:
		p, err := m.pendingFor(t, spec)
		if err != nil {
			return err
		}
		digest, err := m.checkRoster(t.RunID, spec, p)
		if err != nil {
			return refuse("%v", err)
		}
		switch p.committee {
		case digest:
			res.Boxes = p.boxes // a retry: the very same boxes
			return nil
		case "":
		default:
			return refuse("setup %s already shared this member's secret with another committee", spec.SetupID)
		}
		sealed, err := p.key.SealedThresholdShares(spec.SetupID, spec.Threshold, recipients(spec.Members))
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		p.boxes = make([]task.SealedShare, len(sealed))
		for i, s := range sealed {
			p.boxes[i] = task.SealedShare{From: s.From, To: s.To, Box: s.Box}
		}
		p.committee = digest
		res.Boxes = p.boxes
	case task.KeygenCombine:
		p, err := m.pendingFor(t, spec)
		if err != nil {
			return err
		}
		digest, err := m.checkRoster(t.RunID, spec, p)
		if err != nil {
			return refuse("%v", err)
		}
		if p.committee != digest {
			return refuse("setup %s: the committee to combine is not the one this member shared its secret with", spec.SetupID)
		}
		boxes := make([]secagg.SealedShare, len(spec.Boxes))
		for i, b := range spec.Boxes {
			boxes[i] = secagg.SealedShare{From: b.From, To: b.To, Box: b.Box}
		}
		var endorsement *task.Endorsement
		if m.cfg.Signer != nil {
			// Endorse the collective key only after computing it from the endorsed shares.
			if endorsement, err = m.endorseKey(t.RunID, spec, p); err != nil {
				return refuse("%v", err)
			}
		}
		if err := p.key.CombineThresholdShares(spec.SetupID, spec.Threshold, recipients(spec.Members), boxes); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		res.Endorsement = endorsement
		if err := m.persistKey(t.RunID, p.params, p.key); err != nil {
			return fmt.Errorf("keygen: persist key material: %w", err)
		}
		_, params, err := acceptedParams(m.cfg.Parameters, p.params)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		m.key, m.run, m.round, m.pending, m.params, m.paramsName = p.key, t.RunID, 0, nil, params, p.params
	default:
		return fmt.Errorf("keygen: %w: step %d", task.ErrInvalid, spec.Step)
	}
	return nil
}

// pendingFor is the setup in progress that a step 2 or 3 task must continue: the run and setup
// id of step 1, at the same committee point.
func (m *Member) pendingFor(t task.Task, spec *task.KeygenSpec) (*pendingSetup, error) {
	p := m.pending
	if p == nil || p.run != t.RunID || p.setupID != spec.SetupID || p.key.Index() != spec.Index {
		return nil, fmt.Errorf("keygen: %w: no setup %s of run %s in progress at point %d", task.ErrStale, spec.SetupID, t.RunID, spec.Index)
	}
	return p, nil
}

// checkRoster applies this member's committee policy to a step 2 or 3 roster and returns a
// digest of (threshold, roster): distinct members, client ids and identity keys, points 1..N,
// a threshold of at least MinThreshold and MinThresholdRatio of N, and, with a Verifier, every
// member's own endorsement of its identity key and share (this member's share as it sent it).
func (m *Member) checkRoster(run string, spec *task.KeygenSpec, p *pendingSetup) (string, error) {
	n := len(spec.Members)
	points, ids, keys := map[int]bool{}, map[string]bool{}, map[string]bool{}
	h := sha256.New()
	fmt.Fprintf(h, "%d|%d|", spec.Threshold, n)
	for _, mm := range spec.Members {
		if mm.Index < 1 || mm.Index > n || points[mm.Index] {
			return "", fmt.Errorf("roster point %d of a committee of %d is out of range or repeated", mm.Index, n)
		}
		if mm.ClientID == "" || ids[mm.ClientID] {
			return "", fmt.Errorf("roster client %q is empty or repeated", mm.ClientID)
		}
		if keys[string(mm.IdentityKey)] {
			return "", fmt.Errorf("roster names one identity key for two members (%s and another)", mm.ClientID)
		}
		points[mm.Index], ids[mm.ClientID], keys[string(mm.IdentityKey)] = true, true, true
		if mm.Index == spec.Index && !bytes.Equal(mm.PublicKeyShareDigest, p.shareDigest) && m.cfg.Verifier != nil {
			return "", fmt.Errorf("the roster misstates this member's public-key share")
		}
		if err := m.checkEndorsement(run, spec.SetupID, mm); err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%d|%q|%x|", mm.Index, mm.ClientID, mm.IdentityKey)
	}
	minT := max(m.cfg.MinThreshold, int(math.Ceil(m.cfg.MinThresholdRatio*float64(n))))
	if spec.Threshold < minT || spec.Threshold > n {
		return "", fmt.Errorf("threshold %d of a committee of %d is below this member's minimum %d (min_threshold %d, min_threshold_ratio %v)",
			spec.Threshold, n, minT, m.cfg.MinThreshold, m.cfg.MinThresholdRatio)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// endorseKey computes the collective public key from every member's step-1 share, each as its
// member endorsed it (the roster's digests, checked by checkRoster), this member's own share
// among them, and signs (run, setup, threshold, members, key digest).
func (m *Member) endorseKey(run string, spec *task.KeygenSpec, p *pendingSetup) (*task.Endorsement, error) {
	if len(spec.PublicKeyShares) != len(spec.Members) {
		return nil, fmt.Errorf("%d public-key shares for %d members", len(spec.PublicKeyShares), len(spec.Members))
	}
	byIndex := map[int]task.CommitteeMember{}
	for _, mm := range spec.Members {
		byIndex[mm.Index] = mm
	}
	agg, err := secagg.NewPublicKeyAggregator(m.params, spec.CRSSeed)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(spec.Members))
	for i, share := range spec.PublicKeyShares {
		mm, ok := byIndex[i+1]
		digest := sha256.Sum256(share)
		if !ok || !bytes.Equal(digest[:], mm.PublicKeyShareDigest) {
			return nil, fmt.Errorf("the public-key share of point %d is not the one its member endorsed", i+1)
		}
		if i+1 == spec.Index && !bytes.Equal(digest[:], p.shareDigest) {
			return nil, fmt.Errorf("the public-key share of this member is not the one it sent")
		}
		if _, err := agg.Add(share); err != nil {
			return nil, fmt.Errorf("public-key share of point %d: %w", i+1, err)
		}
		names[i] = mm.ClientID
	}
	pk, err := agg.PublicKey()
	if err != nil {
		return nil, err
	}
	k := &task.CollectiveKey{SetupID: spec.SetupID, Threshold: spec.Threshold, Members: names}
	e, err := m.cfg.Signer.Sign(keyDomain, keyStatement(run, k, pk)...)
	if err != nil {
		return nil, err
	}
	return &task.Endorsement{Certificate: e.Certificate, Signature: e.Signature}, nil
}

// CommitteePin is the committee a client trusts with its sums: it encrypts only under a
// collective key that at least Threshold (never below MinThreshold) of these members endorsed
// with their own certificates, in a committee made of them alone.
type CommitteePin struct {
	Members      []string
	MinThreshold int
	Verifier     *pki.Verifier
}

// check verifies a task's collective key against the pin.
func (c *CommitteePin) check(run string, k *task.CollectiveKey, publicKey []byte) error {
	if k == nil {
		return errors.New("the task's public key carries no endorsements")
	}
	if c.Verifier == nil {
		return errors.New("no CA to verify the committee's endorsements with")
	}
	pinned := map[string]bool{}
	for _, name := range c.Members {
		pinned[name] = true
	}
	for _, name := range k.Members {
		if !pinned[name] {
			return fmt.Errorf("the key's committee includes %q, which this client does not trust", name)
		}
	}
	if k.Threshold < max(2, c.MinThreshold) || k.Threshold > len(k.Members) {
		return fmt.Errorf("the key's threshold %d of %d members is below this client's minimum %d", k.Threshold, len(k.Members), c.MinThreshold)
	}
	statement := keyStatement(run, k, publicKey)
	endorsed := map[string]bool{}
	var last error
	for _, e := range k.Endorsements {
		id, err := c.Verifier.Verify(pki.Signed{Certificate: e.Certificate, Signature: e.Signature}, pki.Identity{Role: pki.RoleClient}, keyDomain, statement...)
		if err != nil {
			last = err
			continue
		}
		if slices.Contains(k.Members, id.Name) {
			endorsed[id.Name] = true
		}
	}
	if len(endorsed) < k.Threshold {
		return fmt.Errorf("%d of the committee's members endorsed the key, the threshold is %d (last error: %v)", len(endorsed), k.Threshold, last)
	}
	return nil
}

// checkEndorsement verifies, with a Verifier, that a roster entry's identity key and share are
// vouched for by that member's own certificate: the coordinator cannot substitute a key it
// holds the private half of.
func (m *Member) checkEndorsement(run, setup string, mm task.CommitteeMember) error {
	if m.cfg.Verifier == nil {
		return nil
	}
	if mm.Endorsement == nil {
		return fmt.Errorf("member %s (point %d) carries no endorsement of its identity key", mm.ClientID, mm.Index)
	}
	signed := pki.Signed{Certificate: mm.Endorsement.Certificate, Signature: mm.Endorsement.Signature}
	want := pki.Identity{Name: mm.ClientID, Role: pki.RoleClient}
	if _, err := m.cfg.Verifier.Verify(signed, want, memberDomain,
		memberStatement(run, setup, mm.Index, mm.ClientID, mm.IdentityKey, mm.PublicKeyShareDigest)...); err != nil {
		return fmt.Errorf("member %s (point %d): %w", mm.ClientID, mm.Index, err)
	}
	return nil
}

// decrypt checks a decrypt task and computes this member's share. It refuses an aggregate of
// another run, of a round older than the latest it has seen, or of fewer contributions than
// its own min_contributors; one whose contributions are not listed one per contributor, from
// distinct clients, each signed by its client (with a Verifier); one too close to an
// aggregate it helped decrypt before (task.CheckDifference against its share log); and, with
// a Verifier, one that is not the exact sum of the listed ciphertexts, which it fetches and
// re-adds. Every refusal comes back with the record (the aggregate's digest among it) for the
// agent's log. A share is logged, and persisted with LogShare, before it is returned.
func (m *Member) decrypt(ctx context.Context, t task.Task, clientID string) ([]byte, ShareRecord, error) {
	spec := t.Decrypt
	if spec == nil {
		return nil, ShareRecord{}, fmt.Errorf("decrypt: %w: no decrypt spec", task.ErrInvalid)
	}
	rec := ShareRecord{Member: clientID, Run: t.RunID, Round: spec.AggregateRound, Purpose: spec.Purpose, Contributors: spec.Contributors,
		Active: slices.Clone(spec.Active)}
	refuse := func(format string, args ...any) ([]byte, ShareRecord, error) {
		return nil, rec, fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
	}
	// refuseErr keeps why (a pki, secagg or task sentinel) for errors.Is.
	refuseErr := func(why error, format string, args ...any) ([]byte, ShareRecord, error) {
		return nil, rec, fmt.Errorf("%w: %s: %w", ErrRefused, fmt.Sprintf(format, args...), why)
	}
	if m.key == nil || !m.key.Ready() {
		return refuse("this member has no completed committee setup")
	}
	if t.RunID != m.run {
		return refuse("run %q is not the run %q this member's key belongs to", t.RunID, m.run)
	}
	if spec.AggregateRound < m.round || spec.AggregateRound != t.Round {
		return refuse("round %d is not the current round (latest seen: %d)", spec.AggregateRound, m.round)
	}
	switch spec.Purpose {
	case task.KindStats, task.KindTrain, task.KindEvaluate:
	default:
		return refuse("purpose %s is not a sum this member decrypts", spec.Purpose)
	}
	info, err := secagg.InspectAggregate(m.params, spec.Aggregate)
	if err != nil {
		return refuse("aggregate: %v", err)
	}
	rec.Digest = info.Digest
	if info.Contributions != spec.Contributors {
		return refuse("the task says %d contributions, the aggregate %d", spec.Contributors, info.Contributions)
	}
	if spec.Contributors < m.cfg.MinContributors {
		return refuse("%d contributions is below min_contributors %d", spec.Contributors, m.cfg.MinContributors)
	}
	if err := m.checkNoise(spec); err != nil {
		return refuse("%v", err)
	}
	set, err := m.checkContributions(t.RunID, spec)
	if err != nil {
		return refuseErr(err, "contributions")
	}
	rec.ContributorIDs, rec.ContributionDigests = set.IDs, set.Digests
	for _, prev := range m.log {
		if prev.Run != t.RunID || prev.Purpose != spec.Purpose {
			continue
		}
		if err := task.CheckDifference(set, prev.contributorSet(), m.cfg.MinContributors); err != nil {
			return refuseErr(err, "this member helped decrypt the %s aggregate of round %d (sha256 %.12s)", prev.Purpose, prev.Round, prev.Digest)
		}
	}
	if m.cfg.Verifier != nil {
		if err := m.reAdd(ctx, t, clientID, info.Digest); err != nil {
			return refuseErr(err, "checking the aggregate against its signed contributions")
		}
	}
	share, err := m.key.DecryptionShare(spec.Aggregate, spec.Active)
	if errors.Is(err, secagg.ErrBeyondBound) {
		return refuseErr(err, "the flooding noise's bound")
	}
	if err != nil {
		return nil, rec, fmt.Errorf("decrypt: %w", err)
	}
	// The share counts against the key's decryption budget: the count is saved before the
	// share leaves, so a restart cannot reset it.
	if err := m.persistKey(m.run, m.paramsName, m.key); err != nil {
		return nil, rec, fmt.Errorf("decrypt: persist the decryption count before giving the share: %w", err)
	}
	if m.cfg.LogShare != nil {
		if err := m.cfg.LogShare(rec); err != nil {
			return nil, rec, fmt.Errorf("decrypt: log the share before giving it: %w", err)
		}
	}
	m.log = append(m.log, rec)
	m.round = spec.AggregateRound
	return share, rec, nil
}

// checkNoise refuses an aggregate that cannot carry this member's floor of noise: under the
// floor every aggregate must come from a noised release, and the contributors' noise shares
// must add up to at least min_noise_multiplier times the sensitivity. Each honest contributor
// adds at least 1/sqrt(m) of the round's noise (its m capped at its own setting, which only
// adds noise), so K contributions carry variance >= K/m of it.
func (m *Member) checkNoise(spec *task.DecryptSpec) error {
	f := m.cfg.Floor
	zMin := f.MinNoiseMultiplier
	if spec.Purpose == task.KindTrain && spec.DP != nil && m.trainDP != nil && m.trainDPRound == spec.AggregateRound && *m.trainDP != *spec.DP {
		return fmt.Errorf("the round's train task asked this member for %+v, the decrypt task states %+v", *m.trainDP, *spec.DP)
	}
	var z float64
	var expected int
	switch {
	case spec.Purpose == task.KindTrain && spec.DP != nil:
		if err := f.Accepts(spec.DP.Mechanism, spec.DP.NoiseMultiplier, spec.DP.ClipNorm); err != nil {
			return err
		}
		if spec.DP.Mechanism == task.DPRecord && spec.DP.ExpectedContributors == 0 {
			return nil // every contribution carries its own DP-SGD noise
		}
		z, expected = spec.DP.NoiseMultiplier, spec.DP.ExpectedContributors
	case spec.Purpose != task.KindTrain && spec.Noise != nil:
		level := spec.Noise.Level
		if level == "" {
			level = privacy.RequireRecord
		}
		if err := f.Accepts(level, spec.Noise.NoiseMultiplier, 0); err != nil {
			return err
		}
		z, expected = spec.Noise.NoiseMultiplier, spec.Noise.ExpectedContributors
	default:
		if f.Enforced() {
			return fmt.Errorf("%w: a %s aggregate of un-noised contributions", privacy.ErrBelowFloor, spec.Purpose)
		}
		return nil
	}
	if expected < 1 {
		return fmt.Errorf("%w: the contributors' noise shares are divided by %d contributors", privacy.ErrBelowFloor, expected)
	}
	if achieved := z * math.Sqrt(float64(spec.Contributors)/float64(expected)); achieved < zMin {
		return fmt.Errorf("%w: %d contributions of 1/%d noise shares carry noise multiplier %.4g, below min_noise_multiplier %v",
			privacy.ErrBelowFloor, spec.Contributors, expected, achieved, zMin)
	}
	return nil
}

// encryptor holds what a client needs to encrypt under the current collective public key: its
// parameter set, checked against the sets the client accepts, and its digest. Each encryption
// draws its own seed (encryptSeeded).
type encryptor struct {
	// accepted lists the parameter sets this client encrypts under (nil: only the default).
	accepted []string
	params   secagg.Params
	// key recognises the current key (secagg.Encryptor.EncryptsUnder) without a copy of its
	// hundreds of kilobytes; it never encrypts, so its randomness is a constant.
	key *secagg.Encryptor
	// keyDigest is the SHA-256 of the current key, hashed once per key rather than once per
	// result.
	keyDigest [sha256.Size]byte
}

func newEncryptor(accepted []string) *encryptor { return &encryptor{accepted: accepted} }

// forKey readies the encryptor for publicKey, under the parameter set its header names if this
// client accepts that set (ErrDeclined otherwise: the coordinator cannot talk a client into a
// weaker guarantee than it configured).
func (e *encryptor) forKey(publicKey []byte) error {
	if e.key != nil && e.key.EncryptsUnder(publicKey) {
		return nil
	}
	name, _, err := secagg.PresetOf(publicKey)
	if err != nil {
		return fmt.Errorf("collective public key: %w", err)
	}
	_, p, err := acceptedParams(e.accepted, name)
	if refusal := (*paramsNotAccepted)(nil); errors.As(err, &refusal) {
		return fmt.Errorf("%w: %w", ErrDeclined, err)
	}
	if err != nil {
		return err
	}
	key, err := secagg.NewEncryptor(p, publicKey, bytes.NewReader(make([]byte, 32)))
	if err != nil {
		return fmt.Errorf("collective public key: %w", err)
	}
	e.params, e.key, e.keyDigest = p, key, sha256.Sum256(publicKey)
	return nil
}

// encryptSeeded clips each value to its share of the ciphertext range (the range divided by
// the number of results the sum can add up, so that no sum wraps around the modulus silently)
// and encrypts the vector under publicKey with randomness drawn from seed alone: the same seed,
// key and values give the same ciphertext, so a repeated contribution can be encrypted again
// instead of kept. It returns how many values it clipped.
func (e *encryptor) encryptSeeded(publicKey []byte, values []float64, contributors int, seed [32]byte) (task.Vector, int, error) {
	if err := e.forKey(publicKey); err != nil {
		return task.Vector{}, 0, err
	}
	enc, err := secagg.NewEncryptor(e.params, publicKey, mathrand.NewChaCha8(seed))
	if err != nil {
		return task.Vector{}, 0, fmt.Errorf("collective public key: %w", err)
	}
	clipped := clip(values, e.params.MaxAbsPerContribution(contributors))
	ct, err := enc.Encrypt(values)
	if err != nil {
		return task.Vector{}, clipped, err
	}
	return task.Vector{Ciphertext: ct, Length: len(values)}, clipped, nil
}

// clip limits every value to [-bound, bound] and returns how many it changed.
func clip(values []float64, bound float64) int {
	clipped := 0
	for i, v := range values {
		if v > bound {
			values[i], clipped = bound, clipped+1
		} else if v < -bound {
			values[i], clipped = -bound, clipped+1
		}
	}
	return clipped
}
