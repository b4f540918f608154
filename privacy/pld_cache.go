package privacy

import (
	"container/list"
	"encoding/binary"
	"math"
	"sync"
)

// The PLD accountant is called often with the same arguments: the coordinator checks the
// budget before a round and records the same composition after it, every client of a run
// admits the same releases into its ledger, and a sigma search builds the same steps at
// nearby grids. These caches are shared by every accountant in the process (so they are safe
// for concurrent use) and bounded; what they hold is a pure function of its key, so a hit
// returns exactly what a recomputation would.

// lru is a small least-recently-used map.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	items map[K]*list.Element
	order *list.List // front: most recent; values are lruEntry
}

type lruEntry[K comparable, V any] struct {
	key   K
	value V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, items: make(map[K]*list.Element), order: list.New()}
}

func (c *lru[K, V]) get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(lruEntry[K, V]).value, true
	}
	var zero V
	return zero, false
}

func (c *lru[K, V]) put(key K, value V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		e.Value = lruEntry[K, V]{key, value}
		c.order.MoveToFront(e)
		return
	}
	c.items[key] = c.order.PushFront(lruEntry[K, V]{key, value})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(lruEntry[K, V]).key)
	}
}

// stepKey identifies one discretised step.
type stepKey struct {
	q, sigma, h float64
	dir         direction
}

// epsKey identifies one epsilon query.
type epsKey struct {
	parts string
	delta float64
}

// sigmaKey identifies one noise search: the composition already spent (or reserved), the
// steps to add, and the target.
type sigmaKey struct {
	spent          string
	q              float64
	steps          int
	delta, epsilon float64
}

// The step cache holds 96 steps: one composition of maxPLDParts parts needs up to 64 (two
// directions, a coarse and a fine grid), and a coordinator composes the run's history every
// round with mostly the same steps; with 32 it rebuilt every step every round (about 1 s a
// round in configs/sim-app-he.yaml, whose rounds lose different numbers of contributors).
// pldCaches are the process-wide caches. Steps are at most 8 MiB each (pldMaxStepPoints
// float64s) and usually far less; a composition holds up to two grids of pldMaxPoints.
var pldCaches = struct {
	steps    *lru[stepKey, *stepPLD]
	composed *lru[string, *pldComposition]
	epsilon  *lru[epsKey, float64]
	sigma    *lru[sigmaKey, float64]
}{
	steps:    newLRU[stepKey, *stepPLD](96),
	composed: newLRU[string, *pldComposition](4),
	epsilon:  newLRU[epsKey, float64](1024),
	sigma:    newLRU[sigmaKey, float64](256),
}

// cachedStep returns the discretised step, building it on a miss.
func cachedStep(q, sigma, h float64, dir direction) (*stepPLD, error) {
	if q == 1 {
		dir = removeRecord // the two directions of the plain Gaussian are the same distribution
	}
	key := stepKey{q, sigma, h, dir}
	if s, ok := pldCaches.steps.get(key); ok {
		return s, nil
	}
	s, err := newStepPLD(q, sigma, h, dir)
	if err != nil {
		return nil, err
	}
	pldCaches.steps.put(key, s)
	return s, nil
}

// partsKey is a canonical encoding of a reduced composition (see pldParts), bit for bit.
func partsKey(parts []SampledGaussian) string {
	buf := make([]byte, 0, len(parts)*(16+binary.MaxVarintLen64))
	for _, p := range parts {
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(p.Q))
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(p.Sigma))
		buf = binary.AppendUvarint(buf, uint64(p.Steps))
	}
	return string(buf)
}
