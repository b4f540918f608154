// Package partition splits the rows of a dataset over simulated federated clients: evenly
// at random (IID), with label skew (Dirichlet), with size skew (Quantity), or along a
// natural key such as a branch column (Natural). Every function returns one ascending list
// of row indices per client, with every row in exactly one list, and is deterministic for
// a given *rand.Rand state.
package partition

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// ErrBadArgument is wrapped by the errors for invalid arguments.
var ErrBadArgument = errors.New("bad partition argument")

// maxDirichletDraws is how often Dirichlet redraws the class proportions before it tops
// up the clients that are still too small.
const maxDirichletDraws = 10

// MinRows is the number of rows Dirichlet and Quantity guarantee every client: 10, or
// less when there are fewer than 20 rows per client (half the mean, at least 1), so that
// the guarantee never dominates the skew being simulated.
func MinRows(n, clients int) int {
	if clients < 1 {
		return 0
	}
	return max(1, min(10, n/(2*clients)))
}

// IID shuffles the n rows and deals them into clients parts whose sizes differ by at most
// one.
func IID(n, clients int, rng *rand.Rand) ([][]int, error) {
	if err := checkCounts(n, clients, rng); err != nil {
		return nil, fmt.Errorf("iid partition: %w", err)
	}
	perm := rng.Perm(n)
	sizes := make([]int, clients)
	for k := range sizes {
		sizes[k] = n / clients
		if k < n%clients {
			sizes[k]++
		}
	}
	return chunks(perm, sizes), nil
}

// Quantity gives clients sizes drawn from a symmetric Dirichlet(alpha) over the rows (a
// small alpha makes a few clients hold most rows), with the rows themselves assigned at
// random. Every client gets at least MinRows rows: the sizes are MinRows plus a
// Dirichlet share of the remaining rows, rounded by largest remainder.
func Quantity(n, clients int, alpha float64, rng *rand.Rand) ([][]int, error) {
	if err := checkArgs(n, clients, alpha, rng); err != nil {
		return nil, fmt.Errorf("quantity partition: %w", err)
	}
	floor := MinRows(n, clients)
	sizes := apportion(n-floor*clients, dirichlet(clients, alpha, rng))
	for k := range sizes {
		sizes[k] += floor
	}
	return chunks(rng.Perm(n), sizes), nil
}

// Dirichlet skews the label mix across clients: for each class (distinct label value) the
// proportions of its rows that go to each client are drawn from a symmetric
// Dirichlet(alpha), so a small alpha (0.1) gives clients dominated by one class and a
// large one (100) is close to IID.
//
// Every client is guaranteed at least MinRows rows. The proportions are redrawn for all
// classes, up to 10 times, until every client has that many; if a draw still leaves some
// clients short (likely with a very small alpha and many clients), each short client is
// topped up with rows taken at random from the currently largest client. The top-up moves
// only as many rows as are missing, so the skew of the large clients is kept.
func Dirichlet(labels []float64, clients int, alpha float64, rng *rand.Rand) ([][]int, error) {
	n := len(labels)
	if err := checkArgs(n, clients, alpha, rng); err != nil {
		return nil, fmt.Errorf("dirichlet partition: %w", err)
	}
	byClass := map[float64][]int{}
	for i, y := range labels {
		if math.IsNaN(y) {
			return nil, fmt.Errorf("dirichlet partition: %w: label of row %d is NaN", ErrBadArgument, i)
		}
		byClass[y] = append(byClass[y], i)
	}
	classes := make([]float64, 0, len(byClass))
	for c := range byClass {
		classes = append(classes, c)
	}
	slices.Sort(classes) // map order is random; the draw order must not be

	floor := MinRows(n, clients)
	var parts [][]int
	for range maxDirichletDraws {
		parts = make([][]int, clients)
		for _, c := range classes {
			rows := slices.Clone(byClass[c])
			rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
			sizes := apportion(len(rows), dirichlet(clients, alpha, rng))
			start := 0
			for k, size := range sizes {
				parts[k] = append(parts[k], rows[start:start+size]...)
				start += size
			}
		}
		if smallest(parts) >= floor {
			break
		}
	}
	topUp(parts, floor, rng)
	for _, p := range parts {
		slices.Sort(p)
	}
	return parts, nil
}

// Natural makes one client per distinct value, named by the value: names are sorted and
// parts[k] holds the rows whose value is names[k].
func Natural(values []string) (names []string, parts [][]int) {
	byValue := map[string][]int{}
	for i, v := range values {
		byValue[v] = append(byValue[v], i)
	}
	names = make([]string, 0, len(byValue))
	for v := range byValue {
		names = append(names, v)
	}
	slices.Sort(names)
	parts = make([][]int, len(names))
	for k, v := range names {
		parts[k] = byValue[v]
	}
	return names, parts
}

func checkCounts(n, clients int, rng *rand.Rand) error {
	switch {
	case rng == nil:
		return fmt.Errorf("%w: no random source", ErrBadArgument)
	case clients < 1:
		return fmt.Errorf("%w: %d clients, want at least 1", ErrBadArgument, clients)
	case n < clients:
		return fmt.Errorf("%w: %d rows cannot give each of %d clients a row", ErrBadArgument, n, clients)
	}
	return nil
}

func checkArgs(n, clients int, alpha float64, rng *rand.Rand) error {
	if err := checkCounts(n, clients, rng); err != nil {
		return err
	}
	if !(alpha > 0) || math.IsInf(alpha, 0) {
		return fmt.Errorf("%w: alpha %v, want a finite value > 0", ErrBadArgument, alpha)
	}
	return nil
}

// dirichlet draws proportions from a symmetric Dirichlet(alpha) as normalised Gamma(alpha)
// draws. When every draw underflows to 0 (possible for a tiny alpha) all mass goes to one
// client chosen at random, which is the distribution's limit as alpha goes to 0.
func dirichlet(k int, alpha float64, rng *rand.Rand) []float64 {
	g := distuv.Gamma{Alpha: alpha, Beta: 1, Src: rng}
	p := make([]float64, k)
	sum := 0.0
	for i := range p {
		p[i] = g.Rand()
		sum += p[i]
	}
	if !(sum > 0) || math.IsInf(sum, 0) {
		clear(p)
		p[rng.IntN(k)] = 1
		return p
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// apportion splits total into integer sizes proportional to p by largest remainder; the
// sizes sum to total exactly.
func apportion(total int, p []float64) []int {
	sizes := make([]int, len(p))
	rem := make([]float64, len(p))
	assigned := 0
	for i, pi := range p {
		exact := pi * float64(total)
		sizes[i] = int(exact)
		rem[i] = exact - float64(sizes[i])
		assigned += sizes[i]
	}
	order := make([]int, len(p))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rem[b], rem[a]) })
	for i := 0; assigned < total; i = (i + 1) % len(order) {
		sizes[order[i]]++
		assigned++
	}
	return sizes
}

// chunks cuts perm into consecutive parts of the given sizes, each sorted.
func chunks(perm []int, sizes []int) [][]int {
	parts := make([][]int, len(sizes))
	start := 0
	for k, size := range sizes {
		parts[k] = slices.Clone(perm[start : start+size])
		slices.Sort(parts[k])
		start += size
	}
	return parts
}

func smallest(parts [][]int) int {
	m := math.MaxInt
	for _, p := range parts {
		m = min(m, len(p))
	}
	return m
}

// topUp moves random rows from the largest clients to every client with fewer than floor
// rows. The caller guarantees there are at least floor rows per client overall.
func topUp(parts [][]int, floor int, rng *rand.Rand) {
	if smallest(parts) >= floor {
		return
	}
	h := &bySize{parts: parts, order: make([]int, len(parts)), pos: make([]int, len(parts))}
	for k := range parts {
		h.order[k], h.pos[k] = k, k
	}
	heap.Init(h)
	for k := range parts {
		for len(parts[k]) < floor {
			donor := h.order[0]
			if len(parts[donor]) <= floor {
				return // cannot happen when there are floor rows per client overall
			}
			j := rng.IntN(len(parts[donor]))
			last := len(parts[donor]) - 1
			row := parts[donor][j]
			parts[donor][j] = parts[donor][last]
			parts[donor] = parts[donor][:last]
			parts[k] = append(parts[k], row)
			heap.Fix(h, h.pos[donor])
			heap.Fix(h, h.pos[k])
		}
	}
}

// bySize is a max-heap of client indexes by part size (ties: lower index first); pos
// tracks each client's place in the heap so that any client can be fixed after a move.
type bySize struct {
	parts [][]int
	order []int // heap of client indexes
	pos   []int // pos[client] = index in order
}

func (h *bySize) Len() int { return len(h.order) }
func (h *bySize) Less(i, j int) bool {
	a, b := h.order[i], h.order[j]
	if len(h.parts[a]) != len(h.parts[b]) {
		return len(h.parts[a]) > len(h.parts[b])
	}
	return a < b
}
func (h *bySize) Swap(i, j int) {
	h.order[i], h.order[j] = h.order[j], h.order[i]
	h.pos[h.order[i]], h.pos[h.order[j]] = i, j
}

// Push and Pop complete heap.Interface (topUp never grows or shrinks the heap).
func (h *bySize) Push(x any) {
	k := x.(int)
	h.pos[k] = len(h.order)
	h.order = append(h.order, k)
}

func (h *bySize) Pop() any {
	k := h.order[len(h.order)-1]
	h.order = h.order[:len(h.order)-1]
	return k
}
