// Package attack holds the malicious-client behaviours fedprop's simulator applies to a
// configured fraction of the clients, to study the robust aggregators of package strategy:
//
//   - label_flip: the client trains honestly, but on its labels flipped (0 <-> 1), a data
//     poisoning attack;
//   - sign_flip: the client sends its honest update multiplied by -Scale (default 1);
//   - scale: the client sends its honest update multiplied by Scale (default 10), a boosting
//     attack;
//   - max_norm: the client sends the opposite of its honest update's direction at exactly the
//     norm the task allows (the run's max_update_norm), with its full example count: the
//     strongest update the coordinator's bounds admit.
//
// Model-poisoning clients keep the example count and the loss an honest client would report, so
// only the update itself betrays them. The package is pure: which clients are malicious is a
// function of the seed and their names, and the transformations copy their inputs.
package attack

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"

	"github.com/fedprop/fedprop/task"
)

// Attack kinds accepted by Config.Kind; the empty kind (None) is no attack.
const (
	None      = ""
	LabelFlip = "label_flip"
	SignFlip  = "sign_flip"
	Scale     = "scale"
	MaxNorm   = "max_norm"
)

// Kinds returns the valid non-empty attack kinds.
func Kinds() []string { return []string{LabelFlip, SignFlip, Scale, MaxNorm} }

// Default factors used when Config.Scale is zero.
const (
	DefaultSignFlipScale = 1.0  // sign_flip sends -1 times the honest update
	DefaultScaleFactor   = 10.0 // scale sends 10 times the honest update
)

// ErrInvalidConfig marks a Config that Validate rejects.
var ErrInvalidConfig = errors.New("invalid attack config")

// configKey is the configuration path Validate names in its errors.
const configKey = "attack."

// Config describes the malicious clients of a simulation. It is a literal checked by Validate;
// the zero value is valid and means no attack.
type Config struct {
	// Kind is one of Kinds(), or "" for none.
	Kind string `yaml:"kind" json:"kind"`
	// Fraction is the share of clients that are malicious, in [0, 1]; Malicious picks exactly
	// round(Fraction*n) of n clients.
	Fraction float64 `yaml:"fraction" json:"fraction"`
	// Scale is the factor of sign_flip (the update is multiplied by -Scale; default 1) and of
	// scale (multiplied by Scale; default 10). Zero means the default; label_flip does not use it.
	Scale float64 `yaml:"scale" json:"scale,omitempty"`
}

// Enabled reports whether c makes any client malicious.
func (c Config) Enabled() bool { return c.Kind != None && c.Fraction > 0 }

// Validate reports every setting that is out of range or that the kind would ignore, naming each
// as attack.<key>. The errors wrap ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %w: %s", configKey, key, ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if c.Kind != None && !slices.Contains(Kinds(), c.Kind) {
		bad("kind", "%q is not empty or one of %s", c.Kind, strings.Join(Kinds(), ", "))
		return errors.Join(errs...)
	}
	if !(c.Fraction >= 0 && c.Fraction <= 1) {
		bad("fraction", "must be in [0, 1], got %v", c.Fraction)
	} else if c.Kind == None && c.Fraction != 0 {
		bad("fraction", "%v malicious clients need a kind (attack.kind is empty)", c.Fraction)
	}
	switch c.Kind {
	case SignFlip, Scale:
		if !(c.Scale >= 0) || math.IsInf(c.Scale, 0) {
			bad("scale", "must be a non-negative finite number (0 for the default), got %v", c.Scale)
		}
	default:
		if c.Scale != 0 {
			kind := c.Kind
			if kind == None {
				kind = `"" (no attack)`
			}
			bad("scale", "%s does not use it (set to %v)", kind, c.Scale)
		}
	}
	return errors.Join(errs...)
}

// Factor is what a poisoning client multiplies its honest update by: -Scale for sign_flip,
// Scale for scale (defaults applied), and 1 for the other kinds.
func (c Config) Factor() float64 {
	switch c.Kind {
	case SignFlip:
		if c.Scale == 0 {
			return -DefaultSignFlipScale
		}
		return -c.Scale
	case Scale:
		if c.Scale == 0 {
			return DefaultScaleFactor
		}
		return c.Scale
	default:
		return 1
	}
}

// Malicious picks which of the named clients are malicious: exactly round(Fraction*n) of the n
// distinct names (duplicates count once; Fraction is clamped to [0, 1]), none when Kind is empty.
// The choice depends only on the seed and the set of names, not their order: each name is
// ranked by a keyed hash of the seed and the name, and the lowest ranks are malicious. The map
// holds only the malicious names.
func (c Config) Malicious(clients []string, seed uint64) map[string]bool {
	out := make(map[string]bool)
	if c.Kind == None {
		return out
	}
	names := slices.Clone(clients)
	slices.Sort(names)
	names = slices.Compact(names)
	k := 0
	if c.Fraction > 0 { // false for NaN
		k = int(math.Round(min(c.Fraction, 1) * float64(len(names))))
	}
	if k == 0 {
		return out
	}
	type ranked struct {
		rank uint64
		name string
	}
	rs := make([]ranked, len(names))
	for i, name := range names {
		rs[i] = ranked{rank(seed, name), name}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), strings.Compare(a.name, b.name))
	})
	for _, r := range rs[:k] {
		out[r.name] = true
	}
	return out
}

// rank is a pseudo-random key for name under seed: FNV-1a over the seed and the name, then the
// SplitMix64 finaliser to spread FNV's weak high bits.
func rank(seed uint64, name string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	_, _ = h.Write(b[:])         // hash.Hash.Write never fails
	_, _ = h.Write([]byte(name)) // hash.Hash.Write never fails
	z := h.Sum64()
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// FlipLabels returns a copy of labels (0/1) with every label flipped, 1-y: the training data of
// a label_flip client. A NaN (unlabelled) stays NaN.
func FlipLabels(labels []float64) []float64 {
	if labels == nil {
		return nil
	}
	out := make([]float64, len(labels))
	for i, y := range labels {
		out[i] = 1 - y
	}
	return out
}

// PoisonWithin is Poison for the max_norm kind, which needs the task's bound on an update's L2
// norm: the delta part becomes n * (-maxNorm) * delta/|delta| (a fixed direction when the
// honest delta is zero). Other kinds ignore maxNorm and behave as Poison.
func (c Config) PoisonWithin(trainVector []float64, maxNorm float64) []float64 {
	if c.Kind != MaxNorm {
		return c.Poison(trainVector)
	}
	out := slices.Clone(trainVector)
	lossIndex := len(out) - 1
	if lossIndex <= task.TrainDeltaStart || !(maxNorm > 0) {
		return out
	}
	n := out[task.TrainCountIndex]
	delta := out[task.TrainDeltaStart:lossIndex]
	var sq float64
	for _, x := range delta {
		sq += x * x
	}
	norm := math.Sqrt(sq)
	for i := range delta {
		if norm > 0 {
			delta[i] = -delta[i] / norm * maxNorm
		} else {
			delta[i] = maxNorm / math.Sqrt(float64(len(delta)))
		}
		// The bound is checked on n*delta against n*maxNorm: stay a hair inside it.
		delta[i] *= n * (1 - 1e-9)
	}
	return out
}

// Poison returns a copy of a train result vector in the layout of package task (index
// task.TrainCountIndex: the example count n; from task.TrainDeltaStart: n*delta for each weight;
// last: n*loss) with the n*delta part multiplied by c.Factor(): by -Scale for sign_flip and by
// Scale for scale. The count and the loss stay as the honest client computed them. For the other
// kinds, and for a vector too short to hold a delta, the copy is unchanged. c should be valid.
func (c Config) Poison(trainVector []float64) []float64 {
	out := slices.Clone(trainVector)
	if c.Kind != SignFlip && c.Kind != Scale {
		return out
	}
	lossIndex := len(out) - 1
	if lossIndex <= task.TrainDeltaStart {
		return out
	}
	f := c.Factor()
	for i := task.TrainDeltaStart; i < lossIndex; i++ {
		out[i] *= f
	}
	return out
}
