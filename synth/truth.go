package synth

import (
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fedprop/fedprop/dataset"
)

// Coefficients of the true propensity's logit.
const (
	intercept       = -3.0
	incomeCoef      = 1.2  // per unit of log income
	balanceCoef     = 0.4  // per unit of asinh(balance / 10,000)
	productsCoef    = 0.35 // per product held
	loginsCoef      = 0.5  // per unit of log(1 + logins)
	visitsCoef      = -0.1 // per unit of log(1 + visits)
	ageCurvature    = 0.0016
	peakAge         = 48.0 // propensity peaks in mid-life: not linear in age
	tenureCoef      = 0.02 // per year, up to 30 years
	signalExtras    = 6    // the first extra features that carry signal
	extraCoef       = 0.3  // coefficient of the first extra feature
	extraCoefDecay  = 0.7  // each following one is weaker by this factor
	logIncomeCentre = 10.6
	loginsLogCentre = 2.0
	visitsLogCentre = 1.0
	balanceScale    = 10000.0
	maxTenureEffect = 30.0
	productsCentre  = 2.0
)

var (
	segmentEffect = [...]float64{0, 0.7, 1.3}                   // mass, affluent, private
	channelEffect = [...]float64{0, 0.5, 0.2}                   // branch, app, web
	regionEffect  = [...]float64{0.15, -0.1, 0.05, -0.15, 0.05} // north, south, east, west, central
)

// logit is the true log-odds of a customer with numeric features num (in the synthetic
// schema's order) and categories cat, in a branch with the given effect.
func logit(num []float64, cat []int32, effect float64) float64 {
	age, income, balance := num[colAge], num[colIncome], num[colBalance]
	z := intercept + effect
	z += incomeCoef * (math.Log(math.Max(income, 1)) - logIncomeCentre)
	z += balanceCoef * math.Asinh(balance/balanceScale)
	z += productsCoef * (num[colProducts] - productsCentre)
	z += loginsCoef * (math.Log1p(math.Max(num[colLogins], 0)) - loginsLogCentre)
	z += visitsCoef * (math.Log1p(math.Max(num[colVisits], 0)) - visitsLogCentre)
	z -= ageCurvature * (age - peakAge) * (age - peakAge)
	z += tenureCoef * math.Min(num[colTenure], maxTenureEffect)
	coef := extraCoef
	for _, x := range num[len(baseNumeric):min(len(num), len(baseNumeric)+signalExtras)] {
		z += coef * x
		coef *= extraCoefDecay
	}
	s, c, r := int(cat[0]), int(cat[1]), int(cat[2])
	if s < 0 || s >= len(segmentEffect) || c < 0 || c >= len(channelEffect) || r < 0 || r >= len(regionEffect) {
		return math.NaN()
	}
	return z + segmentEffect[s] + channelEffect[c] + regionEffect[r]
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// GroundTruth returns the true propensity of a row of cfg's data: the probability with
// which Generate drew its label. The branch effect is found from the dataset's Source:
// Generate names its datasets "<branch name>/train" and so on, and a file whose base name
// starts with the branch name (branch-007.train.csv) works too. For a row whose branch
// cannot be told, or a dataset that does not follow Schema(cfg), it returns NaN, so that
// a mistake shows in any metric computed from it.
func GroundTruth(cfg Config) func(d *dataset.Dataset, row int) float64 {
	cfg = cfg.WithDefaults()
	effects := make([]float64, cfg.Branches)
	for b := range effects {
		effects[b] = branchParams(cfg, b).effect
	}
	return func(d *dataset.Dataset, row int) float64 {
		b, ok := BranchIndex(d.Source)
		if !ok || b >= len(effects) || !followsSchema(d.Schema) || row < 0 || row >= d.Len() {
			return math.NaN()
		}
		return sigmoid(logit(d.Numeric[row], d.Category[row], effects[b]))
	}
}

// GroundTruthForBranch is GroundTruth for rows known to belong to branch b, whatever
// their dataset's Source.
func GroundTruthForBranch(cfg Config, b int) func(d *dataset.Dataset, row int) float64 {
	cfg = cfg.WithDefaults()
	if b < 0 || b >= cfg.Branches {
		return func(*dataset.Dataset, int) float64 { return math.NaN() }
	}
	effect := branchParams(cfg, b).effect
	return func(d *dataset.Dataset, row int) float64 {
		if !followsSchema(d.Schema) || row < 0 || row >= d.Len() {
			return math.NaN()
		}
		return sigmoid(logit(d.Numeric[row], d.Category[row], effect))
	}
}

// BranchIndex parses the branch index from a dataset source or file name such as
// "branch-007/train" or "shards/branch-007.train.csv".
func BranchIndex(source string) (int, bool) {
	rest, ok := strings.CutPrefix(filepath.Base(source), "branch-")
	if !ok {
		// Generate's sources contain a slash, which Base would cut at.
		if rest, ok = strings.CutPrefix(source, "branch-"); !ok {
			return 0, false
		}
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	b, err := strconv.Atoi(rest[:end])
	if err != nil {
		return 0, false
	}
	return b, true
}

// followsSchema reports whether s has the synthetic layout the truth function reads.
func followsSchema(s *dataset.Schema) bool {
	if s == nil || len(s.Numeric) < len(baseNumeric) || len(s.Categorical) < 3 {
		return false
	}
	for i, name := range baseNumeric {
		if s.Numeric[i] != name {
			return false
		}
	}
	return s.Categorical[0].Column == "segment" && s.Categorical[1].Column == "channel" && s.Categorical[2].Column == "region"
}
