package secagg

import "fmt"

// String describes the parameters for a model card: ring degree, moduli, scale, smudging.
func (l ParamsLiteral) String() string {
	return fmt.Sprintf("CKKS LogN=%d LogQ=%v scale=2^%d smudging sigma=%g decode precision=2^-%d",
		l.LogN, l.LogQ, l.LogDefaultScale, l.SmudgingSigma, l.LogDecodePrecision)
}
