package synth

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/fedprop/fedprop/dataset"
)

// Population constants. Income is annual, in euros; balance is in euros.
const (
	meanAge         = 44.0
	sdAge           = 15.0
	minAge, maxAge  = 18.0, 90.0
	logIncomeBase   = 10.4 // about 33,000 a year for a mass-market customer of mean age
	logIncomeSD     = 0.35
	genderIncomeGap = 0.08 // a mild income gap, so that fairness audits have something to find
	overdraftShare  = 0.07
	homeRegionShare = 0.9
	loginsBase      = 1.6 // log of the mean logins a month at mean engagement
	visitsBase      = 0.4 // log of the mean branch visits a quarter at mean engagement
)

var (
	segmentIncome   = [...]float64{0, 0.55, 1.2} // added to log income by segment
	segmentProducts = [...]float64{0, 0.5, 1.0}  // added to the mean extra products held
)

// generator draws branches; each goroutine of Generate has its own.
type generator struct {
	cfg    Config
	schema *dataset.Schema
	num    []float64
	cat    []int32
	groups []string
}

func newGenerator(cfg Config, schema *dataset.Schema) *generator {
	return &generator{
		cfg:    cfg,
		schema: schema,
		num:    make([]float64, len(schema.Numeric)),
		cat:    make([]int32, len(schema.Categorical)),
		groups: make([]string, len(schema.Sensitive)),
	}
}

// branch draws the n customers of branch b, with parameters p, from the branch's own
// stream.
func (g *generator) branch(b int, p params, n int) Branch {
	rng := rand.New(rand.NewPCG(g.cfg.Seed, 2*uint64(b)+1))
	nTest := 0
	if g.cfg.TestFraction > 0 {
		nTest = int(math.Round(float64(n) * g.cfg.TestFraction))
	}
	// Consent first, so that every split's size is known before any row is drawn.
	optedOut := make([]bool, n)
	outTrain, outTest := 0, 0
	for i := range optedOut {
		optedOut[i] = rng.Float64() < g.cfg.ConsentOptOut
		if optedOut[i] && i < nTest {
			outTest++
		} else if optedOut[i] {
			outTrain++
		}
	}
	name := BranchName(g.cfg, b)
	test := dataset.NewBuilder(g.schema, name+"/test", nTest-outTest)
	train := dataset.NewBuilder(g.schema, name+"/train", n-nTest-outTrain)
	testOut := dataset.NewBuilder(g.schema, name+"/test-opted-out", outTest)
	trainOut := dataset.NewBuilder(g.schema, name+"/train-opted-out", outTrain)
	labels := ageLabels()
	for i := range n {
		female := g.customer(rng, p)
		age := g.num[colAge]
		g.groups[0] = labels[bandOf(age)]
		g.groups[1] = "male"
		if female {
			g.groups[1] = "female"
		}
		label := 0.0
		if rng.Float64() < sigmoid(logit(g.num, g.cat, p.effect)) {
			label = 1
		}
		dst := train
		switch {
		case i < nTest && optedOut[i]:
			dst = testOut
		case i < nTest:
			dst = test
		case optedOut[i]:
			dst = trainOut
		}
		dst.Append(g.num, g.cat, g.groups, label, 0)
	}
	br := Branch{Name: name, Train: train.Finish(), Test: test.Finish(), TrainOptedOut: trainOut.Finish(), TestOptedOut: testOut.Finish()}
	br.Train.ExcludedNoConsent = outTrain
	br.Test.ExcludedNoConsent = outTest
	return br
}

// customer draws one customer of a branch into g.num and g.cat and reports whether the
// customer is female.
func (g *generator) customer(rng *rand.Rand, p params) (female bool) {
	female = rng.Float64() < 0.5
	age := math.Min(maxAge, math.Max(minAge, math.Round(meanAge+p.ageShift+sdAge*rng.NormFloat64())))
	a := age - meanAge

	seg := softmaxDraw(rng, 0, -1.4+p.affluence+0.02*a, -3.2+1.3*p.affluence+0.03*a)
	logIncome := logIncomeBase + p.incomeShift + segmentIncome[seg] + 0.012*a - 0.0004*a*a + logIncomeSD*rng.NormFloat64()
	if female {
		logIncome -= genderIncomeGap
	}
	income := math.Round(math.Exp(logIncome))
	var balance float64
	if rng.Float64() < overdraftShare {
		balance = -math.Round(math.Exp(6 + rng.NormFloat64()))
	} else {
		balance = math.Round(income * 0.3 * math.Exp(0.9*rng.NormFloat64()-0.4))
	}
	tenure := math.Min(age-minAge, math.Floor(rng.ExpFloat64()*(4+0.15*(age-minAge))))

	engagement := p.digitalShift - 0.03*a + 0.5*rng.NormFloat64()
	logins := distuv.Poisson{Lambda: math.Exp(loginsBase + engagement), Src: rng}.Rand()
	channel := softmaxDraw(rng, 0.2-0.9*engagement, 0.3+1.2*engagement, 0.3*engagement)
	visits := distuv.Poisson{Lambda: math.Exp(visitsBase - 0.6*engagement + 0.01*a), Src: rng}.Rand()
	products := 1 + distuv.Poisson{Lambda: 0.6 + segmentProducts[seg] + 0.04*math.Min(tenure, 25), Src: rng}.Rand()

	region := p.region
	if rng.Float64() >= homeRegionShare {
		region = (p.region + 1 + rng.IntN(len(regions)-1)) % len(regions)
	}

	g.num[colAge] = age
	g.num[colIncome] = income
	g.num[colBalance] = balance
	g.num[colTenure] = tenure
	g.num[colProducts] = products
	g.num[colLogins] = logins
	g.num[colVisits] = visits
	for k := range g.num[len(baseNumeric):] {
		g.num[len(baseNumeric)+k] = rng.NormFloat64() + p.extraShift*float64(k%3-1)
	}
	g.cat[0], g.cat[1], g.cat[2] = int32(seg), int32(channel), int32(region)
	return female
}

// softmaxDraw draws an index with probabilities proportional to exp(logits).
func softmaxDraw(rng *rand.Rand, logits ...float64) int {
	var w [3]float64
	top := math.Inf(-1)
	for _, l := range logits {
		top = math.Max(top, l)
	}
	sum := 0.0
	for i, l := range logits {
		w[i] = math.Exp(l - top)
		sum += w[i]
	}
	u := rng.Float64() * sum
	for i := range logits {
		if u < w[i] {
			return i
		}
		u -= w[i]
	}
	return len(logits) - 1
}

// ageLabels returns the band labels of the age attribute.
func ageLabels() []string {
	return dataset.SensitiveSpec{Bands: ageBands[:]}.BandLabels()
}

// bandOf returns the age band index of age.
func bandOf(age float64) int {
	return dataset.SensitiveSpec{Bands: ageBands[:]}.Band(age)
}
