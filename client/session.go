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
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/explain"
	"github.com/fedprop/fedprop/fairness"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/task"
)

// maxHistogramBins bounds the evaluation histogram a task may ask for, so that a task cannot
// make a client allocate without limit.
const maxHistogramBins = 1 << 16

// ErrSchemaMismatch: the coordinator's run uses a different schema than this client.
var ErrSchemaMismatch = errors.New("schema mismatch")

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
	// Random is the source of encryption randomness (nil: crypto/rand); the simulator passes
	// a seeded source.
	Random io.Reader
	// Now, when set, times encryption for the report (the simulator's cost accounting).
	Now func() time.Time
	// NoEncodingCache encodes the records afresh for every task instead of keeping the
	// encoded matrices.
	NoEncodingCache bool
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
	enc       *encryptor
	encRandom io.Reader
	// cache keeps the encoded matrices between tasks (the default; the simulator turns it off
	// for very many small clients, whose idle state then costs nothing beyond their data).
	cache bool
	now   func() time.Time
	// noise draws the client's differential-privacy noise; dpSteps counts its DP-SGD steps.
	noise   *rand.Rand
	dpSteps int

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
	return &Session{id: id, schema: schema, schemaHash: task.SchemaHash(schema), train: train, eval: eval,
		protector: opts.Protector, member: opts.Member, requireEnc: opts.RequireEncryption, encRandom: opts.Random, now: opts.Now, cache: !opts.NoEncodingCache,
		noise: rand.New(rand.NewChaCha8(seed))}, nil
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
		return s.committeeTask(t)
	}
	if t.PublicKey == nil && s.requireEnc {
		return task.Result{}, Report{}, fmt.Errorf("client %s, run %s, round %d: %w: the %s task carries no collective public key and this client sends only encrypted sums",
			s.id, t.RunID, t.Round, task.ErrInvalid, t.Kind)
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
	if t.PublicKey != nil {
		var start time.Time
		if s.now != nil {
			start = s.now()
		}
		if vec.Ciphertext != nil {
			return task.Result{}, Report{}, fmt.Errorf("client %s: protector returned a ciphertext; encryption is the session's last step", s.id)
		}
		if s.enc == nil {
			if s.enc, err = newEncryptor(s.encRandom); err != nil {
				return task.Result{}, Report{}, err
			}
		}
		vec, clipped, err = s.enc.encrypt(t.PublicKey, vec.Plain, t.CohortSize)
		if err != nil {
			return task.Result{}, Report{}, fmt.Errorf("client %s, run %s, round %d: encrypt %s result: %w", s.id, t.RunID, t.Round, t.Kind, err)
		}
		if s.now != nil {
			encSeconds = s.now().Sub(start).Seconds()
		}
	}
	res := task.Result{ClientID: s.id, TaskID: t.ID, RunID: t.RunID, Round: t.Round, Kind: t.Kind, Sum: vec}
	rep := Report{Kind: t.Kind, Round: t.Round, Bytes: vec.Bytes(), Examples: examples, Excluded: s.Excluded(),
		Encrypted: vec.Ciphertext != nil, Clipped: clipped, EncryptSeconds: encSeconds,
		Epsilon: dp.Epsilon, Delta: dp.Delta, UpdateClipped: dp.UpdateClipped}
	return res, rep, nil
}

// committeeTask answers keygen and decrypt tasks: only committee members get them.
func (s *Session) committeeTask(t task.Task) (task.Result, Report, error) {
	res := task.Result{ClientID: s.id, TaskID: t.ID, RunID: t.RunID, Round: t.Round, Kind: t.Kind}
	rep := Report{Kind: t.Kind, Round: t.Round}
	if s.member == nil {
		return res, rep, fmt.Errorf("client %s, run %s, round %d: %w: a %s task for a client that is not a committee member",
			s.id, t.RunID, t.Round, task.ErrInvalid, t.Kind)
	}
	var err error
	switch t.Kind {
	case task.KindKeygen:
		err = s.member.keygen(t, &res)
		rep.Bytes = len(res.PublicKeyShare)
		for _, b := range res.Boxes {
			rep.Bytes += len(b.Box)
		}
	case task.KindDecrypt:
		var rec ShareRecord
		res.DecryptionShare, rec, err = s.member.decrypt(t)
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
	if err := model.CheckWeights(t.Weights, cols); err != nil {
		return fmt.Errorf("weights: %w", err)
	}
	return nil
}

// trainTask trains locally from the global weights and returns n, n*(local-global) and n*loss;
// under differential privacy it returns the protected, unweighted form (see task.DPSpec).
func (s *Session) trainTask(t task.Task) ([]float64, int, Report, error) {
	var rep Report
	if err := s.encode(t); err != nil {
		return nil, 0, rep, err
	}
	if err := s.checkWeights(t); err != nil {
		return nil, 0, rep, err
	}
	rng := rand.New(rand.NewPCG(t.Seed, 0x5eed))
	out := make([]float64, task.TrainVectorLen(len(t.Weights)))
	delta := out[task.TrainDeltaStart : task.TrainDeltaStart+len(t.Weights)]
	if t.DP != nil && t.DP.Mechanism == task.DPRecord {
		return s.trainDPSGD(t, rng, out, delta)
	}
	local, loss, err := model.TrainSGD(t.Weights, s.xTrain, s.train.Label, t.Train, rng)
	if err != nil {
		return nil, 0, rep, err
	}
	for i := range local {
		delta[i] = local[i] - t.Weights[i]
	}
	if t.DP != nil {
		switch t.DP.Mechanism {
		case task.DPClient:
			return s.clipUpdate(t, out, delta)
		default:
			return nil, 0, rep, fmt.Errorf("dp.mechanism: %q is not supported", t.DP.Mechanism)
		}
	}
	n := float64(s.train.Len())
	floats.Scale(n, delta)
	out[task.TrainCountIndex] = n
	out[len(out)-1] = n * loss
	return out, s.train.Len(), rep, nil
}

// clipUpdate applies client-level DP (DP-FedAvg): the update is clipped to the task's norm and
// counts once; the last value is the clipping indicator. In he mode the client adds its share
// of the Gaussian noise, so the coordinator only ever decrypts a noised sum.
func (s *Session) clipUpdate(t task.Task, out, delta []float64) ([]float64, int, Report, error) {
	_, clipped, err := privacy.ClipL2(delta, t.DP.ClipNorm)
	if err != nil {
		return nil, 0, Report{}, fmt.Errorf("dp.clip_norm: %w", err)
	}
	out[task.TrainCountIndex] = 1
	out[len(out)-1] = privacy.UnclippedIndicator(clipped)
	if t.DP.NoiseStd > 0 {
		if err := privacy.AddGaussianNoise(delta, t.DP.NoiseStd, s.noise); err != nil {
			return nil, 0, Report{}, fmt.Errorf("dp.noise_std: %w", err)
		}
	}
	if t.DP.IndicatorNoiseStd > 0 {
		out[len(out)-1] += s.noise.NormFloat64() * t.DP.IndicatorNoiseStd
	}
	return out, s.train.Len(), Report{UpdateClipped: clipped}, nil
}

// trainDPSGD applies record-level DP: DP-SGD over the local rows. The client accounts for its
// own steps and reports its epsilon.
func (s *Session) trainDPSGD(t task.Task, rng *rand.Rand, out, delta []float64) ([]float64, int, Report, error) {
	d := t.DP
	p := model.DPSGDParams{SamplingRate: d.SamplingRate, ClipNorm: d.ClipNorm, NoiseMultiplier: d.NoiseMultiplier, Steps: d.Steps,
		LearningRate: t.Train.LearningRate, L2: t.Train.L2}
	local, err := model.TrainDPSGD(t.Weights, s.xTrain, s.train.Label, p, rng)
	if err != nil {
		return nil, 0, Report{}, err
	}
	for i := range local {
		delta[i] = local[i] - t.Weights[i]
	}
	out[task.TrainCountIndex] = 1
	s.dpSteps += d.Steps
	rep := Report{Delta: d.Delta}
	if d.Delta > 0 && d.NoiseMultiplier > 0 {
		rep.Epsilon, _, err = privacy.Epsilon(d.SamplingRate, d.NoiseMultiplier, s.dpSteps, d.Delta, nil, privacy.Tight)
		if err != nil {
			return nil, 0, Report{}, fmt.Errorf("account DP-SGD steps: %w", err)
		}
	}
	return out, s.train.Len(), rep, nil
}

// evaluate scores the global model on the held-out rows and returns only counts and sums.
func (s *Session) evaluate(t task.Task) ([]float64, int, error) {
	if err := s.encode(t); err != nil {
		return nil, 0, err
	}
	if err := s.checkWeights(t); err != nil {
		return nil, 0, err
	}
	if t.HistogramBins < 2 || t.HistogramBins > maxHistogramBins {
		return nil, 0, fmt.Errorf("histogram_bins: %d is outside [2, %d]", t.HistogramBins, maxHistogramBins)
	}
	sums := metrics.NewEvalSums(t.HistogramBins)
	var scores []float64
	if s.xEval != nil {
		scores = model.PredictAll(t.Weights, s.xEval, nil)
		sums.AddScores(scores, s.eval.Label)
	}
	out := sums.Vector()
	if f := t.Fairness; f != nil {
		// The fairness audit: the same counts per group of every sensitive attribute.
		layout, err := fairness.NewLayout(s.schema, fairness.LayoutConfig{Thresholds: f.Thresholds, Bins: f.Bins, Groups: f.Groups})
		if err != nil {
			return nil, 0, fmt.Errorf("fairness: %w", err)
		}
		groups := fairness.NewGroupSums(layout)
		if scores != nil {
			if err := groups.AddScores(scores, s.eval.Label, s.eval.Groups); err != nil {
				return nil, 0, fmt.Errorf("fairness: %w", err)
			}
		}
		out = append(out, groups.Vector()...)
	}
	// Global feature importance: the sums of each feature's contribution to the log-odds.
	x, err := s.explainer(t)
	if err != nil {
		return nil, 0, err
	}
	imp := x.NewImportanceSums()
	if s.eval.Len() > 0 {
		if err := x.AddImportance(&imp, s.eval); err != nil {
			return nil, 0, fmt.Errorf("importance: %w", err)
		}
	}
	return append(out, imp.Vector()...), s.eval.Len(), nil
}

// explainer explains scores of the task's model under its encoding.
func (s *Session) explainer(t task.Task) (*explain.Explainer, error) {
	enc, err := dataset.NewEncoder(s.schema, dataset.Standardization{Mean: t.Encoding.Mean, Std: t.Encoding.Std})
	if err != nil {
		return nil, err
	}
	return explain.New(task.ModelDocument(s.schema, t.Encoding, enc.FeatureNames(), t.Weights))
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
func (s *Session) Personalize(global []float64, enc task.Encoding, p model.Params, seed uint64) (Personalization, error) {
	t := task.Task{Encoding: enc, Weights: global, Seed: seed}
	out := Personalization{Client: s.id, TestRows: s.eval.Len()}
	if err := s.encode(t); err != nil {
		return out, err
	}
	if err := s.checkWeights(t); err != nil {
		return out, err
	}
	local, _, err := model.TrainSGD(global, s.xTrain, s.train.Label, p, rand.New(rand.NewPCG(seed, 0x9e75)))
	if err != nil {
		return out, fmt.Errorf("client %s: personalize: %w", s.id, err)
	}
	out.GlobalAUC, out.PersonalizedAUC = math.NaN(), math.NaN()
	if s.xEval != nil {
		out.GlobalAUC = metrics.AUC(model.PredictAll(global, s.xEval, nil), s.eval.Label)
		out.PersonalizedAUC = metrics.AUC(model.PredictAll(local, s.xEval, nil), s.eval.Label)
	}
	if !s.cache {
		s.xTrain, s.xEval, s.encodedFor = nil, nil, ""
	}
	return out, nil
}
