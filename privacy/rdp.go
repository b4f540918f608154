package privacy

import (
	"fmt"
	"math"
)

// MaxOrder is the largest Renyi order accepted. The integer-order series has order+1 terms, so
// the cap bounds the work one order (possibly parsed from a command line) can cause.
const MaxOrder = 1 << 14

// maxFracTerms bounds the fractional-order series; it converges long before this for any
// (q, sigma, order) in the accepted range, and the bound turns a pathological input into an
// error instead of a hang.
const maxFracTerms = 1 << 20

// fracSeriesCutoff is the log-magnitude below which the fractional-order series stops: both new
// terms are below exp(-30) (as in TensorFlow Privacy).
const fracSeriesCutoff = -30.0

// DefaultOrders returns the Renyi orders the accountant uses by default: 1.1, 1.2, ..., 10.9,
// then 11, 12, ..., 63, then 128, 256, 512, 1024 (the default of Google's dp_accounting). A new
// slice is returned on every call, so callers may modify it.
func DefaultOrders() []float64 {
	orders := make([]float64, 0, 99+53+4)
	for x := 1; x < 100; x++ {
		// 1 + x/10 rather than (10+x)/10: the same floating-point values as the reference.
		orders = append(orders, 1+float64(x)/10)
	}
	for a := 11; a < 64; a++ {
		orders = append(orders, float64(a))
	}
	return append(orders, 128, 256, 512, 1024)
}

// validateOrders checks that every order is finite, above 1 and at most MaxOrder.
func validateOrders(orders []float64) error {
	if len(orders) == 0 {
		return fmt.Errorf("no Renyi orders: %w", ErrInvalidArgument)
	}
	for i, a := range orders {
		if math.IsNaN(a) || a <= 1 || a > MaxOrder {
			return fmt.Errorf("RDP order %d is %v, want 1 < order <= %d: %w", i, a, MaxOrder, ErrInvalidArgument)
		}
	}
	return nil
}

// validateMechanism checks the sampling rate, noise multiplier and step count.
func validateMechanism(q, sigma float64, steps int) error {
	if math.IsNaN(q) || q < 0 || q > 1 {
		return fmt.Errorf("sampling rate q=%v, want 0 <= q <= 1: %w", q, ErrInvalidArgument)
	}
	if math.IsNaN(sigma) || math.IsInf(sigma, 0) || sigma < 0 {
		return fmt.Errorf("noise multiplier sigma=%v, want finite and >= 0: %w", sigma, ErrInvalidArgument)
	}
	if steps < 0 {
		return fmt.Errorf("steps=%d, want >= 0: %w", steps, ErrInvalidArgument)
	}
	return nil
}

// SampledGaussianRDP returns the Renyi divergence, at each order, of the Poisson-subsampled
// Gaussian mechanism with sampling rate q and noise multiplier sigma (noise standard deviation
// over L2 sensitivity), composed over steps. Orders must lie in (1, MaxOrder]. As in the
// reference, sigma = 0 gives +Inf (no privacy), q = 0 or steps = 0 gives 0, and q = 1 is the
// plain Gaussian mechanism, a/(2 sigma^2).
func SampledGaussianRDP(q, sigma float64, steps int, orders []float64) ([]float64, error) {
	if err := validateMechanism(q, sigma, steps); err != nil {
		return nil, err
	}
	rdp, err := sampledGaussianRDPStep(q, sigma, orders)
	if err != nil {
		return nil, err
	}
	scaleRDP(rdp, steps)
	return rdp, nil
}

// scaleRDP composes steps identical steps in place: RDP adds up at each order. Zero steps cost
// nothing even when one step is infinitely expensive (avoiding 0*Inf = NaN).
func scaleRDP(rdp []float64, steps int) {
	for i := range rdp {
		if steps == 0 {
			rdp[i] = 0
		} else {
			rdp[i] *= float64(steps)
		}
	}
}

// sampledGaussianRDPStep is the RDP of one step at each order.
func sampledGaussianRDPStep(q, sigma float64, orders []float64) ([]float64, error) {
	if err := validateMechanism(q, sigma, 1); err != nil {
		return nil, err
	}
	if err := validateOrders(orders); err != nil {
		return nil, err
	}
	rdp := make([]float64, len(orders))
	for i, a := range orders {
		r, err := sampledGaussianRDPOrder(q, sigma, a)
		if err != nil {
			return nil, fmt.Errorf("order %v (q=%v, sigma=%v): %w", a, q, sigma, err)
		}
		rdp[i] = r
	}
	return rdp, nil
}

// sampledGaussianRDPOrder is the one-step RDP at one order: log(A_alpha)/(alpha-1).
func sampledGaussianRDPOrder(q, sigma, alpha float64) (float64, error) {
	switch {
	case sigma == 0:
		return math.Inf(1), nil
	case q == 0:
		return 0, nil
	case q == 1:
		return alpha / (2 * sigma * sigma), nil
	}
	var logA float64
	var err error
	if alpha == math.Trunc(alpha) {
		logA = logAInt(q, sigma, int(alpha))
	} else {
		logA, err = logAFrac(q, sigma, alpha)
		if err != nil {
			return 0, err
		}
	}
	return logA / (alpha - 1), nil
}

// logAInt computes log(A_alpha) for an integer alpha and 0 < q < 1 by the binomial expansion
// A_alpha = sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2)).
func logAInt(q, sigma float64, alpha int) float64 {
	logQ, log1mQ := math.Log(q), math.Log1p(-q)
	twoVar := 2 * sigma * sigma
	logA := math.Inf(-1)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		logCoef := logBinomInt(alpha, i) + fi*logQ + float64(alpha-i)*log1mQ
		logA = logAdd(logA, logCoef+(fi*fi-fi)/twoVar)
	}
	return logA
}

// logAFrac computes log(A_alpha) for a fractional alpha and 0 < q < 1: the integral is split at
// z0 = sigma^2 log(1/q - 1) + 1/2 and each part expanded as a signed binomial series whose terms
// carry erfc factors (Mironov, Talwar and Zhang 2019, section 3.3).
func logAFrac(q, sigma, alpha float64) (float64, error) {
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	logQ, log1mQ := math.Log(q), math.Log1p(-q)
	twoVar := 2 * sigma * sigma
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	sqrt2Sigma := math.Sqrt2 * sigma
	lgAlpha1, _ := math.Lgamma(alpha + 1)
	for i := 0; i < maxFracTerms; i++ {
		fi := float64(i)
		j := alpha - fi
		// log|C(alpha, i)| and its sign: Gamma(alpha+1) and Gamma(i+1) are positive, the sign
		// is that of Gamma(alpha-i+1), negative for every other i beyond alpha.
		lgI1, _ := math.Lgamma(fi + 1)
		lgJ1, sign := math.Lgamma(j + 1)
		logCoef := lgAlpha1 - lgI1 - lgJ1

		logT0 := logCoef + fi*logQ + j*log1mQ
		logT1 := logCoef + j*logQ + fi*log1mQ
		logE0 := math.Log(0.5) + logErfc((fi-z0)/sqrt2Sigma)
		logE1 := math.Log(0.5) + logErfc((z0-j)/sqrt2Sigma)
		logS0 := logT0 + (fi*fi-fi)/twoVar + logE0
		logS1 := logT1 + (j*j-j)/twoVar + logE1

		if sign > 0 {
			logA0 = logAdd(logA0, logS0)
			logA1 = logAdd(logA1, logS1)
		} else {
			var err error
			if logA0, err = logSub(logA0, logS0); err != nil {
				return 0, err
			}
			if logA1, err = logSub(logA1, logS1); err != nil {
				return 0, err
			}
		}
		if math.Max(logS0, logS1) < fracSeriesCutoff {
			return logAdd(logA0, logA1), nil
		}
	}
	return 0, fmt.Errorf("fractional-order series did not converge in %d terms: %w", maxFracTerms, ErrNumerical)
}

// logBinomInt is log C(n, k) for integers 0 <= k <= n.
func logBinomInt(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// logAdd returns log(exp(x) + exp(y)) without leaving log space.
func logAdd(x, y float64) float64 {
	lo, hi := math.Min(x, y), math.Max(x, y)
	if math.IsInf(lo, -1) {
		return hi
	}
	return math.Log1p(math.Exp(lo-hi)) + hi
}

// logSub returns log(exp(x) - exp(y)); the difference must not be negative.
func logSub(x, y float64) (float64, error) {
	switch {
	case x < y:
		return 0, fmt.Errorf("log-space subtraction %v - %v would be negative: %w", x, y, ErrNumerical)
	case math.IsInf(y, -1):
		return x, nil
	case x == y:
		return math.Inf(-1), nil
	}
	d := math.Expm1(x - y)
	if math.IsInf(d, 1) {
		return x, nil // exp(y) is negligible next to exp(x)
	}
	return math.Log(d) + y, nil
}

// erfcAsymptoticFrom is where logErfc switches from math.Erfc to the asymptotic series: erfc(26)
// is about 6e-296, still a normal float64 with full relative precision, while erfc underflows to
// subnormals (and loses digits) shortly after 26.5.
const erfcAsymptoticFrom = 26.0

// logErfc returns log(erfc(x)) accurately for all x, including x large enough that erfc(x)
// underflows: there it uses the asymptotic expansion
// erfc(x) = exp(-x^2) / (x sqrt(pi)) * sum_n (-1)^n (2n-1)!! / (2x^2)^n,
// summed until its terms stop mattering (they shrink until n is about x^2, which is above 676).
func logErfc(x float64) float64 {
	if x <= erfcAsymptoticFrom {
		return math.Log(math.Erfc(x))
	}
	if math.IsInf(x, 1) {
		return math.Inf(-1)
	}
	inv2x2 := 1 / (2 * x * x)
	sum, term := 1.0, 1.0
	for n := 1; n < 100; n++ {
		term *= -float64(2*n-1) * inv2x2
		sum += term
		if math.Abs(term) < 1e-17*sum {
			break
		}
	}
	return -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(sum)
}
