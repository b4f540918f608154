package privacy

import (
	"fmt"
	"math"
)

// Defaults and constants of PlanDPSGD. They are properties of logistic regression on features
// standardised by public bounds and of DP-SGD, not of any data set: the same values serve every
// run, and a run's own numbers (records, clients, rounds, features, budget) do the rest.
const (
	// DefaultDPSGDClipNorm is C when none is given. Features standardised by public bounds lie
	// in [-1, 1] and a record's log-loss gradient is residual*(1, x), so C = 1 leaves the
	// gradients of well-predicted records whole and cuts the rest to norm 1. Within DP-SGD the
	// clip trades speed for noise, not accuracy: training with C from 0.5 to 100 converges to
	// the same test AUC on bank-full; what matters is that the learning rate goes with C, which
	// DPSGDLearningRate sees to (it scales as 1/C^2).
	DefaultDPSGDClipNorm = 1.0
	// DefaultDPSGDBatch is the expected number of records in a step at a client of average
	// size. Large batches are the usual advice for DP-SGD (Ponomareva et al., "How to DP-fy
	// ML", JAIR 2023, section 5.3): the noise of a step does not grow with its batch, so its
	// signal-to-noise ratio does. A larger Batch in DPSGDPlanInput spends the budget in fewer,
	// larger steps, down to what MaxDPSGDLearningRate allows.
	DefaultDPSGDBatch = 256.0
	// DPSGDPasses is the expected number of times a run samples each record (q times the
	// total steps) that PlanDPSGD starts from. Within the regime where sampling amplifies privacy, the utility of DP-SGD at a given
	// epsilon hardly depends on how the passes are split into steps (measured on bank-full:
	// sampling rates 0.02 to 0.2 within 0.003 AUC), so this fixes the work, not the accuracy.
	DPSGDPasses = 15.0
	// MaxDPSGDPasses is the most passes PlanDPSGD takes to keep the learning rate within
	// MaxDPSGDLearningRate; beyond them it caps the rate instead, which leaves less noise in
	// the model than planned. Without this bound a large budget would buy ever more local steps
	// a round, and on label-skewed branches those drift apart: on bank-full epsilon 4 then
	// trained worse than epsilon 1 (0.756 against 0.765); with it the AUC grows with epsilon
	// (0.754, 0.763, 0.767, 0.768, 0.768 at epsilon 0.5, 1, 2, 4, 8).
	MaxDPSGDPasses = 30.0
	// MaxDPSGDLearningRate caps the step on the mean clipped gradient of a client of average
	// size. Gradient descent on the log loss is stable below 2/L, L the largest curvature: on
	// rows standardised by public bounds that is the direction of the mean row, whose
	// eigenvalue is several units, times p(1-p) of about 0.1 to 0.25, so L is about 1. Where the
	// learning rate DPSGDLearningRate derives is above the cap, PlanDPSGD takes more, smaller
	// steps for the same distance, up to MaxDPSGDPasses. The AUC is flat around it: at epsilon
	// 1, bank-full gives 0.762, 0.763 and 0.761 with caps of 1, 2 and 4, and the synthetic
	// populations move by 0.002 at most.
	MaxDPSGDLearningRate = 2.0
	// dpsgdLogitNoiseStd is the standard deviation of the noise in a logit that
	// DPSGDLearningRate plans for: small beside the spread of the logits of a useful model
	// (about 1), so that the noise costs little ranking.
	dpsgdLogitNoiseStd = 0.09
	// dpsgdCurvature is h, the curvature p(1-p) of the log loss that pulls the weights back
	// towards their optimum: about 0.1 at a base rate of 11% (bank-full). Data sets with rarer
	// positives have less, so the noise they keep is somewhat above the plan (7% positives:
	// h about 0.07, the logit noise 20% above s).
	dpsgdCurvature = 0.1
)

// DPSGDPlanInput is what PlanDPSGD derives record-level DP-SGD from: the budget, what is
// reserved in it, and public facts of the run. Nothing in it is measured on the records beyond
// their counts.
type DPSGDPlanInput struct {
	// Budget is the run's (epsilon, delta) and conversion.
	Budget Budget
	// Reserved holds the releases planned before training, composed in the same accountant
	// (the run's evaluations); nil reserves nothing. It is not changed.
	Reserved *Accountant
	// Records is the number of training records over all clients, Clients the number of
	// clients that train. The average, Records/Clients, is the reference client.
	Records int
	Clients int
	// Rounds is the number of training rounds the budget has to last.
	Rounds int
	// RowNormSquared is the squared norm of an encoded row (intercept included) whose values
	// lie within the schema's public bounds, at most: see RowNormSquaredBound.
	RowNormSquared float64
	// ClipNorm is C; zero means DefaultDPSGDClipNorm.
	ClipNorm float64
	// Batch is the expected number of records in a step at a client of average size; zero
	// means DefaultDPSGDBatch. Raise it to spend the budget in fewer, larger steps.
	Batch float64
}

// DPSGDPlan is record-level DP-SGD for a run: what the coordinator sends each client (in
// logreg.DPSGDParams) and accounts.
type DPSGDPlan struct {
	// SamplingRate is q, the Poisson rate of a record in a step.
	SamplingRate float64
	// StepsPerRound is the number of DP-SGD steps of a client in a round.
	StepsPerRound int
	// NoiseMultiplier is z: the smallest with which Rounds x StepsPerRound steps at q, after
	// Reserved, stay within the budget.
	NoiseMultiplier float64
	// ClipNorm is C.
	ClipNorm float64
	// ReferenceRecords is the public denominator of every client's steps (Records/Clients,
	// rounded): see logreg.DPSGDParams.ReferenceRecords.
	ReferenceRecords int
	// LearningRate is the step on the mean clipped gradient of a client of ReferenceRecords
	// records: DPSGDLearningRate times ReferenceRecords.
	LearningRate float64
}

// RowNormSquaredBound is the squared norm of an encoded row, intercept included, when every
// numeric feature is standardised by its public bounds into [-1, 1] and every categorical
// feature is one-hot: 1 + numeric + categorical. It reads the schema, not the data; values
// outside the bounds (which are used as they are) can exceed it, which only makes the noise
// planned on it a little optimistic for those rows.
func RowNormSquaredBound(numeric, categorical int) (float64, error) {
	if numeric < 0 || categorical < 0 {
		return 0, fmt.Errorf("row norm bound of %d numeric and %d categorical features: %w", numeric, categorical, ErrInvalidArgument)
	}
	return float64(1 + numeric + categorical), nil
}

// DPSGDLearningRate is the per-record learning rate eta of DP-SGD: a step moves the weights by
// eta times the noised sum of clipped gradients over q (logreg.DPSGDParams with LearningRate
// eta*ReferenceRecords), chosen so that the noise it leaves in the model is planned rather than
// tuned.
//
// Constant-step SGD settles into a stationary spread around the optimum whose covariance is
// the step times the covariance of the gradient noise over twice the curvature (Mandt, Hoffman
// and Blei, "Stochastic Gradient Descent as Approximate Bayesian Inference", JMLR 2017,
// section 3). For DP-SGD at clients whose updates are averaged, the Gaussian noise of standard
// deviation z*C per coordinate and step makes that spread eta*z^2*C^2/(2*q^2*N*h) per weight,
// N the records of all clients and h the curvature of the log loss; a row's logit sums it over
// the row's squared norm, at most R2. Setting the logit's spread to s^2 gives
//
//	eta = 2*h*s^2 * q^2*N / (R2 * z^2 * C^2),
//
// with h = 0.1 and s = 0.09. The rate grows with the records (more signal for the same noise)
// and falls with the noise of a step relative to its sampling rate (z/q, which the budget
// fixes) and with the features a logit sums noise over. Where sampling amplifies privacy, z
// grows as q*sqrt(steps), so eta times the steps, the distance training may travel, depends on
// the budget, the records and R2 alone, not on how they are split into steps. No single
// hand-set rate suits data sets of different sizes: at epsilon 1 the best fixed per-record
// rates of bank-full (36,000 records) and of a 12,000-record synthetic population differ three
// to five times.
func DPSGDLearningRate(samplingRate, noiseMultiplier, clipNorm float64, records int, rowNormSquared float64) (float64, error) {
	switch {
	case !(samplingRate > 0 && samplingRate <= 1):
		return 0, fmt.Errorf("learning rate for sampling rate %v, want 0 < q <= 1: %w", samplingRate, ErrInvalidArgument)
	case !(noiseMultiplier > 0) || math.IsInf(noiseMultiplier, 0):
		return 0, fmt.Errorf("learning rate for noise multiplier %v, want finite and > 0: %w", noiseMultiplier, ErrInvalidArgument)
	case records < 1:
		return 0, fmt.Errorf("learning rate for %d records, want at least 1: %w", records, ErrInvalidArgument)
	case !(rowNormSquared >= 1) || math.IsInf(rowNormSquared, 0):
		return 0, fmt.Errorf("learning rate for a squared row norm of %v, want finite and >= 1 (the intercept's): %w", rowNormSquared, ErrInvalidArgument)
	}
	if err := validClipNorm(clipNorm); err != nil {
		return 0, fmt.Errorf("learning rate: %w", err)
	}
	q, z, c := samplingRate, noiseMultiplier, clipNorm
	return 2 * dpsgdCurvature * dpsgdLogitNoiseStd * dpsgdLogitNoiseStd * q * q * float64(records) / (rowNormSquared * z * z * c * c), nil
}

// validate checks the input before defaults: counts at least 1, a usable budget, and a
// non-negative finite clip and batch (zero takes the default).
func (in DPSGDPlanInput) validate() error {
	if err := in.Budget.Validate(); err != nil {
		return fmt.Errorf("plan dp-sgd: %w", err)
	}
	switch {
	case in.Records < 1 || in.Clients < 1 || in.Rounds < 1:
		return fmt.Errorf("plan dp-sgd: %d records, %d clients, %d rounds, want at least 1 each: %w", in.Records, in.Clients, in.Rounds, ErrInvalidArgument)
	case in.Clients > in.Records:
		return fmt.Errorf("plan dp-sgd: %d clients hold only %d records: %w", in.Clients, in.Records, ErrInvalidArgument)
	case !(in.RowNormSquared >= 1) || math.IsInf(in.RowNormSquared, 0):
		return fmt.Errorf("plan dp-sgd: squared row norm %v, want finite and >= 1: %w", in.RowNormSquared, ErrInvalidArgument)
	case !(in.ClipNorm >= 0) || math.IsInf(in.ClipNorm, 0):
		return fmt.Errorf("plan dp-sgd: clip norm %v, want finite and >= 0 (0: the default): %w", in.ClipNorm, ErrInvalidArgument)
	case !(in.Batch >= 0) || math.IsInf(in.Batch, 0):
		return fmt.Errorf("plan dp-sgd: batch %v, want finite and >= 0 (0: the default): %w", in.Batch, ErrInvalidArgument)
	}
	return nil
}

// PlanDPSGD derives record-level DP-SGD from the budget and the run's public facts, so that no
// setting needs tuning on the data:
//
//   - q = Batch / (Records/Clients), at most 1: the reference client's expected batch;
//   - steps per round: DPSGDPasses/q spread over the rounds, or more, up to MaxDPSGDPasses,
//     when the learning rate would exceed MaxDPSGDLearningRate (each step is then smaller, the
//     distance the same);
//   - z: the smallest noise with which all steps, after Reserved, fit the budget;
//   - the learning rate: DPSGDLearningRate for the whole run's records on the ReferenceRecords
//     denominator, at most MaxDPSGDLearningRate.
//
// The privacy guarantee is the accountant's for (q, z, steps) whatever the other values: they
// only shape how the noised sums are used.
func PlanDPSGD(in DPSGDPlanInput) (DPSGDPlan, error) {
	if err := in.validate(); err != nil {
		return DPSGDPlan{}, err
	}
	clip, batch := in.ClipNorm, in.Batch
	if clip == 0 {
		clip = DefaultDPSGDClipNorm
	}
	if batch == 0 {
		batch = DefaultDPSGDBatch
	}
	reserved := in.Reserved
	if reserved == nil {
		reserved = NewAccountant(nil)
	}
	ref := max(1, int(math.Round(float64(in.Records)/float64(in.Clients))))
	q := math.Min(1, batch/float64(ref))
	stepsFor := func(passes float64) int { return max(1, int(math.Ceil(passes/(q*float64(in.Rounds))))) }
	plan := DPSGDPlan{ClipNorm: clip, ReferenceRecords: ref, SamplingRate: q, StepsPerRound: stepsFor(DPSGDPasses)}
	most := stepsFor(MaxDPSGDPasses)
	for {
		steps := plan.StepsPerRound * in.Rounds
		z, err := reserved.SigmaWithin(q, steps, in.Budget)
		if err != nil {
			return DPSGDPlan{}, fmt.Errorf("plan dp-sgd: noise for %d steps at q=%.4g within epsilon %v: %w", steps, q, in.Budget.Epsilon, err)
		}
		eta, err := DPSGDLearningRate(q, z, clip, in.Records, in.RowNormSquared)
		if err != nil {
			return DPSGDPlan{}, fmt.Errorf("plan dp-sgd: %w", err)
		}
		plan.NoiseMultiplier, plan.LearningRate = z, eta*float64(ref)
		if plan.LearningRate <= MaxDPSGDLearningRate {
			return plan, nil
		}
		if plan.StepsPerRound >= most {
			plan.LearningRate = MaxDPSGDLearningRate
			return plan, nil
		}
		// The rate falls about as 1/steps (z^2 grows with the steps), so one rescaling lands
		// near the cap; the loop takes another step where it does not, and ends at most.
		next := int(math.Ceil(float64(plan.StepsPerRound) * plan.LearningRate / MaxDPSGDLearningRate))
		plan.StepsPerRound = min(most, max(plan.StepsPerRound+1, next))
	}
}
