package privacy

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRowNormSquaredBound(t *testing.T) {
	got, err := RowNormSquaredBound(6, 9) // bank-full: 6 numeric, 9 categorical features
	require.NoError(t, err)
	assert.Equal(t, 16.0, got)
	got, err = RowNormSquaredBound(0, 0)
	require.NoError(t, err)
	assert.Equal(t, 1.0, got, "the intercept alone")
	_, err = RowNormSquaredBound(-1, 3)
	assert.ErrorIs(t, err, ErrInvalidArgument)
}

// DPSGDLearningRate is eta = 2*h*s^2 * q^2*N / (R2*z^2*C^2): it scales with each input as the
// stationary-noise argument says, and rejects inputs outside its domain.
func TestDPSGDLearningRate(t *testing.T) {
	const q, z, c, n, r2 = 0.05, 3.0, 1.0, 10000, 16.0
	base, err := DPSGDLearningRate(q, z, c, n, r2)
	require.NoError(t, err)
	assert.InEpsilon(t, 2*dpsgdCurvature*dpsgdLogitNoiseStd*dpsgdLogitNoiseStd*q*q*n/(r2*z*z*c*c), base, 1e-12)

	scaled := []struct {
		name   string
		q, z   float64
		c      float64
		n      int
		r2     float64
		factor float64
	}{
		{name: "twice the records", q: q, z: z, c: c, n: 2 * n, r2: r2, factor: 2},
		{name: "twice the sampling rate", q: 2 * q, z: z, c: c, n: n, r2: r2, factor: 4},
		{name: "twice the noise", q: q, z: 2 * z, c: c, n: n, r2: r2, factor: 0.25},
		{name: "twice the clip", q: q, z: z, c: 2 * c, n: n, r2: r2, factor: 0.25},
		{name: "twice the row norm squared", q: q, z: z, c: c, n: n, r2: 2 * r2, factor: 0.5},
	}
	for _, tt := range scaled {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DPSGDLearningRate(tt.q, tt.z, tt.c, tt.n, tt.r2)
			require.NoError(t, err)
			assert.InEpsilon(t, tt.factor*base, got, 1e-12)
		})
	}

	invalid := []struct {
		name string
		q, z float64
		c    float64
		n    int
		r2   float64
	}{
		{name: "zero sampling rate", q: 0, z: z, c: c, n: n, r2: r2},
		{name: "sampling rate above 1", q: 1.5, z: z, c: c, n: n, r2: r2},
		{name: "zero noise", q: q, z: 0, c: c, n: n, r2: r2},
		{name: "infinite noise", q: q, z: math.Inf(1), c: c, n: n, r2: r2},
		{name: "nan noise", q: q, z: math.NaN(), c: c, n: n, r2: r2},
		{name: "zero clip", q: q, z: z, c: 0, n: n, r2: r2},
		{name: "no records", q: q, z: z, c: c, n: 0, r2: r2},
		{name: "row norm below the intercept's", q: q, z: z, c: c, n: n, r2: 0.5},
		{name: "nan row norm", q: q, z: z, c: c, n: n, r2: math.NaN()},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DPSGDLearningRate(tt.q, tt.z, tt.c, tt.n, tt.r2)
			assert.ErrorIs(t, err, ErrInvalidArgument)
		})
	}
}

// bankPlanInput is bank-full's run as configs/sim-bank-dp.yaml plans it: 36,168 training
// records at 10 branches, 30 rounds, 6 numeric and 9 categorical features, epsilon 1 at delta
// 1e-5, with ten evaluations at z = 100 reserved first (Tight conversion keeps the test fast).
func bankPlanInput(t *testing.T) DPSGDPlanInput {
	t.Helper()
	reserved := NewAccountant(nil)
	require.NoError(t, reserved.Compose(1, 100, 10))
	return DPSGDPlanInput{Budget: Budget{Epsilon: 1, Delta: 1e-5, Conversion: Tight}, Reserved: reserved,
		Records: 36168, Clients: 10, Rounds: 30, RowNormSquared: 16}
}

// TestPlanDPSGDStaysWithinTheBudget: whatever PlanDPSGD chooses, the training it plans,
// composed after what was reserved, spends the budget and no more, and every value is the one
// its documentation derives.
func TestPlanDPSGDStaysWithinTheBudget(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(in *DPSGDPlanInput)
	}{
		{name: "bank-full", mutate: func(*DPSGDPlanInput) {}},
		{name: "small population", mutate: func(in *DPSGDPlanInput) { in.Records, in.Clients, in.RowNormSquared = 4530, 10, 11 }},
		{name: "large population", mutate: func(in *DPSGDPlanInput) { in.Records, in.Clients = 400000, 16 }},
		{name: "nothing reserved", mutate: func(in *DPSGDPlanInput) { in.Reserved = nil }},
		{name: "larger batches", mutate: func(in *DPSGDPlanInput) { in.Batch = 1024 }},
		{name: "explicit clip", mutate: func(in *DPSGDPlanInput) { in.ClipNorm = 0.5 }},
		{name: "epsilon 4", mutate: func(in *DPSGDPlanInput) { in.Budget.Epsilon = 4 }},
		{name: "fewer rounds", mutate: func(in *DPSGDPlanInput) { in.Rounds = 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bankPlanInput(t)
			tt.mutate(&in)
			reservedBefore := NewAccountant(nil)
			if in.Reserved != nil {
				reservedBefore = in.Reserved.Clone()
			}
			plan, err := PlanDPSGD(in)
			require.NoError(t, err)
			if in.Reserved != nil {
				assert.Equal(t, reservedBefore.History, in.Reserved.History, "the reserved accountant is not changed")
			}

			acc := reservedBefore
			require.NoError(t, acc.Compose(plan.SamplingRate, plan.NoiseMultiplier, plan.StepsPerRound*in.Rounds))
			eps, _, err := acc.Epsilon(in.Budget.Delta, in.Budget.Conversion)
			require.NoError(t, err)
			assert.LessOrEqual(t, eps, in.Budget.Epsilon*(1+1e-9))
			assert.Greater(t, eps, 0.99*in.Budget.Epsilon, "the derived noise spends the budget")

			wantRef := int(math.Round(float64(in.Records) / float64(in.Clients)))
			assert.Equal(t, wantRef, plan.ReferenceRecords)
			batch := in.Batch
			if batch == 0 {
				batch = DefaultDPSGDBatch
			}
			assert.InEpsilon(t, math.Min(1, batch/float64(wantRef)), plan.SamplingRate, 1e-12)
			wantClip := in.ClipNorm
			if wantClip == 0 {
				wantClip = DefaultDPSGDClipNorm
			}
			assert.Equal(t, wantClip, plan.ClipNorm)
			eta, err := DPSGDLearningRate(plan.SamplingRate, plan.NoiseMultiplier, plan.ClipNorm, in.Records, in.RowNormSquared)
			require.NoError(t, err)
			assert.InEpsilon(t, math.Min(MaxDPSGDLearningRate, eta*float64(plan.ReferenceRecords)), plan.LearningRate, 1e-12)
			passes := float64(plan.StepsPerRound*in.Rounds) * plan.SamplingRate
			assert.GreaterOrEqual(t, passes, DPSGDPasses*(1-1e-12), "at least DPSGDPasses expected passes over each record")
			// Steps per round are whole: the last can add up to q*rounds passes.
			assert.LessOrEqual(t, passes, MaxDPSGDPasses+plan.SamplingRate*float64(in.Rounds), "at most MaxDPSGDPasses")
		})
	}
}

// Where the learning rate the budget allows is above MaxDPSGDLearningRate, PlanDPSGD takes more
// steps rather than larger ones, up to MaxDPSGDPasses, and then caps the rate; where it is
// below, a larger batch means fewer steps.
func TestPlanDPSGDStepsFollowTheCap(t *testing.T) {
	passes := func(in DPSGDPlanInput, plan DPSGDPlan) float64 {
		return float64(plan.StepsPerRound*in.Rounds) * plan.SamplingRate
	}
	in := bankPlanInput(t)
	in.Budget.Epsilon = 0.5
	low, err := PlanDPSGD(in)
	require.NoError(t, err)
	in.Budget.Epsilon = 8 // little noise: the derived rate would be far above the cap
	high, err := PlanDPSGD(in)
	require.NoError(t, err)
	assert.Equal(t, MaxDPSGDLearningRate, high.LearningRate, "capped")
	assert.Greater(t, passes(in, high), passes(in, low), "more, smaller steps first")
	assert.InDelta(t, MaxDPSGDPasses, passes(in, high), high.SamplingRate*float64(in.Rounds), "but no more than MaxDPSGDPasses")
	assert.Less(t, high.NoiseMultiplier, low.NoiseMultiplier)

	small := bankPlanInput(t)
	small.Records, small.Clients, small.RowNormSquared, small.Rounds = 12000, 8, 11, 3
	few, err := PlanDPSGD(small)
	require.NoError(t, err)
	require.Less(t, few.LearningRate, MaxDPSGDLearningRate, "below the cap")
	small.Batch = 4 * DefaultDPSGDBatch
	larger, err := PlanDPSGD(small)
	require.NoError(t, err)
	assert.Greater(t, larger.SamplingRate, few.SamplingRate)
	assert.Less(t, larger.StepsPerRound, few.StepsPerRound, "fewer, larger batches")
}

func TestPlanDPSGDRejectsBadInput(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(in *DPSGDPlanInput)
	}{
		{name: "no budget", mutate: func(in *DPSGDPlanInput) { in.Budget.Epsilon = 0 }},
		{name: "no records", mutate: func(in *DPSGDPlanInput) { in.Records = 0 }},
		{name: "no clients", mutate: func(in *DPSGDPlanInput) { in.Clients = 0 }},
		{name: "more clients than records", mutate: func(in *DPSGDPlanInput) { in.Clients = in.Records + 1 }},
		{name: "no rounds", mutate: func(in *DPSGDPlanInput) { in.Rounds = 0 }},
		{name: "row norm below 1", mutate: func(in *DPSGDPlanInput) { in.RowNormSquared = 0 }},
		{name: "infinite row norm", mutate: func(in *DPSGDPlanInput) { in.RowNormSquared = math.Inf(1) }},
		{name: "negative clip", mutate: func(in *DPSGDPlanInput) { in.ClipNorm = -1 }},
		{name: "nan batch", mutate: func(in *DPSGDPlanInput) { in.Batch = math.NaN() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bankPlanInput(t)
			tt.mutate(&in)
			_, err := PlanDPSGD(in)
			assert.ErrorIs(t, err, ErrInvalidArgument)
		})
	}

	spent := bankPlanInput(t)
	require.NoError(t, spent.Reserved.Compose(1, 0.5, 50))
	_, err := PlanDPSGD(spent)
	assert.ErrorIs(t, err, ErrTargetUnreachable, "nothing left of the budget for training")
}

// The default conversion is PLD, as a run's: the plan for bank-full is what configs/sim-bank-dp.yaml
// trains with, and it stays within the budget under PLD too.
func TestPlanDPSGDUnderPLD(t *testing.T) {
	if testing.Short() {
		t.Skip("PLD noise search over 480 steps")
	}
	in := bankPlanInput(t)
	in.Budget.Conversion = PLD
	plan, err := PlanDPSGD(in)
	require.NoError(t, err)
	t.Logf("bank-full: q=%.4g, %d steps a round, z=%.4g, learning rate %.4g on %d records", plan.SamplingRate, plan.StepsPerRound,
		plan.NoiseMultiplier, plan.LearningRate, plan.ReferenceRecords)
	acc := in.Reserved.Clone()
	require.NoError(t, acc.Compose(plan.SamplingRate, plan.NoiseMultiplier, plan.StepsPerRound*in.Rounds))
	eps, _, err := acc.Epsilon(in.Budget.Delta, PLD)
	require.NoError(t, err)
	assert.LessOrEqual(t, eps, 1.0)
	assert.Greater(t, eps, 0.99)
}
