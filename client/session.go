// Package client is the branch (or app) side of fedprop: a Session that turns tasks into
// protected results using only the client's own records, and an Agent that connects out to
// the coordinator, polls for tasks and submits results, surviving coordinator restarts.
//
// The Session is a pure core: it touches no socket, file or clock, so the simulator drives the
// very same code that a branch runs. Records never leave it; only sums do.
package client

import (
	"context"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/task"
)

// ErrSchemaMismatch: the coordinator's run uses a different schema than this client.
var ErrSchemaMismatch = errors.New("schema mismatch")

// ErrDeclined: the client declined a task on its own authority (a task weaker than its
// privacy floor, a repeated release). The agent tells the coordinator why in a refusal.
var ErrDeclined = errors.New("task declined")

// Protector turns the plaintext sum a client computed into what leaves the client: clipped,
// noised, encrypted, or unchanged. Decorators compose as func(Protector) Protector.
type Protector interface {
	Protect(ctx context.Context, t task.Task, values []float64) (task.Vector, error)
}

// ProtectorFunc adapts a function to a Protector.
type ProtectorFunc func(ctx context.Context, t task.Task, values []float64) (task.Vector, error)

// Protect calls f.
func (f ProtectorFunc) Protect(ctx context.Context, t task.Task, values []float64) (task.Vector, error) {
	return f(ctx, t, values)
}

// Plaintext sends sums as they are: for trusted research settings and as the reference.
var Plaintext Protector = ProtectorFunc(func(_ context.Context, _ task.Task, values []float64) (task.Vector, error) {
	return task.Vector{Plain: values}, nil
})

// Report says what a client sent for one task, for its log.
type Report struct {
	Kind     task.Kind
	Round    int
	Bytes    int
	Examples int
	Excluded int
	// Encrypted reports whether the sum left the client encrypted.
	Encrypted bool
	// Clipped counts values clipped to the encryption range (normally 0).
	Clipped int
	// EncryptSeconds is the time spent encoding and encrypting (with SessionOptions.Now).
	EncryptSeconds float64
	// Share is set when the client gave a decryption share: what it logs for audits.
	Share *ShareRecord
	// Epsilon is, under record-level DP, this client's own privacy spent so far (at Delta).
	Epsilon, Delta float64
	// UpdateClipped reports, under client-level DP, whether the update was clipped.
	UpdateClipped bool
	// Refused is set by Agent.Answer when the client declined the task (the result is a
	// refusal).
	Refused bool
}

// SessionOptions are a session's optional parts.
type SessionOptions struct {
	// Protector transforms sums before they leave the client (nil: unchanged).
	Protector Protector
	// Member makes the client a committee member of secure aggregation.
	Member *Member
	// RequireEncryption refuses tasks that do not carry a collective public key: a client
	// configured for secure aggregation never sends a plaintext sum.
	RequireEncryption bool
	// Random seeds every draw that protects privacy (DP noise and sampling, encryption): nil
	// means crypto/rand, as a production client always has. Only the simulator passes a seeded
	// source, so that a simulation repeats, and it says so in its summary; nothing on the wire
	// can set or influence it.
	Random io.Reader
	// Now, when set, times encryption for the report (the simulator's cost accounting).
	Now func() time.Time
	// NoEncodingCache encodes the records afresh for every task instead of keeping the
	// encoded matrices.
	NoEncodingCache bool
	// NoEpsilonReport leaves Report.Epsilon of DP train tasks at 0 instead of converting the
	// client's ledger after every release (a PLD composition): the simulator's very many
	// clients are never logged one by one. The ledger still composes every release.
	NoEpsilonReport bool
	// Floor is the weakest differential privacy this client accepts: its own setting. Tasks
	// below it are declined before anything is computed.
	Floor privacy.Floor
	// PrivacyState is the client's saved privacy ledger and latest releases (from
	// PersistPrivacy), nil on first start; PersistPrivacy, when set, is called with the new
	// state before a DP release leaves the session, so that a restart neither forgets what was
	// spent nor answers a repeated task with fresh noise. A failed write fails the task.
	PrivacyState   []byte
	PersistPrivacy func([]byte) error
	// Committee, when set, pins the committee this client encrypts for: it declines any task
	// whose collective key is not endorsed by enough of these members.
	Committee *CommitteePin
	// Parameters lists the secure-aggregation parameter sets (secagg.Presets) this client
	// encrypts under; nil means only the default, simulation-secure set. A task whose key is
	// made under another set is declined.
	Parameters []string
	// Signer, set from the client's TLS kit, signs every encrypted result: the SHA-256 of the
	// ciphertext bound to the task's run, round and kind (task.ContributionStatement), which
	// committee members check against the CA before they help decrypt an aggregate. Without
	// it (a plaintext research deployment, the simulator) results go unsigned, and members
	// that verify refuse aggregates of them.
	Signer *pki.Signer
}

// Session holds one client's records and answers tasks with sums over them.
type Session struct {
	id         string
	schema     *dataset.Schema
	schemaHash string
	train      *dataset.Dataset
	eval       *dataset.Dataset
	protector  Protector
	member     *Member
	requireEnc bool
	// enc is made on the first encrypted task: plaintext clients never pay for the CKKS
	// parameters.
	enc             *encryptor
	encRandom       io.Reader
	parameters      []string
	noEpsilonReport bool
	// cache keeps the encoded matrices between tasks (the default; the simulator turns it off
	// for very many small clients, whose idle state then costs nothing beyond their data).
	cache bool
	now   func() time.Time
	// noise draws every privacy-protecting random value (DP noise, DP-SGD sampling), seeded
	// from crypto/rand (or the simulator's explicit seed), never from anything on the wire.
	noise *rand.Rand
	// floor is the client's own privacy floor, ledger its accounting of everything it
	// released, and released the latest DP train release per run, which a repeated task gets
	// again instead of fresh noise.
	floor    privacy.Floor
	ledger   *privacy.Ledger
	released map[string]*release
	persist  func([]byte) error
	// pin is the committee this client trusts; trustedKey the digest of the last key it
	// verified against it.
	pin        *CommitteePin
	trustedKey [sha256.Size]byte
	// evaluated is the latest evaluation this client answered per run (see evaluate.go).
	evaluated evalState
	// shapMemo keeps the held-out rows' TreeSHAP values under the last tree model evaluated,
	// when cache is on, so that each boosting round explains only its new trees.
	shapMemo *gbdt.SHAPMemo
	// statsSent is, per run, the encrypted statistics this client sent: it answers them once
	// per run, a repeat with the very same signed ciphertext (persisted with the privacy
	// state).
	statsSent map[string]*contribution
	// signer signs encrypted results; contribs keeps the latest one per kind (see
	// encryptResult).
	signer   *pki.Signer
	contribs map[task.Kind]*contribution
	// trees is the state of the tree being grown in a tree run (see trees.go).
	trees *treeState

	// The encoded matrices are cached per pinned encoding: every train and evaluate task of a
	// run uses the same one.
	encodedFor string
	xTrain     *mat.Dense
	xEval      *mat.Dense
}

// NewSession makes a session for client id over its training rows and held-out evaluation
// rows (eval may be empty).
func NewSession(id string, schema *dataset.Schema, train, eval *dataset.Dataset, opts SessionOptions) (*Session, error) {
	if id == "" {
		return nil, errors.New("client id is empty")
	}
	if train == nil || train.Len() == 0 {
		return nil, fmt.Errorf("client %s: no consenting training rows", id)
	}
	if eval == nil {
		eval = train.Subset(nil)
	}
	if opts.Protector == nil {
		opts.Protector = Plaintext
	}
	random := opts.Random
	if random == nil {
		random = cryptorand.Reader
	}
	var seed [32]byte
	if _, err := io.ReadFull(random, seed[:]); err != nil {
		return nil, fmt.Errorf("client %s: noise source: %w", id, err)
	}
	if err := opts.Floor.Validate("privacy."); err != nil {
		return nil, fmt.Errorf("client %s: %w", id, err)
	}
	floor := opts.Floor.WithDefaults()
	s := &Session{id: id, schema: schema, schemaHash: task.SchemaHash(schema), train: train, eval: eval,
		protector: opts.Protector, member: opts.Member, requireEnc: opts.RequireEncryption, encRandom: opts.Random, parameters: opts.Parameters, noEpsilonReport: opts.NoEpsilonReport, now: opts.Now, cache: !opts.NoEncodingCache,
		noise: rand.New(rand.NewChaCha8(seed)), floor: floor, ledger: privacy.NewLedger(floor), released: map[string]*release{},
		persist: opts.PersistPrivacy, pin: opts.Committee, evaluated: evalState{latest: map[string]*evalRelease{}, models: map[string]map[[sha256.Size]byte]uint64{}},
		statsSent: map[string]*contribution{}, signer: opts.Signer}
	if len(opts.PrivacyState) > 0 {
		if err := s.restorePrivacy(opts.PrivacyState); err != nil {
			return nil, fmt.Errorf("client %s: saved privacy state: %w", id, err)
		}
	}
	return s, nil
}

// IdentityKey is the committee identity key to announce at registration (nil when the client
// is not a committee member).
func (s *Session) IdentityKey() []byte {
	if s.member == nil {
		return nil
	}
	return s.member.IdentityKey()
}

// ID is the client's id.
func (s *Session) ID() string { return s.id }

// TrainRows is the number of consenting training rows.
func (s *Session) TrainRows() int { return s.train.Len() }

// Excluded is the number of rows left out for lack of consent.
func (s *Session) Excluded() int { return s.train.ExcludedNoConsent + s.eval.ExcludedNoConsent }

// Handle answers one task.
func (s *Session) Handle(ctx context.Context, t task.Task) (task.Result, Report, error) {
	if t.Encoding.SchemaHash != s.schemaHash {
		return task.Result{}, Report{}, fmt.Errorf("client %s, run %s, round %d: %w: the run's schema hash is %.12s, this client's is %.12s",
			s.id, t.RunID, t.Round, ErrSchemaMismatch, t.Encoding.SchemaHash, s.schemaHash)
	}
	if s.member != nil {
		s.member.observe(t)
	}
	switch t.Kind {
	case task.KindKeygen, task.KindDecrypt:
		return s.committeeTask(ctx, t)
	}
	if t.PublicKey == nil && s.requireEnc {
		return task.Result{}, Report{}, fmt.Errorf("client %s, run %s, round %d: %w: the %s task carries no collective public key and this client sends only encrypted sums",
			s.id, t.RunID, t.Round, task.ErrInvalid, t.Kind)
	}
	if t.PublicKey == nil && s.train.Len() < s.floor.MinRecords() {
		return task.Result{}, Report{}, s.declined(t, fmt.Errorf("a plaintext %s task, and this client holds %d consenting training records, below its min_records_plaintext %d: its sums would be close to its customers' own records; it takes part only under secure aggregation",
			t.Kind, s.train.Len(), s.floor.MinRecords()))
	}
	if t.PublicKey != nil && s.pin != nil {
		if err := s.checkKey(t); err != nil {
			return task.Result{}, Report{}, s.declined(t, err)
		}
	}
	if (t.Kind == task.KindStats || t.Kind == task.KindEvaluate) && s.floor.Enforced() && t.Noise == nil {
		return task.Result{}, Report{}, s.declined(t, fmt.Errorf("%w: an un-noised %s release, and this client requires %s-level differential privacy",
			privacy.ErrBelowFloor, t.Kind, s.floor.Require))
	}
	var (
		values   []float64
		examples int
		err      error
		dp       Report
	)
	switch t.Kind {
	case task.KindStats:
		values, examples, err = s.stats(t.StatsScale)
	case task.KindTrain:
		values, examples, dp, err = s.trainTask(t)
	case task.KindEvaluate:
		values, examples, err = s.evaluate(t)
	default:
		err = fmt.Errorf("task kind %s is not supported by this client", t.Kind)
	}
	if errors.Is(err, privacy.ErrBelowFloor) || errors.Is(err, ErrDeclined) {
		return task.Result{}, Report{}, s.declined(t, err)
	}
	if err != nil {
		return task.Result{}, Report{}, fmt.Errorf("client %s, run %s, round %d, %s task: %w", s.id, t.RunID, t.Round, t.Kind, err)
	}
	if !s.cache {
		s.xTrain, s.xEval, s.encodedFor = nil, nil, ""
	}
	vec, err := s.protector.Protect(ctx, t, values)
	if err != nil {
		return task.Result{}, Report{}, fmt.Errorf("client %s, run %s, round %d: protect %s result: %w", s.id, t.RunID, t.Round, t.Kind, err)
	}
	clipped, encSeconds := 0, 0.0
	var endorsement *task.Endorsement
	if t.PublicKey != nil {
		var start time.Time
		if s.now != nil {
			start = s.now()
		}
		if vec.Ciphertext != nil {
			return task.Result{}, Report{}, fmt.Errorf("client %s: protector returned a ciphertext; encryption is the session's last step", s.id)
		}
		if t.Kind == task.KindStats {
			vec, clipped, endorsement, err = s.statsOnce(t, vec.Plain)
		} else {
			vec, clipped, endorsement, err = s.encryptResult(t, vec.Plain)
		}
		if errors.Is(err, ErrDeclined) {
			return task.Result{}, Report{}, s.declined(t, err)
		}
		if err != nil {
			return task.Result{}, Report{}, fmt.Errorf("client %s, run %s, round %d: encrypt %s result: %w", s.id, t.RunID, t.Round, t.Kind, err)
		}
		if s.now != nil {
			encSeconds = s.now().Sub(start).Seconds()
		}
	}
	res := task.Result{ClientID: s.id, TaskID: t.ID, RunID: t.RunID, Round: t.Round, Kind: t.Kind, Sum: vec, Endorsement: endorsement}
	rep := Report{Kind: t.Kind, Round: t.Round, Bytes: vec.Bytes(), Examples: examples, Excluded: s.Excluded(),
		Encrypted: vec.Ciphertext != nil, Clipped: clipped, EncryptSeconds: encSeconds,
		Epsilon: dp.Epsilon, Delta: dp.Delta, UpdateClipped: dp.UpdateClipped}
	return res, rep, nil
}

// checkKey verifies a task's collective key against the pinned committee, once per key.
func (s *Session) checkKey(t task.Task) error {
	h := sha256.New()
	h.Write([]byte(t.RunID))
	h.Write(t.PublicKey)
	if t.KeyInfo != nil {
		fmt.Fprintf(h, "%q|%d|%q", t.KeyInfo.SetupID, t.KeyInfo.Threshold, t.KeyInfo.Members)
	}
	var digest [sha256.Size]byte
	h.Sum(digest[:0])
	if digest == s.trustedKey {
		return nil
	}
	if err := s.pin.check(t.RunID, t.KeyInfo, t.PublicKey); err != nil {
		return fmt.Errorf("collective key not endorsed by the pinned committee: %w", err)
	}
	s.trustedKey = digest
	return nil
}

// declined wraps why the client declines t; the agent sends it to the coordinator as a
// refusal.
func (s *Session) declined(t task.Task, why error) error {
	if !errors.Is(why, ErrDeclined) {
		why = fmt.Errorf("%w: %w", ErrDeclined, why)
	}
	return fmt.Errorf("client %s, run %s, round %d, %s task: %w", s.id, t.RunID, t.Round, t.Kind, why)
}

// Refusal is the result that tells the coordinator why the client declined t.
func Refusal(clientID string, t task.Task, why error) task.Result {
	reason := why.Error()
	if len(reason) > task.MaxRefusalLen {
		reason = reason[:task.MaxRefusalLen]
	}
	return task.Result{ClientID: clientID, TaskID: t.ID, RunID: t.RunID, Round: t.Round, Kind: t.Kind, Refusal: strings.ToValidUTF8(reason, "?")}
}

// Epsilon is what this client has spent over everything it released, at Delta: its own
// accounting, whatever the coordinator reports.
func (s *Session) Epsilon() (eps, delta float64) { return s.ledger.Epsilon(), s.ledger.Delta() }

// reportEpsilon is Epsilon for a task's report, unless the session was asked not to report it.
func (s *Session) reportEpsilon() (eps, delta float64) {
	if s.noEpsilonReport {
		return 0, 0
	}
	return s.Epsilon()
}

// committeeTask answers keygen and decrypt tasks: only committee members get them.
func (s *Session) committeeTask(ctx context.Context, t task.Task) (task.Result, Report, error) {
	res := task.Result{ClientID: s.id, TaskID: t.ID, RunID: t.RunID, Round: t.Round, Kind: t.Kind}
	rep := Report{Kind: t.Kind, Round: t.Round}
	if s.member == nil {
		return res, rep, fmt.Errorf("client %s, run %s, round %d: %w: a %s task for a client that is not a committee member",
			s.id, t.RunID, t.Round, task.ErrInvalid, t.Kind)
	}
	var err error
	switch t.Kind {
	case task.KindKeygen:
		err = s.member.keygen(t, s.id, &res)
		rep.Bytes = len(res.PublicKeyShare)
		for _, b := range res.Boxes {
			rep.Bytes += len(b.Box)
		}
	case task.KindDecrypt:
		var rec ShareRecord
		res.DecryptionShare, rec, err = s.member.decrypt(ctx, t, s.id)
		rep.Share = &rec
		rep.Bytes = len(res.DecryptionShare)
	}
	if err != nil {
		return task.Result{}, rep, fmt.Errorf("client %s, run %s, round %d, %s task: %w", s.id, t.RunID, t.Round, t.Kind, err)
	}
	return res, rep, nil
}

// stats: count, sums and sums of squares per numeric feature over the consenting training
// rows, and the number of rows excluded for lack of consent.
func (s *Session) stats(scale float64) ([]float64, int, error) {
	st := s.train.Stats()
	if scale != 0 && scale != 1 {
		if scale < 0 || math.IsNaN(scale) || math.IsInf(scale, 0) {
			return nil, 0, fmt.Errorf("stats_scale: %v is not a positive number", scale)
		}
		floats.Scale(scale, st.Sum)
		floats.Scale(scale*scale, st.SumSq)
	}
	v := append(st.Vector(), float64(s.Excluded()))
	return v, s.train.Len(), nil
}

func (s *Session) encode(t task.Task) error {
	key := fmt.Sprint(t.Encoding.Mean, t.Encoding.Std)
	if key == s.encodedFor && s.xTrain != nil {
		return nil
	}
	enc, err := dataset.NewEncoder(s.schema, dataset.Standardization{Mean: t.Encoding.Mean, Std: t.Encoding.Std})
	if err != nil {
		return fmt.Errorf("encoding: %w", err)
	}
	s.xTrain = enc.Encode(s.train)
	if s.eval.Len() > 0 {
		s.xEval = enc.Encode(s.eval)
	} else {
		s.xEval = nil
	}
	s.encodedFor = key
	return nil
}

func (s *Session) checkWeights(t task.Task) error {
	_, cols := s.xTrain.Dims()
	if err := logreg.CheckWeights(t.Weights, cols); err != nil {
		return fmt.Errorf("weights: %w", err)
	}
	return nil
}

// trainTask trains locally from the global weights and returns n, n*(local-global) and n*loss;
// under differential privacy it returns the protected, unweighted form (see task.DPSpec).
func (s *Session) trainTask(t task.Task) ([]float64, int, Report, error) {
	var rep Report
	if err := s.checkTrainDP(t); err != nil {
		return nil, 0, rep, err
	}
	if t.GBDT != nil {
		values, n, err := s.treeTask(t)
		return values, n, rep, err
	}
	if err := s.encode(t); err != nil {
		return nil, 0, rep, err
	}
	if err := s.checkWeights(t); err != nil {
		return nil, 0, rep, err
	}
	if t.DP != nil {
		return s.trainPrivately(t)
	}
	// The seed only shapes batch order: without differential privacy nothing is hidden
	// from the coordinator that chose it.
	rng := rand.New(rand.NewPCG(t.Seed, 0x5eed))
	out := make([]float64, task.TrainVectorLen(len(t.Weights)))
	delta := out[task.TrainDeltaStart : task.TrainDeltaStart+len(t.Weights)]
	local, loss, err := logreg.TrainSGD(t.Weights, s.xTrain, s.train.Label, t.Train, rng)
	if err != nil {
		return nil, 0, rep, err
	}
	for i := range local {
		delta[i] = local[i] - t.Weights[i]
	}
	if u := t.MaxUpdateNorm; u != 0 {
		// The run's bound on an update: the coordinator refuses one above it.
		if _, _, err := privacy.ClipL2(delta, u); err != nil {
			return nil, 0, rep, fmt.Errorf("max_update_norm: %w", err)
		}
	}
	n := float64(s.train.Len())
	floats.Scale(n, delta)
	out[task.TrainCountIndex] = n
	out[len(out)-1] = n * min(loss, metrics.MaxLogLoss) // the coordinator refuses more
	return out, s.train.Len(), rep, nil
}

// checkTrainDP declines a train task whose differential privacy is weaker than this client's
// floor, or that is not self-consistent: DP fails closed, whatever the coordinator sends.
func (s *Session) checkTrainDP(t task.Task) error {
	d := t.DP
	if d == nil {
		return s.floor.Accepts("", 0, 0)
	}
	switch d.Mechanism {
	case task.DPClient, task.DPRecord:
	default:
		return fmt.Errorf("%w: dp.mechanism %q is not supported", ErrDeclined, d.Mechanism)
	}
	if err := requireNoise("dp.noise_multiplier", d.NoiseMultiplier); err != nil {
		return err
	}
	if !(d.ClipNorm > 0) || math.IsInf(d.ClipNorm, 0) {
		return fmt.Errorf("%w: dp.clip_norm %v is not a positive, finite number", privacy.ErrBelowFloor, d.ClipNorm)
	}
	if err := s.floor.Accepts(d.Mechanism, d.NoiseMultiplier, d.ClipNorm); err != nil {
		return err
	}
	if d.Mechanism != task.DPClient {
		return nil
	}
	if math.IsNaN(d.IndicatorNoiseStd) || math.IsInf(d.IndicatorNoiseStd, 0) || d.IndicatorNoiseStd < 0 {
		return fmt.Errorf("%w: dp.indicator_noise_std %v is not a finite number >= 0", privacy.ErrBelowFloor, d.IndicatorNoiseStd)
	}
	_, err := s.shareContributors(t, d.ExpectedContributors, "client-level differential privacy", "update")
	return err
}

// requireNoise declines a differentially private task whose noise multiplier is not a positive,
// finite number: DP fails closed, with or without a floor.
func requireNoise(field string, z float64) error {
	if !(z > 0) || math.IsInf(z, 0) {
		return fmt.Errorf("%w: %s %v: a differentially private task must carry positive, finite noise", privacy.ErrBelowFloor, field, z)
	}
	return nil
}

// shareContributors is the m a client divides its share of a noised release by: in he mode
// the task's expected contributors, capped by the client's floor; in a plaintext task none
// (0), the coordinator adding the noise, which a client whose floor is enforced does not
// leave to it, and a plaintext task stating m is refused (the coordinator would read the
// client's share alone).
func (s *Session) shareContributors(t task.Task, expected int, what, whose string) (int, error) {
	switch {
	case t.PublicKey == nil && expected != 0:
		return 0, fmt.Errorf("%w: expected contributors %d in a plaintext task: the coordinator would read this client's noise share alone",
			privacy.ErrBelowFloor, expected)
	case t.PublicKey == nil && s.floor.Enforced():
		return 0, fmt.Errorf("%w: %s without secure aggregation leaves the noise to the coordinator, which would see this client's %s first",
			privacy.ErrBelowFloor, what, whose)
	case t.PublicKey == nil:
		return 0, nil
	}
	return s.floor.CapContributors(expected)
}

// topUp is the standard deviation of the fresh noise that raises a release's noise from have
// to want (0 when it already has enough): independent Gaussians add in variance.
func topUp(want, have float64) float64 {
	if want <= have {
		return 0
	}
	return math.Sqrt(want*want - have*have)
}

// release is a DP train result this client sent: a repeated task for the same model gets the
// same values again (topped up with fresh noise where it now owes more), never a fresh draw
// that could be averaged against the first.
type release struct {
	version uint64
	digest  [sha256.Size]byte
	values  []float64
	// shareStd and indicatorStd are the noise this client added itself (client level, he).
	shareStd, indicatorStd float64
	clipped                bool
}

// releaseDigest identifies what a DP train task asks, apart from its seed and (client level)
// the contributors its noise share is divided by.
func releaseDigest(t task.Task) [sha256.Size]byte {
	h := sha256.New()
	d := t.DP
	fmt.Fprintf(h, "%s|%q|%v|%v|%v|%v|%v|%d|%v|%d|%+v|", t.RunID, d.Mechanism, d.ClipNorm, d.NoiseMultiplier, d.IndicatorNoiseStd,
		d.SamplingRate, d.Steps, d.ReferenceRecords, t.Encoding, t.ModelVersion, t.Train)
	var b [8]byte
	for _, w := range t.Weights {
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(w))
		h.Write(b[:])
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// trainPrivately answers a DP train task: a repeat of the latest release for this run's model
// gets that release again; a new one is admitted by the client's own ledger, computed with
// noise and sampling from the client's private source, and remembered.
func (s *Session) trainPrivately(t task.Task) ([]float64, int, Report, error) {
	d := t.DP
	digest := releaseDigest(t)
	if prev := s.released[t.RunID]; prev != nil {
		switch {
		case prev.version == t.ModelVersion && prev.digest == digest:
			return s.repeat(t, prev)
		case t.ModelVersion <= prev.version:
			return nil, 0, Report{}, fmt.Errorf("%w: this client already released an update trained from model version %d of run %s; it answers a repeat of that task only with the same release",
				ErrDeclined, prev.version, t.RunID)
		}
	}
	// Admit the release before computing anything: a release the ledger refuses is never made.
	q, steps := 1.0, 1
	if d.Mechanism == task.DPRecord {
		q, steps = d.SamplingRate, d.Steps
	}
	next := s.ledger.Clone()
	if _, err := next.Admit(q, d.NoiseMultiplier, steps); err != nil {
		return nil, 0, Report{}, err
	}
	out := make([]float64, task.TrainVectorLen(len(t.Weights)))
	delta := out[task.TrainDeltaStart : task.TrainDeltaStart+len(t.Weights)]
	rel := &release{version: t.ModelVersion, digest: digest}
	var err error
	if d.Mechanism == task.DPRecord {
		err = s.trainDPSGD(t, delta)
	} else {
		err = s.clipUpdate(t, rel, out, delta)
	}
	if err != nil {
		return nil, 0, Report{}, err
	}
	out[task.TrainCountIndex] = 1
	rel.values = slices.Clone(out)
	if err := s.commitRelease(t.RunID, rel, next); err != nil {
		return nil, 0, Report{}, err
	}
	eps, del := s.reportEpsilon()
	return out, s.train.Len(), Report{UpdateClipped: rel.clipped, Epsilon: eps, Delta: del}, nil
}

// repeat answers a repeated DP train task with the earlier release. Under client-level DP in
// he mode a retry may expect fewer contributors, so that each owes a larger noise share: the
// client then adds only the difference, fresh and independent, which reveals nothing the
// first release did not.
func (s *Session) repeat(t task.Task, prev *release) ([]float64, int, Report, error) {
	out := slices.Clone(prev.values)
	if d := t.DP; d.Mechanism == task.DPClient && t.PublicKey != nil {
		share, indicator, err := s.noiseShares(d)
		if err != nil {
			return nil, 0, Report{}, err
		}
		if share <= prev.shareStd && indicator <= prev.indicatorStd {
			eps, del := s.reportEpsilon()
			return out, s.train.Len(), Report{UpdateClipped: prev.clipped, Epsilon: eps, Delta: del}, nil
		}
		if top := topUp(share, prev.shareStd); top > 0 {
			if err := privacy.AddGaussianNoise(out[task.TrainDeltaStart:len(out)-1], top, s.noise); err != nil {
				return nil, 0, Report{}, err
			}
		}
		if top := topUp(indicator, prev.indicatorStd); top > 0 {
			out[len(out)-1] += s.noise.NormFloat64() * top
		}
		topped := &release{version: prev.version, digest: prev.digest, clipped: prev.clipped, values: slices.Clone(out),
			shareStd: max(share, prev.shareStd), indicatorStd: max(indicator, prev.indicatorStd)}
		if err := s.commitRelease(t.RunID, topped, s.ledger); err != nil {
			return nil, 0, Report{}, err
		}
	}
	eps, del := s.reportEpsilon()
	return out, s.train.Len(), Report{UpdateClipped: prev.clipped, Epsilon: eps, Delta: del}, nil
}

// commitRelease makes rel the run's latest release and ledger the client's, persisting both
// before the release can leave the session.
func (s *Session) commitRelease(run string, rel *release, ledger *privacy.Ledger) error {
	released := maps.Clone(s.released)
	released[run] = rel
	if err := s.save(ledger, released); err != nil {
		return err
	}
	s.ledger, s.released = ledger, released
	return nil
}

// save persists the privacy state made of ledger, released and the evaluation history
// (nothing without PersistPrivacy).
func (s *Session) save(ledger *privacy.Ledger, released map[string]*release) error {
	if s.persist == nil {
		return nil
	}
	b, err := marshalPrivacy(ledger, released, s.evaluated, s.statsSent)
	if err != nil {
		return err
	}
	if err := s.persist(b); err != nil {
		return fmt.Errorf("persist privacy state: %w", err)
	}
	return nil
}

// savedRelease and savedPrivacy are the persistent form of the ledger and the releases.
type savedRelease struct {
	Version      uint64    `json:"version"`
	Digest       []byte    `json:"digest"`
	Values       []float64 `json:"values"`
	ShareStd     float64   `json:"share_std"`
	IndicatorStd float64   `json:"indicator_std"`
	Clipped      bool      `json:"clipped"`
}

type savedEvaluation struct {
	Version  uint64    `json:"version"`
	Digest   []byte    `json:"digest"`
	Weights  []float64 `json:"weights"`
	Values   []float64 `json:"values,omitempty"`
	ShareStd float64   `json:"share_std,omitempty"`
}

type savedPrivacy struct {
	Ledger    json.RawMessage            `json:"ledger"`
	Released  map[string]savedRelease    `json:"released"`
	Evaluated map[string]savedEvaluation `json:"evaluated,omitempty"`
	// EvaluatedModels are, per run, the hex SHA-256 of the weights of every model evaluated,
	// with its version; Stats the encrypted statistics the client sent, per run.
	EvaluatedModels map[string]map[string]uint64 `json:"evaluated_models,omitempty"`
	Stats           map[string]savedContribution `json:"stats,omitempty"`
}

// savedContribution is an encrypted result as the client keeps it: what it said (the
// contributionKey), the ciphertext and its signature.
type savedContribution struct {
	Key         []byte            `json:"key"`
	Ciphertext  []byte            `json:"ciphertext"`
	Length      int               `json:"length"`
	Endorsement *task.Endorsement `json:"endorsement,omitempty"`
}

func marshalPrivacy(ledger *privacy.Ledger, released map[string]*release, evaluated evalState, stats map[string]*contribution) ([]byte, error) {
	l, err := ledger.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out := savedPrivacy{Ledger: l, Released: map[string]savedRelease{}, Evaluated: map[string]savedEvaluation{}, EvaluatedModels: map[string]map[string]uint64{},
		Stats: map[string]savedContribution{}}
	for run, e := range evaluated.latest {
		out.Evaluated[run] = savedEvaluation{Version: e.version, Digest: e.digest[:], Weights: e.weights, Values: e.values, ShareStd: e.shareStd}
	}
	for run, models := range evaluated.models {
		out.EvaluatedModels[run] = map[string]uint64{}
		for h, v := range models {
			out.EvaluatedModels[run][hex.EncodeToString(h[:])] = v
		}
	}
	for run, c := range stats {
		out.Stats[run] = savedContribution{Key: c.key[:], Ciphertext: c.vector.Ciphertext, Length: c.vector.Length, Endorsement: c.endorsement}
	}
	for run, r := range released {
		out.Released[run] = savedRelease{Version: r.version, Digest: r.digest[:], Values: r.values, ShareStd: r.shareStd,
			IndicatorStd: r.indicatorStd, Clipped: r.clipped}
	}
	return json.Marshal(out)
}

func (s *Session) restorePrivacy(b []byte) error {
	var saved savedPrivacy
	if err := json.Unmarshal(b, &saved); err != nil {
		return err
	}
	if err := s.ledger.Restore(saved.Ledger); err != nil {
		return err
	}
	for run, r := range saved.Released {
		if len(r.Digest) != sha256.Size {
			return fmt.Errorf("release of run %s: digest of %d bytes", run, len(r.Digest))
		}
		rel := &release{version: r.Version, values: r.Values, shareStd: r.ShareStd, indicatorStd: r.IndicatorStd, clipped: r.Clipped}
		copy(rel.digest[:], r.Digest)
		s.released[run] = rel
	}
	for run, models := range saved.EvaluatedModels {
		s.evaluated.models[run] = map[[sha256.Size]byte]uint64{}
		for h, v := range models {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != sha256.Size {
				return fmt.Errorf("evaluated model of run %s: %q is not a hex SHA-256", run, h)
			}
			s.evaluated.models[run][[sha256.Size]byte(b)] = v
		}
	}
	for run, c := range saved.Stats {
		if len(c.Key) != sha256.Size || len(c.Ciphertext) == 0 || c.Length < 1 {
			return fmt.Errorf("statistics of run %s: a key of %d bytes, %d bytes of ciphertext of %d values", run, len(c.Key), len(c.Ciphertext), c.Length)
		}
		s.statsSent[run] = &contribution{run: run, key: [sha256.Size]byte(c.Key), vector: task.Vector{Ciphertext: c.Ciphertext, Length: c.Length},
			endorsement: c.Endorsement}
	}
	for run, e := range saved.Evaluated {
		if len(e.Digest) != sha256.Size {
			return fmt.Errorf("evaluation of run %s: digest of %d bytes", run, len(e.Digest))
		}
		ev := &evalRelease{version: e.Version, weights: e.Weights, values: e.Values, shareStd: e.ShareStd}
		copy(ev.digest[:], e.Digest)
		s.evaluated.latest[run] = ev
	}
	return nil
}

// noiseShares is this client's share of a client-level round's noise in he mode: z*C/sqrt(m)
// on the update and sigma_b/sqrt(m) on the indicator, with m capped by the client's floor.
func (s *Session) noiseShares(d *task.DPSpec) (share, indicator float64, err error) {
	m, err := s.floor.CapContributors(d.ExpectedContributors) // he mode: checkTrainDP took the plaintext cases
	if err != nil {
		return 0, 0, err
	}
	if share, err = privacy.ClientNoiseStd(d.NoiseMultiplier, d.ClipNorm, m); err != nil {
		return 0, 0, err
	}
	return share, d.IndicatorNoiseStd / math.Sqrt(float64(m)), nil
}

// clipUpdate applies client-level DP (DP-FedAvg): local training from the task's seed, the
// update clipped to the task's norm and counted once, the clipping indicator in the last
// place. In he mode the client adds its share of the Gaussian noise, so the coordinator only
// ever decrypts a noised sum.
func (s *Session) clipUpdate(t task.Task, rel *release, out, delta []float64) error {
	local, _, err := logreg.TrainSGD(t.Weights, s.xTrain, s.train.Label, t.Train, rand.New(rand.NewPCG(t.Seed, 0x5eed)))
	if err != nil {
		return err
	}
	for i := range local {
		delta[i] = local[i] - t.Weights[i]
	}
	_, clipped, err := privacy.ClipL2(delta, t.DP.ClipNorm)
	if err != nil {
		return fmt.Errorf("dp.clip_norm: %w", err)
	}
	rel.clipped = clipped
	out[len(out)-1] = privacy.UnclippedIndicator(clipped)
	if t.PublicKey == nil {
		return nil // plaintext: the coordinator adds the round's noise
	}
	if rel.shareStd, rel.indicatorStd, err = s.noiseShares(t.DP); err != nil {
		return err
	}
	if err := privacy.AddGaussianNoise(delta, rel.shareStd, s.noise); err != nil {
		return fmt.Errorf("dp noise share: %w", err)
	}
	if rel.indicatorStd > 0 {
		out[len(out)-1] += s.noise.NormFloat64() * rel.indicatorStd
	}
	return nil
}

// trainDPSGD applies record-level DP: DP-SGD over the local rows, its Poisson sampling and
// noise drawn from the client's private source.
func (s *Session) trainDPSGD(t task.Task, delta []float64) error {
	d := t.DP
	p := logreg.DPSGDParams{SamplingRate: d.SamplingRate, ClipNorm: d.ClipNorm, NoiseMultiplier: d.NoiseMultiplier, Steps: d.Steps, ReferenceRecords: d.ReferenceRecords,
		LearningRate: t.Train.LearningRate, L2: t.Train.L2}
	local, err := logreg.TrainDPSGD(t.Weights, s.xTrain, s.train.Label, p, s.noise)
	if err != nil {
		return err
	}
	for i := range local {
		delta[i] = local[i] - t.Weights[i]
	}
	return nil
}

// Personalization is one client's comparison of the global model with its own fine-tuned copy
// on its held-out rows.
type Personalization struct {
	Client          string  `json:"client"`
	TestRows        int     `json:"test_rows"`
	GlobalAUC       float64 `json:"global_auc"`
	PersonalizedAUC float64 `json:"personalized_auc"`
}

// Personalize fine-tunes the global model on this client's training rows (p, typically a few
// epochs) and scores both models on its held-out rows. AUC is NaN where the held-out rows hold
// one class only.
func (s *Session) Personalize(global []float64, enc task.Encoding, p logreg.Params, seed uint64) (Personalization, error) {
	t := task.Task{Encoding: enc, Weights: global, Seed: seed}
	out := Personalization{Client: s.id, TestRows: s.eval.Len()}
	if err := s.encode(t); err != nil {
		return out, err
	}
	if err := s.checkWeights(t); err != nil {
		return out, err
	}
	local, _, err := logreg.TrainSGD(global, s.xTrain, s.train.Label, p, rand.New(rand.NewPCG(seed, 0x9e75)))
	if err != nil {
		return out, fmt.Errorf("client %s: personalize: %w", s.id, err)
	}
	out.GlobalAUC, out.PersonalizedAUC = math.NaN(), math.NaN()
	if s.xEval != nil {
		out.GlobalAUC = metrics.AUC(logreg.PredictAll(global, s.xEval, nil), s.eval.Label)
		out.PersonalizedAUC = metrics.AUC(logreg.PredictAll(local, s.xEval, nil), s.eval.Label)
	}
	if !s.cache {
		s.xTrain, s.xEval, s.encodedFor = nil, nil, ""
	}
	return out, nil
}
