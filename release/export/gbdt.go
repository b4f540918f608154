package export

import (
	"fmt"
	"math"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/model/gbdt"
)

// This file holds what the ONNX and PMML exports of a boosted tree model (gbdt.Model) share:
// the checks, and the raw-scale threshold that makes a numeric split exact without the
// standardisation.

// checkTrees validates m for export over the records of schema: a valid model whose features
// are the schema's columns, in order, with the same vocabularies.
func checkTrees(m *gbdt.Model, schema *dataset.Schema) error {
	if m == nil {
		return fmt.Errorf("%w: no tree model", ErrInvalidModel)
	}
	if schema == nil {
		return fmt.Errorf("%w: no schema", ErrInvalidModel)
	}
	if len(schema.Label.Negative) == 0 {
		return fmt.Errorf("%w: schema %s has no negative label value", ErrInvalidModel, schema.Name)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	// Model.Check reads only the dataset's schema (and its source, for the message).
	if err := m.Check(&dataset.Dataset{Schema: schema, Source: "schema " + schema.Name}); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	return nil
}

// rawThreshold returns the raw-scale cut point of a numeric split at standardised threshold t:
// the largest float64 r such that, for every x that is not NaN,
//
//	x <= r  exactly when  (x-f.Mean)/f.Std <= t
//
// in float64 arithmetic, which is fedprop's test (gbdt scores standardised values, computed
// as here; the export tests score rows at every cut point, so a change there shows). The
// obvious t*Std+Mean (gbdt.Feature.Raw) is within a few units in the last place of r, and in
// about half of the splits not r itself: the records between the two would take another branch
// in the export than in fedprop. Standardisation rounded to nearest is monotone in x, so the
// records that go left are exactly those up to some r, and a binary search over the float64
// values, ordered as integers, finds it in at most 64 steps.
//
// A split no finite value passes (possible only with a standardisation far outside what a
// dataset yields) has no such r, and is an error.
func rawThreshold(f gbdt.Feature, t float64) (float64, error) {
	left := func(x float64) bool { return (x-f.Mean)/f.Std <= t }
	// -Inf standardises to -Inf, which is <= t; +Inf to +Inf, which is not (t is finite).
	lo, hi := floatKey(math.Inf(-1)), floatKey(math.Inf(1))
	// hi-lo overflows int64 at first (the keys span about 2^64); it wraps, and as a uint64
	// it is the true distance.
	for uint64(hi-lo) > 1 { // #nosec G115 -- see above
		mid := lo + int64(uint64(hi-lo)/2) // #nosec G115 -- half the distance fits in 63 bits
		if left(keyFloat(mid)) {
			lo = mid
		} else {
			hi = mid
		}
	}
	r := keyFloat(lo)
	if math.IsInf(r, 0) {
		return 0, fmt.Errorf("%w: feature %q: no finite value satisfies (x-%v)/%v <= %v",
			ErrInvalidModel, f.Name, f.Mean, f.Std, t)
	}
	return r, nil
}

// floatKey maps a float64 that is not NaN to an integer in the same order (both zeros to 0),
// so that the values between two floats can be bisected.
func floatKey(x float64) int64 {
	b := math.Float64bits(x)
	if b>>63 != 0 {
		return -int64(b &^ (1 << 63)) // #nosec G115 -- the magnitude bits fit in 63 bits
	}
	return int64(b) // #nosec G115 -- a positive float's bits fit in 63 bits
}

// keyFloat is the inverse of floatKey.
func keyFloat(k int64) float64 {
	if k < 0 {
		return math.Float64frombits(uint64(-k) | 1<<63) // #nosec G115 -- -k > 0
	}
	return math.Float64frombits(uint64(k)) // #nosec G115 -- k >= 0
}

// treeSplit is one split of a tree as both exports write it.
type treeSplit struct {
	// numeric is set for a split on a numeric column; raw is then its exact raw-scale cut
	// point (see rawThreshold).
	numeric bool
	raw     float64
}

// treeSplits returns the export view of every node of every tree of m, indexed like
// m.Trees[t].Nodes (leaves and categorical splits have the zero value), computing each raw
// threshold once.
func treeSplits(m *gbdt.Model) ([][]treeSplit, error) {
	out := make([][]treeSplit, len(m.Trees))
	for t, tree := range m.Trees {
		out[t] = make([]treeSplit, len(tree.Nodes))
		for i, nd := range tree.Nodes {
			if nd.IsLeaf() || m.Features[nd.Feature].Kind != gbdt.Numeric {
				continue
			}
			r, err := rawThreshold(m.Features[nd.Feature], nd.Threshold)
			if err != nil {
				return nil, fmt.Errorf("tree %d node %d: %w", t, i, err)
			}
			out[t][i] = treeSplit{numeric: true, raw: r}
		}
	}
	return out, nil
}
