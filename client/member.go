package client

import (
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

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
}

// ShareRecord is what a member logs for every decryption share it gives, so that an audit
// can match its log against the coordinator's.
type ShareRecord struct {
	Run          string
	Round        int
	Purpose      task.Kind
	Contributors int
	Digest       string
}

// Member is a client's part of the decryption committee: it generates its key shares in
// keygen tasks and checks every decrypt task before it computes a share.
type Member struct {
	params secagg.Params
	cfg    MemberConfig
	key    *secagg.Member
	run    string // the run whose committee this member's key belongs to
	round  int    // the latest round this member has seen of that run
	// trainDP is the DP spec of the latest train task this member was itself given, by round,
	// to check a decrypt task's statement against.
	trainDP      *task.DPSpec
	trainDPRound int
}

type savedMember struct {
	Run    string `json:"run"`
	Member []byte `json:"member"`
}

// NewMember makes a committee member, restoring its key material from cfg.Saved.
func NewMember(cfg MemberConfig) (*Member, error) {
	if cfg.MinContributors < 2 {
		return nil, fmt.Errorf("committee member: min_contributors must be at least 2, got %d", cfg.MinContributors)
	}
	if cfg.Identity == nil {
		return nil, errors.New("committee member: identity key required")
	}
	p, err := secagg.NewParams(secagg.DefaultParamsLiteral())
	if err != nil {
		return nil, err
	}
	m := &Member{params: p, cfg: cfg}
	if len(cfg.Saved) > 0 {
		var s savedMember
		if err := json.Unmarshal(cfg.Saved, &s); err != nil {
			return nil, fmt.Errorf("committee member: saved key material: %w", err)
		}
		key, err := secagg.UnmarshalMember(p, s.Member)
		if err != nil {
			return nil, fmt.Errorf("committee member: saved key material: %w", err)
		}
		m.key, m.run = key, s.Run
	}
	return m, nil
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

// keygen answers one step of a committee setup.
func (m *Member) keygen(t task.Task, res *task.Result) error {
	spec := t.Keygen
	if spec == nil {
		return fmt.Errorf("keygen: %w: no keygen spec", task.ErrInvalid)
	}
	switch spec.Step {
	case task.KeygenPublicKey:
		key, err := secagg.NewMemberWithIdentity(m.params, spec.Index, m.cfg.Identity, m.cfg.Random)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		share, err := key.PublicKeyShare(spec.CRSSeed)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		// A new setup replaces this member's key only once it completes (step 3).
		m.key, m.run, m.round = key, "", 0
		res.PublicKeyShare = share
	case task.KeygenShares:
		if m.key == nil || m.key.Index() != spec.Index {
			return fmt.Errorf("keygen: %w: no key material for setup %s at point %d", task.ErrStale, spec.SetupID, spec.Index)
		}
		sealed, err := m.key.SealedThresholdShares(spec.SetupID, spec.Threshold, recipients(spec.Members))
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		res.Boxes = make([]task.SealedShare, len(sealed))
		for i, s := range sealed {
			res.Boxes[i] = task.SealedShare{From: s.From, To: s.To, Box: s.Box}
		}
	case task.KeygenCombine:
		if m.key == nil || m.key.Index() != spec.Index {
			return fmt.Errorf("keygen: %w: no key material for setup %s at point %d", task.ErrStale, spec.SetupID, spec.Index)
		}
		boxes := make([]secagg.SealedShare, len(spec.Boxes))
		for i, b := range spec.Boxes {
			boxes[i] = secagg.SealedShare{From: b.From, To: b.To, Box: b.Box}
		}
		if err := m.key.CombineThresholdShares(spec.SetupID, spec.Threshold, recipients(spec.Members), boxes); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		m.run, m.round = t.RunID, 0
		if m.cfg.Persist != nil {
			b, err := m.key.MarshalBinary()
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			saved, err := json.Marshal(savedMember{Run: m.run, Member: b})
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			if err := m.cfg.Persist(saved); err != nil {
				return fmt.Errorf("keygen: persist key material: %w", err)
			}
		}
	default:
		return fmt.Errorf("keygen: %w: step %d", task.ErrInvalid, spec.Step)
	}
	return nil
}

// decrypt checks a decrypt task and computes this member's share: it refuses an aggregate of
// another run, of a round older than the latest it has seen, or of fewer contributions than
// its own min_contributors.
func (m *Member) decrypt(t task.Task) ([]byte, ShareRecord, error) {
	spec := t.Decrypt
	if spec == nil {
		return nil, ShareRecord{}, fmt.Errorf("decrypt: %w: no decrypt spec", task.ErrInvalid)
	}
	rec := ShareRecord{Run: t.RunID, Round: spec.AggregateRound, Purpose: spec.Purpose, Contributors: spec.Contributors}
	refuse := func(format string, args ...any) ([]byte, ShareRecord, error) {
		return nil, rec, fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
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
	share, err := m.key.DecryptionShare(spec.Aggregate, spec.Active)
	if err != nil {
		return nil, rec, fmt.Errorf("decrypt: %w", err)
	}
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
		if spec.DP.Mechanism == task.DPRecord {
			return nil // every contribution carries its own DP-SGD noise
		}
		z, expected = spec.DP.NoiseMultiplier, spec.DP.ExpectedContributors
	case spec.Purpose != task.KindTrain && spec.Noise != nil:
		if err := f.Accepts(privacy.RequireRecord, spec.Noise.NoiseMultiplier, 0); err != nil {
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

// encryptor caches one encryptor per collective public key.
type encryptor struct {
	params secagg.Params
	random io.Reader // nil: crypto/rand
	key    string
	enc    *secagg.Encryptor
}

func newEncryptor(random io.Reader) (*encryptor, error) {
	p, err := secagg.NewParams(secagg.DefaultParamsLiteral())
	if err != nil {
		return nil, err
	}
	return &encryptor{params: p, random: random}, nil
}

// encrypt clips each value to its share of the ciphertext range (the range divided by the
// number of results the sum can add up), so that no sum can wrap around the modulus silently,
// and encrypts the vector under the collective key. It returns how many values it clipped.
func (e *encryptor) encrypt(publicKey []byte, values []float64, contributors int) (task.Vector, int, error) {
	if e.enc == nil || e.key != string(publicKey) {
		enc, err := secagg.NewEncryptor(e.params, publicKey, e.random)
		if err != nil {
			return task.Vector{}, 0, fmt.Errorf("collective public key: %w", err)
		}
		e.enc, e.key = enc, strings.Clone(string(publicKey))
	}
	bound := e.params.MaxAbsPerContribution(contributors)
	clipped := 0
	for i, v := range values {
		if v > bound {
			values[i], clipped = bound, clipped+1
		} else if v < -bound {
			values[i], clipped = -bound, clipped+1
		}
	}
	ct, err := e.enc.Encrypt(values)
	if err != nil {
		return task.Vector{}, clipped, err
	}
	return task.Vector{Ciphertext: ct, Length: len(values)}, clipped, nil
}
