// Package client is the branch (or app) side of fedprop: a Session that turns tasks into
// protected results using only the client's own records, and an Agent that connects out to
// the coordinator, polls for tasks and submits results, surviving coordinator restarts.
//
// The Session is a pure core: it touches no socket, file or clock, so the simulator drives the
// very same code that a branch runs. Records never leave it; only sums do.
package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/model"
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
}

// Session holds one client's records and answers tasks with sums over them.
type Session struct {
	id         string
	schema     *dataset.Schema
	schemaHash string
	train      *dataset.Dataset
	eval       *dataset.Dataset
	protector  Protector

	// The encoded matrices are cached per pinned encoding: every train and evaluate task of a
	// run uses the same one.
	encodedFor string
	xTrain     *mat.Dense
	xEval      *mat.Dense
}

// NewSession makes a session for client id over its training rows and held-out evaluation
// rows (eval may be empty). A nil protector means Plaintext.
func NewSession(id string, schema *dataset.Schema, train, eval *dataset.Dataset, protector Protector) (*Session, error) {
	if id == "" {
		return nil, errors.New("client id is empty")
	}
	if train == nil || train.Len() == 0 {
		return nil, fmt.Errorf("client %s: no consenting training rows", id)
	}
	if eval == nil {
		eval = train.Subset(nil)
	}
	if protector == nil {
		protector = Plaintext
	}
	return &Session{id: id, schema: schema, schemaHash: task.SchemaHash(schema), train: train, eval: eval, protector: protector}, nil
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
	var (
		values   []float64
		examples int
		err      error
	)
	switch t.Kind {
	case task.KindStats:
		values, examples, err = s.stats()
	case task.KindTrain:
		values, examples, err = s.trainTask(t)
	case task.KindEvaluate:
		values, examples, err = s.evaluate(t)
	default:
		err = fmt.Errorf("task kind %s is not supported by this client", t.Kind)
	}
	if err != nil {
		return task.Result{}, Report{}, fmt.Errorf("client %s, run %s, round %d, %s task: %w", s.id, t.RunID, t.Round, t.Kind, err)
	}
	vec, err := s.protector.Protect(ctx, t, values)
	if err != nil {
		return task.Result{}, Report{}, fmt.Errorf("client %s, run %s, round %d: protect %s result: %w", s.id, t.RunID, t.Round, t.Kind, err)
	}
	res := task.Result{ClientID: s.id, TaskID: t.ID, RunID: t.RunID, Round: t.Round, Kind: t.Kind, Sum: vec}
	rep := Report{Kind: t.Kind, Round: t.Round, Bytes: vec.Bytes(), Examples: examples, Excluded: s.Excluded()}
	return res, rep, nil
}

// stats: count, sums and sums of squares per numeric feature over the consenting training
// rows, and the number of rows excluded for lack of consent.
func (s *Session) stats() ([]float64, int, error) {
	st := s.train.Stats()
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

// trainTask trains locally from the global weights and returns n, n*(local-global) and n*loss.
func (s *Session) trainTask(t task.Task) ([]float64, int, error) {
	if err := s.encode(t); err != nil {
		return nil, 0, err
	}
	if err := s.checkWeights(t); err != nil {
		return nil, 0, err
	}
	rng := rand.New(rand.NewPCG(t.Seed, 0x5eed))
	local, loss, err := model.TrainSGD(t.Weights, s.xTrain, s.train.Label, t.Train, rng)
	if err != nil {
		return nil, 0, err
	}
	n := float64(s.train.Len())
	out := make([]float64, task.TrainVectorLen(len(local)))
	out[task.TrainCountIndex] = n
	for i := range local {
		out[task.TrainDeltaStart+i] = n * (local[i] - t.Weights[i])
	}
	out[len(out)-1] = n * loss
	return out, s.train.Len(), nil
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
	if s.xEval != nil {
		scores := model.PredictAll(t.Weights, s.xEval, nil)
		sums.AddScores(scores, s.eval.Label)
	}
	return sums.Vector(), s.eval.Len(), nil
}
