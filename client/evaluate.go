package client

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/metrics"
	"github.com/fedprop/fedprop/metrics/fairness"
	"github.com/fedprop/fedprop/model"
	"github.com/fedprop/fedprop/model/explain"
	"github.com/fedprop/fedprop/model/gbdt"
	"github.com/fedprop/fedprop/model/logreg"
	"github.com/fedprop/fedprop/privacy"
	"github.com/fedprop/fedprop/task"
)

// maxEvalBins bounds the score histograms (overall and per fairness group) an evaluate task may
// ask for: the default resolution, the finest an honest run needs, which also bounds what a
// task can make a client allocate. Every bin is a count, and the finer the bins the closer a
// bin comes to one record's score.
const maxEvalBins = metrics.DefaultBins

// maxFairnessThresholds bounds the decision thresholds of a fairness audit: each adds two
// counts per group, and a handful (0.1 to 0.9 in steps of 0.1 at most) is all a policy reads.
const maxFairnessThresholds = 9

// evaluate scores the global model on the held-out rows and returns only counts and sums. It
// answers only what an honest run asks (see checkEvaluate) and, in a differentially private
// run, releases them under the task's noise and this client's ledger (see evaluateRelease).
func (s *Session) evaluate(t task.Task) ([]float64, int, error) {
	m, err := s.taskModel(t)
	if err != nil {
		return nil, 0, err
	}
	layout, err := s.checkEvaluate(t)
	if err != nil {
		return nil, 0, err
	}
	if t.Noise != nil {
		return s.evaluateRelease(t, m, layout)
	}
	digest := evalDigest(t)
	ev := s.evals()
	if err := ev.admit(t, digest); err != nil {
		return nil, 0, err
	}
	if prev := ev.repeat(t, digest); prev != nil {
		t.Weights = prev.weights // the same question gets the same answer, to the bit
		if m, err = s.taskModel(t); err != nil {
			return nil, 0, err
		}
	}
	out, err := s.evalSums(t, m, layout, 1, 0)
	if err != nil {
		return nil, 0, err
	}
	// Global feature importance: the sums of each feature's contribution to the log-odds.
	x, err := explain.For(m)
	if errors.Is(err, explain.ErrUnsupported) {
		// A model without per-column effects (a tree model): its |TreeSHAP| sums, when the
		// task asks for them, from which the coordinator states the mean |SHAP| per feature.
		var shap []float64
		if t.SHAPSums {
			if shap, err = s.shapSums(t.Trees); err != nil {
				return nil, 0, err
			}
		}
		ev.remember(t, digest, nil, 0)
		if err := s.save(s.ledger, s.released); err != nil {
			return nil, 0, err
		}
		return append(out, shap...), s.eval.Len(), nil
	}
	if err != nil {
		return nil, 0, err
	}
	imp := x.NewImportanceSums()
	if s.eval.Len() > 0 {
		if err := x.AddImportance(&imp, s.eval); err != nil {
			return nil, 0, fmt.Errorf("importance: %w", err)
		}
	}
	ev.remember(t, digest, nil, 0)
	// Persisted before the answer leaves, so that a restarted client still evaluates each
	// model once.
	if err := s.save(s.ledger, s.released); err != nil {
		return nil, 0, err
	}
	return append(out, imp.Vector()...), s.eval.Len(), nil
}

// checkEvaluate refuses an evaluate task that reads more than an honest evaluation needs: an
// evaluation is not a query interface. It accepts score histograms of at most maxEvalBins bins,
// at most maxFairnessThresholds fairness thresholds (in (0, 1), increasing), and fairness groups
// only of the schema's sensitive attributes and only among the groups the schema declares (no
// raw value of a column, such as a postcode one customer has, is ever a group). It returns the
// fairness layout (nil without one).
func (s *Session) checkEvaluate(t task.Task) (*fairness.Layout, error) {
	if t.HistogramBins < 2 || t.HistogramBins > maxEvalBins {
		return nil, fmt.Errorf("%w: histogram_bins %d is outside [2, %d]", ErrDeclined, t.HistogramBins, maxEvalBins)
	}
	if t.SHAPSums && (t.Trees == nil || t.Noise != nil) {
		// Under differential privacy the release's noise covers only the evaluation sums:
		// |SHAP| sums beside them would leave unprotected.
		return nil, fmt.Errorf("%w: |SHAP| sums are asked only with a tree model and without differential privacy", ErrDeclined)
	}
	f := t.Fairness
	if f == nil {
		return nil, nil
	}
	if f.Bins < 1 || f.Bins > maxEvalBins {
		return nil, fmt.Errorf("%w: fairness bins %d are outside [1, %d]", ErrDeclined, f.Bins, maxEvalBins)
	}
	if len(f.Thresholds) > maxFairnessThresholds {
		return nil, fmt.Errorf("%w: %d fairness thresholds, at most %d", ErrDeclined, len(f.Thresholds), maxFairnessThresholds)
	}
	for col, groups := range f.Groups {
		declared := declaredGroups(s.schema, col)
		if declared == nil {
			return nil, fmt.Errorf("%w: fairness groups for %q, which is not a sensitive attribute of this client's schema", ErrDeclined, col)
		}
		for _, g := range groups {
			if !slices.Contains(declared, g) {
				return nil, fmt.Errorf("%w: fairness group %q of %q is not one the schema declares (%v): an evaluation never groups by a raw value",
					ErrDeclined, g, col, declared)
			}
		}
	}
	layout, err := fairness.NewLayout(s.schema, fairness.LayoutConfig{Thresholds: f.Thresholds, Bins: f.Bins, Groups: f.Groups})
	if err != nil {
		return nil, fmt.Errorf("%w: fairness: %w", ErrDeclined, err)
	}
	return &layout, nil
}

// shapSums returns the tree model's |TreeSHAP| sums over the held-out rows
// (gbdt.AbsSHAPSums), zeros over none. Like the other evaluation sums they add up across
// clients; in he mode they are encrypted with them.
func (s *Session) shapSums(m *gbdt.Model) ([]float64, error) {
	if s.eval.Len() == 0 {
		return make([]float64, gbdt.AbsSHAPLen(len(m.Features))), nil
	}
	var memo *gbdt.SHAPMemo
	if s.cache {
		if s.shapMemo == nil {
			s.shapMemo = &gbdt.SHAPMemo{}
		}
		memo = s.shapMemo
	}
	v, err := m.AbsSHAPSumsWith(s.eval, memo)
	if err != nil {
		return nil, fmt.Errorf("|SHAP| sums: %w", err)
	}
	return v, nil
}

// declaredGroups lists the groups the schema declares for sensitive attribute col: its bands,
// its vocabulary when it is a categorical feature, or its listed groups. Nil when col is not a
// sensitive attribute.
func declaredGroups(schema *dataset.Schema, col string) []string {
	i := slices.IndexFunc(schema.Sensitive, func(sa dataset.SensitiveSpec) bool { return sa.Column == col })
	if i < 0 {
		return nil
	}
	sa := schema.Sensitive[i]
	out := append(sa.BandLabels(), sa.Groups...)
	if j := slices.IndexFunc(schema.Categorical, func(c dataset.CategoricalSpec) bool { return c.Column == col }); j >= 0 {
		out = append(out, schema.Categorical[j].Values...)
	}
	return append(out, dataset.OtherCategory)
}

// taskModel is the model an evaluate task scores: its trees, or its weights over its encoding,
// which it checks (and encodes the session's rows with, see encode). Here the task's two
// fields become one model.Model; the evaluation asks the model, not the task, what it is.
func (s *Session) taskModel(t task.Task) (model.Model, error) {
	if t.Trees != nil {
		return t.Trees, nil // validated where it is scored, as a wrong tree is the task's fault
	}
	if err := s.encode(t); err != nil {
		return nil, err
	}
	if err := s.checkWeights(t); err != nil {
		return nil, err
	}
	enc, err := dataset.NewEncoder(s.schema, dataset.Standardization{Mean: t.Encoding.Mean, Std: t.Encoding.Std})
	if err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	m, err := logreg.NewModel(t.Weights, enc)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	return m, nil
}

// encodedScorer is a model that scores rows its encoder made: the session keeps its held-out
// rows encoded while the encoding stays (see encode), and a logistic model scores them so,
// to the same bits as Predict, without encoding them again every round.
type encodedScorer interface {
	PredictEncoded(x *mat.Dense) []float64
}

// evalScores returns m's score of every held-out row (nil for none) after validating m.
func (s *Session) evalScores(m model.Model) ([]float64, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", task.ErrInvalid, err)
	}
	if s.eval.Len() == 0 {
		return nil, nil
	}
	if e, ok := m.(encodedScorer); ok && s.xEval != nil {
		return e.PredictEncoded(s.xEval), nil
	}
	return m.Predict(s.eval)
}

// evalSums scores the held-out rows with m and returns the evaluation sums, then the fairness
// sums when the task asks for them, each row counting weight times with its log loss capped at
// maxLogLoss (0: uncapped).
func (s *Session) evalSums(t task.Task, m model.Model, layout *fairness.Layout, weight, maxLogLoss float64) ([]float64, error) {
	sums := metrics.NewEvalSums(t.HistogramBins)
	scores, err := s.evalScores(m)
	if err != nil {
		return nil, err
	}
	if scores != nil {
		sums.AddWeighted(scores, s.eval.Label, weight, maxLogLoss)
	}
	out := sums.Vector()
	if layout != nil {
		// The fairness audit: the same counts per group of every sensitive attribute.
		groups := fairness.NewGroupSums(*layout)
		if scores != nil {
			if err := groups.AddWeighted(scores, s.eval.Label, s.eval.Groups, weight, maxLogLoss); err != nil {
				return nil, fmt.Errorf("fairness: %w", err)
			}
		}
		out = append(out, groups.Vector()...)
	}
	return out, nil
}

// evaluateRelease answers the evaluate task of a differentially private run with its model,
// scored. Only the evaluation and fairness sums are released (no feature importance), each
// record counting once with its log loss capped at metrics.MaxRowLogLoss, so that one record
// changes the release by at most what metrics.NoiseScales states; at client level each record
// counts 1/n, so that the
// client's whole evaluation changes it by no more. In he mode the client adds its share of the
// Gaussian noise, z*scale/sqrt(m) per value with m capped by its floor, from its private source;
// in plaintext mode the coordinator adds the noise, which a client whose floor is enforced does
// not leave to it. The client evaluates only a model it trained from (or that model's
// successor), once per model: its ledger admits the release first, a repeat of the task gets
// the same answer, another task for the same model is declined.
func (s *Session) evaluateRelease(t task.Task, scored model.Model, layout *fairness.Layout) ([]float64, int, error) {
	n := t.Noise
	level := privacy.RequireRecord
	if clientLevel(t) {
		level = privacy.RequireClient
	}
	if err := requireNoise("noise multiplier", n.NoiseMultiplier); err != nil {
		return nil, 0, err
	}
	if err := s.floor.Accepts(level, n.NoiseMultiplier, 0); err != nil {
		return nil, 0, err
	}
	m, err := s.shareContributors(t, n.ExpectedContributors, "an evaluation", "sums")
	if err != nil {
		return nil, 0, err
	}
	if err := s.trainedFrom(t); err != nil {
		return nil, 0, err
	}
	digest := evalDigest(t)
	ev := s.evals()
	if err := ev.admit(t, digest); err != nil {
		return nil, 0, err
	}
	share := 0.0
	if m > 0 {
		if share, err = privacy.ClientNoiseStd(n.NoiseMultiplier, 1, m); err != nil {
			return nil, 0, err
		}
	}
	if prev := ev.repeat(t, digest); prev != nil {
		return s.repeatRelease(t, layout, prev, share)
	}
	ledger := s.ledger.Clone()
	if _, err := ledger.Admit(1, n.NoiseMultiplier, 1); err != nil {
		return nil, 0, err
	}
	out, err := s.evalSums(t, scored, layout, s.releaseWeight(t), metrics.MaxRowLogLoss)
	if err != nil {
		return nil, 0, err
	}
	if share > 0 {
		if err := s.addReleaseNoise(out, share, releaseScales(t, layout)); err != nil {
			return nil, 0, err
		}
	}
	var keep []float64
	if share > 0 {
		keep = slices.Clone(out) // noised once, answered the same way again
	}
	before := ev.latest[t.RunID]
	ev.remember(t, digest, keep, share)
	if err := s.commitLedger(ledger); err != nil {
		ev.latest[t.RunID] = before // nothing left the session: nothing is remembered
		return nil, 0, err
	}
	return out, s.eval.Len(), nil
}

// repeatRelease answers a repeat of an evaluation this client released: the same values again,
// topped up with fresh noise when a retry expects fewer contributors, so that this client owes
// a larger share. A fresh answer could be averaged against the first.
func (s *Session) repeatRelease(t task.Task, layout *fairness.Layout, prev *evalRelease, share float64) ([]float64, int, error) {
	if prev.values == nil {
		// No noise of this client's own: the sums are recomputed exactly as before.
		t.Weights = prev.weights
		m, err := s.taskModel(t)
		if err != nil {
			return nil, 0, err
		}
		out, err := s.evalSums(t, m, layout, s.releaseWeight(t), metrics.MaxRowLogLoss)
		return out, s.eval.Len(), err
	}
	out := slices.Clone(prev.values)
	if share > prev.shareStd {
		if err := s.addReleaseNoise(out, topUp(share, prev.shareStd), releaseScales(t, layout)); err != nil {
			return nil, 0, err
		}
		topped := *prev
		topped.values, topped.shareStd = slices.Clone(out), share
		before := s.evaluated.latest[t.RunID]
		s.evaluated.latest[t.RunID] = &topped
		if err := s.commitLedger(s.ledger); err != nil {
			s.evaluated.latest[t.RunID] = before
			return nil, 0, err
		}
	}
	return out, s.eval.Len(), nil
}

// clientLevel reports whether a DP evaluate task asks for a client-level release.
func clientLevel(t task.Task) bool { return t.Noise != nil && t.Noise.Level == task.DPClient }

// releaseWeight is what each held-out record counts in a DP release: 1, or 1/n at client level,
// so that the client's n records together add what one record would.
func (s *Session) releaseWeight(t task.Task) float64 {
	if clientLevel(t) && s.eval.Len() > 0 {
		return 1 / float64(s.eval.Len())
	}
	return 1
}

// releaseScales are the noise scales of a DP evaluation vector, as the coordinator computes
// them from the same task.
func releaseScales(t task.Task, layout *fairness.Layout) []float64 {
	return fairness.EvaluationNoiseScales(t.HistogramBins, layout)
}

// addReleaseNoise adds Gaussian noise of standard deviation std*scales[i] to v[i], drawn from
// the client's private source.
func (s *Session) addReleaseNoise(v []float64, std float64, scales []float64) error {
	if err := privacy.AddScaledGaussianNoise(v, std, scales, s.noise); err != nil {
		return fmt.Errorf("evaluation noise share: %w", err)
	}
	return nil
}

// commitLedger makes ledger the client's, persisted (with the train releases and the
// evaluation history) before the release it admitted can leave the session.
func (s *Session) commitLedger(ledger *privacy.Ledger) error {
	if err := s.save(ledger, s.released); err != nil {
		return err
	}
	s.ledger = ledger
	return nil
}

// trainedFrom refuses to evaluate a model this client neither trained from nor saw trained
// from: under differential privacy it evaluates only the version of its latest train release
// in the run, or the version after it (the candidate that round produced). Weights of any other
// model would make the evaluation a query about this client's records.
func (s *Session) trainedFrom(t task.Task) error {
	rel := s.released[t.RunID]
	if rel == nil {
		return fmt.Errorf("%w: this client has not trained in run %s, so it has no model version %d to evaluate", ErrDeclined, t.RunID, t.ModelVersion)
	}
	if t.ModelVersion != rel.version && t.ModelVersion != rel.version+1 {
		return fmt.Errorf("%w: model version %d is neither the version %d this client last trained from in run %s nor its successor",
			ErrDeclined, t.ModelVersion, rel.version, t.RunID)
	}
	return nil
}

// evalDigest identifies what an evaluate task asks, apart from its id, round, seed, (he mode)
// the contributors its noise share is divided by and its weights, which sameWeights compares: a
// retry of the same evaluation has the same digest.
func evalDigest(t task.Task) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%d|%+v|%d|", t.RunID, t.ModelVersion, t.Encoding, t.HistogramBins)
	if f := t.Fairness; f != nil {
		fmt.Fprintf(h, "fairness|%v|%d|", f.Thresholds, f.Bins)
		cols := make([]string, 0, len(f.Groups))
		for c := range f.Groups {
			cols = append(cols, c)
		}
		slices.Sort(cols)
		for _, c := range cols {
			fmt.Fprintf(h, "%q=%q|", c, f.Groups[c])
		}
	}
	if n := t.Noise; n != nil {
		fmt.Fprintf(h, "noise|%v|%v|", n.NoiseMultiplier, n.Delta)
	}
	if t.SHAPSums {
		// Only when asked, so that the digests of every other task stay what they were.
		fmt.Fprint(h, "shap|")
	}
	if t.Noise != nil {
		fmt.Fprintf(h, "level|%q|", t.Noise.Level)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// sameWeightsTolerance is how far, relative to its size, each weight of a repeated evaluate task
// may be from the first task's for the two to ask the same question. A coordinator that
// restarted in the middle of a round trains the same candidate again, but sums the updates in
// another order (or decrypts them with fresh smudging noise): its weights differ in the last
// digits (1e-15 to 1e-9), and the client answers with its first answer. Anything further is
// another model.
const sameWeightsTolerance = 1e-6

// sameWeights reports whether b is a's model up to rounding (see sameWeightsTolerance).
func sameWeights(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !(math.Abs(a[i]-b[i]) <= sameWeightsTolerance*(1+math.Abs(a[i]))) {
			return false
		}
	}
	return true
}

// evalRelease is the latest evaluation a client answered in a run.
type evalRelease struct {
	version uint64
	digest  [sha256.Size]byte
	// weights are the weights it was answered for: a repeat is answered for them again.
	weights []float64
	// values is the answer when it carries this client's own noise (nil: the answer is
	// recomputed exactly), shareStd that noise per unit of scale.
	values   []float64
	shareStd float64
}

// evalState is a session's evaluation history: the latest evaluation per run, and the
// content hash (modelHash) of every model evaluated per run, with its version.
type evalState struct {
	latest map[string]*evalRelease
	models map[string]map[[sha256.Size]byte]uint64
}

// modelHash identifies a model by its content: the exact bits of its weights.
func modelHash(weights []float64) [sha256.Size]byte { return sumFloats(sha256.New(), weights) }

// evalModelHash identifies an evaluate task's model by its content: the weights, or a tree
// model's JSON (which holds every value to the bit).
func evalModelHash(t task.Task) [sha256.Size]byte {
	if t.Trees == nil {
		return modelHash(t.Weights)
	}
	b, err := json.Marshal(t.Trees)
	if err != nil { // a validated model always marshals; an error is no model to match
		return [sha256.Size]byte{}
	}
	return sha256.Sum256(append([]byte("trees|"), b...))
}

// errEvaluated is wrapped when a model version was already evaluated with another task.
var errEvaluated = errors.New("this client evaluates each model version once")

// admit checks that t may be answered: a model version newer than any this client evaluated
// in the run, or a repeat of its latest evaluation.
func (e *evalState) admit(t task.Task, digest [sha256.Size]byte) error {
	if v, ok := e.models[t.RunID][evalModelHash(t)]; ok && v != t.ModelVersion {
		// The same model under another version number would be evaluated twice.
		return fmt.Errorf("%w: %w: the weights of model version %d of run %s are those of version %d, evaluated already",
			ErrDeclined, errEvaluated, t.ModelVersion, t.RunID, v)
	}
	prev := e.latest[t.RunID]
	switch {
	case prev == nil || t.ModelVersion > prev.version:
		return nil
	case e.repeat(t, digest) != nil:
		return nil
	case t.ModelVersion == prev.version:
		return fmt.Errorf("%w: %w: model version %d of run %s was evaluated with another task (a repeat gets the same answer, a different question about the same model none)",
			ErrDeclined, errEvaluated, t.ModelVersion, t.RunID)
	}
	return fmt.Errorf("%w: %w: model version %d of run %s is older than version %d, evaluated already", ErrDeclined, errEvaluated, t.ModelVersion, t.RunID, prev.version)
}

// repeat returns the earlier release when t repeats it, else nil.
func (e *evalState) repeat(t task.Task, digest [sha256.Size]byte) *evalRelease {
	if prev := e.latest[t.RunID]; prev != nil && prev.version == t.ModelVersion && prev.digest == digest && sameWeights(prev.weights, t.Weights) {
		return prev
	}
	return nil
}

// remember records the answer to t as the run's latest evaluation (a repeat keeps the record
// it has).
func (e *evalState) remember(t task.Task, digest [sha256.Size]byte, values []float64, shareStd float64) {
	if e.repeat(t, digest) != nil {
		return
	}
	if e.models[t.RunID] == nil {
		e.models[t.RunID] = map[[sha256.Size]byte]uint64{}
	}
	e.models[t.RunID][evalModelHash(t)] = t.ModelVersion
	e.latest[t.RunID] = &evalRelease{version: t.ModelVersion, digest: digest, weights: slices.Clone(t.Weights), values: values, shareStd: shareStd}
}

// evals returns the session's evaluation history.
func (s *Session) evals() *evalState { return &s.evaluated }
