package gbdt

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/fedprop/fedprop/dataset"
)

// Kind is a feature's type.
type Kind string

// The feature kinds.
const (
	// Numeric features split as "standardised value <= threshold goes left".
	Numeric Kind = "numeric"
	// Categorical features split as "this one category goes left, every other right".
	Categorical Kind = "categorical"
)

// maxLevels bounds a categorical feature's vocabulary so that every bin index fits a uint16.
const maxLevels = math.MaxUint16 - 1

// Feature is one model feature: a numeric column with its pinned standardisation and cut
// points, or a categorical column with its vocabulary. Features are numeric columns first,
// then categorical ones, each in schema order.
type Feature struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Mean and Std standardise a numeric feature: z = (x-Mean)/Std.
	Mean float64 `json:"mean,omitempty"`
	Std  float64 `json:"std,omitempty"`
	// Edges are a numeric feature's cut points in standardised space, strictly increasing:
	// bin b holds Edges[b-1] < z <= Edges[b] (bin 0 everything up to Edges[0], bin
	// len(Edges) everything above the last edge), and bin len(Edges)+1 holds the missing
	// values (NaN, see dataset.MissingImpute), whose side each split learns.
	Edges []float64 `json:"edges,omitempty"`
	// Levels is a categorical feature's vocabulary; bin k is category index k, and bin
	// len(Levels) holds every index outside it (the schema's "other" bucket included).
	Levels []string `json:"levels,omitempty"`
}

// Bins returns the number of bins of the feature, a numeric feature's missing bin included.
func (f Feature) Bins() int {
	if f.Kind == Categorical {
		return len(f.Levels) + 1
	}
	return len(f.Edges) + 2
}

// missingBin is a numeric feature's bin of missing values.
func (f Feature) missingBin() int { return len(f.Edges) + 1 }

// Raw maps a standardised value of a numeric feature back to the raw scale: z*Std+Mean. It is
// for showing and exporting thresholds; scoring compares standardised values, because
// (x-mean)/std <= t and x <= t*std+mean can disagree by rounding for x at the threshold.
func (f Feature) Raw(z float64) float64 { return z*f.Std + f.Mean }

// bin returns the bin of a standardised numeric value: the first b with z <= Edges[b], so that
// "bin <= b" and "z <= Edges[b]" are the same test, or the missing bin for NaN.
func (f Feature) bin(z float64) int {
	if math.IsNaN(z) {
		return f.missingBin()
	}
	return sort.Search(len(f.Edges), func(b int) bool { return z <= f.Edges[b] })
}

// category returns the bin of a category index.
func (f Feature) category(idx int32) int {
	if idx < 0 || int(idx) >= len(f.Levels) {
		return len(f.Levels)
	}
	return int(idx)
}

// Binner is the histogram layout of a run, and maps records to bins. The coordinator builds
// it from the schema, the pinned standardisation and the Edges, and sends the edges; every
// client builds the same one. It is immutable and safe for concurrent use.
//
// A histogram vector for a list of nodes holds, for the k-th node, feature f and bin b, the
// sums (gradient, hessian, row count) at Index(k, f, b), +1, +2: nodes outermost, then
// features in order, then bins, then the three sums. Its length is HistogramLen(nodes).
type Binner struct {
	features []Feature
	offset   []int // first bin of each feature within a node's block
	bins     int   // bins per node, over all features
	numeric  int
}

// NewBinner returns the layout for schema's features with the given standardisation and
// numeric cut points (one slice per numeric feature, as Edges returns).
func NewBinner(schema *dataset.Schema, std dataset.Standardization, edges [][]float64) (*Binner, error) {
	if schema == nil {
		return nil, fmt.Errorf("%w: no schema", ErrData)
	}
	if err := checkStandardization(schema, std); err != nil {
		return nil, err
	}
	if len(edges) != len(schema.Numeric) {
		return nil, fmt.Errorf("%w: %d edge lists for %d numeric features", ErrData, len(edges), len(schema.Numeric))
	}
	var fs []Feature
	for i, name := range schema.Numeric {
		fs = append(fs, Feature{Name: name, Kind: Numeric, Mean: std.Mean[i], Std: std.Std[i], Edges: slices.Clone(edges[i])})
	}
	for _, c := range schema.Categorical {
		fs = append(fs, Feature{Name: c.Column, Kind: Categorical, Levels: slices.Clone(c.Values)})
	}
	if err := checkFeatures(fs); err != nil {
		return nil, err
	}
	return newBinner(fs), nil
}

// checkFeatures validates feature metadata: names, kinds in order, finite standardisation,
// strictly increasing finite edges, bounded vocabularies.
func checkFeatures(fs []Feature) error {
	if len(fs) == 0 {
		return fmt.Errorf("%w: no features", ErrData)
	}
	seenCategorical := false
	for i, f := range fs {
		if f.Name == "" {
			return fmt.Errorf("%w: feature %d has no name", ErrData, i)
		}
		switch f.Kind {
		case Numeric:
			if seenCategorical {
				return fmt.Errorf("%w: numeric feature %q after a categorical one", ErrData, f.Name)
			}
			if math.IsNaN(f.Mean) || math.IsInf(f.Mean, 0) || !(f.Std > 0) || math.IsInf(f.Std, 0) {
				return fmt.Errorf("%w: feature %q has mean %v and std %v; want finite values and std > 0", ErrData, f.Name, f.Mean, f.Std)
			}
			if len(f.Edges) > GridCells {
				return fmt.Errorf("%w: feature %q has %d edges, at most %d", ErrData, f.Name, len(f.Edges), GridCells)
			}
			for j, e := range f.Edges {
				if math.IsNaN(e) || math.IsInf(e, 0) || (j > 0 && !(e > f.Edges[j-1])) {
					return fmt.Errorf("%w: feature %q: edges must be finite and strictly increasing (edge %d is %v)", ErrData, f.Name, j, e)
				}
			}
			if len(f.Levels) > 0 {
				return fmt.Errorf("%w: numeric feature %q has levels", ErrData, f.Name)
			}
		case Categorical:
			seenCategorical = true
			if len(f.Levels) == 0 || len(f.Levels) > maxLevels {
				return fmt.Errorf("%w: feature %q has %d levels, want 1 to %d", ErrData, f.Name, len(f.Levels), maxLevels)
			}
			if f.Mean != 0 || f.Std != 0 || len(f.Edges) > 0 {
				return fmt.Errorf("%w: categorical feature %q has a standardisation or edges", ErrData, f.Name)
			}
		default:
			return fmt.Errorf("%w: feature %q has kind %q, want %q or %q", ErrData, f.Name, f.Kind, Numeric, Categorical)
		}
	}
	return nil
}

// newBinner lays out validated features.
func newBinner(fs []Feature) *Binner {
	b := &Binner{features: fs, offset: make([]int, len(fs))}
	for i, f := range fs {
		b.offset[i] = b.bins
		b.bins += f.Bins()
		if f.Kind == Numeric {
			b.numeric++
		}
	}
	return b
}

// Features returns a copy of the feature metadata, as a Model stores it.
func (b *Binner) Features() []Feature {
	out := make([]Feature, len(b.features))
	for i, f := range b.features {
		f.Edges, f.Levels = slices.Clone(f.Edges), slices.Clone(f.Levels)
		out[i] = f
	}
	return out
}

// NumFeatures returns the number of features.
func (b *Binner) NumFeatures() int { return len(b.features) }

// NodeBins returns the number of bins of one node over all features.
func (b *Binner) NodeBins() int { return b.bins }

// HistogramLen returns the length of the histogram vector of the given number of nodes.
func (b *Binner) HistogramLen(nodes int) int { return 3 * nodes * b.bins }

// Index returns the position of the gradient sum of the k-th requested node, feature f and
// bin b in a histogram vector; the hessian sum follows at +1 and the row count at +2.
func (b *Binner) Index(k, f, bin int) int { return 3 * (k*b.bins + b.offset[f] + bin) }

// Check reports whether d's columns are the binner's features.
func (b *Binner) Check(d *dataset.Dataset) error {
	s := d.Schema
	if s == nil || len(s.Numeric) != b.numeric || len(s.Categorical) != len(b.features)-b.numeric {
		return fmt.Errorf("%w: %s does not have the model's %d numeric and %d categorical features", ErrData, d.Source, b.numeric, len(b.features)-b.numeric)
	}
	for i, name := range s.Numeric {
		if b.features[i].Name != name {
			return fmt.Errorf("%w: %s: numeric feature %d is %q, the model's is %q", ErrData, d.Source, i, name, b.features[i].Name)
		}
	}
	for j, c := range s.Categorical {
		f := b.features[b.numeric+j]
		if f.Name != c.Column || !slices.Equal(f.Levels, c.Values) {
			return fmt.Errorf("%w: %s: categorical feature %q does not have the model's name and levels (%q)", ErrData, d.Source, c.Column, f.Name)
		}
	}
	return nil
}

// Binned is a client's rows as bin indices, row-major: one uint16 per feature.
type Binned struct {
	layout *Binner
	rows   int
	bins   []uint16
}

// Len returns the number of rows.
func (x *Binned) Len() int { return x.rows }

// Layout returns the Binner the rows were binned with.
func (x *Binned) Layout() *Binner { return x.layout }

// Row returns row i's bins, one per feature (shared: do not modify).
func (x *Binned) Row(i int) []uint16 {
	w := len(x.layout.features)
	return x.bins[i*w : (i+1)*w : (i+1)*w]
}

// Bin maps every row of d to its bins.
func (b *Binner) Bin(d *dataset.Dataset) (*Binned, error) {
	if err := b.Check(d); err != nil {
		return nil, err
	}
	w := len(b.features)
	x := &Binned{layout: b, rows: d.Len(), bins: make([]uint16, d.Len()*w)}
	for i := range d.Len() {
		row := x.bins[i*w : (i+1)*w]
		for f, v := range d.Numeric[i] {
			ft := &b.features[f]
			row[f] = uint16(ft.bin(standardize(v, ft.Mean, ft.Std)))
		}
		for j, idx := range d.Category[i] {
			row[b.numeric+j] = uint16(b.features[b.numeric+j].category(idx))
		}
	}
	return x, nil
}

// maxNodes bounds node ids: a tree of depth MaxDepthCap has fewer nodes.
const maxNodes = 1 << (MaxDepthCap + 1)

// MaxHistogramLen bounds the histogram vector a client builds (128 MiB of float64), so that a
// request for many nodes of a wide layout cannot exhaust its memory. Depth-8 trees over 100
// features of 256 bins need 10 million values at their widest level.
const MaxHistogramLen = 1 << 24

// BuildHistograms returns a client's histograms of nodes (see Binner for the layout): row i
// adds its gradient g[i], hessian h[i] and a count of 1 to the bins of its node nodeOf[i],
// if that node is listed. Rows with a negative node (outside the tree's subsample) and rows in
// unlisted nodes add nothing. nodes must be distinct node ids.
func BuildHistograms(x *Binned, g, h []float64, nodeOf []int32, nodes []int32) ([]float64, error) {
	if len(g) != x.rows || len(h) != x.rows || len(nodeOf) != x.rows {
		return nil, fmt.Errorf("%w: %d gradients, %d hessians and %d node ids for %d rows", ErrData, len(g), len(h), len(nodeOf), x.rows)
	}
	if len(nodes) > maxNodes/2 || x.layout.HistogramLen(len(nodes)) > MaxHistogramLen {
		return nil, fmt.Errorf("%w: %d nodes of %d bins requested, more than a histogram vector of %d values holds", ErrRequest, len(nodes), x.layout.bins, MaxHistogramLen)
	}
	top := int32(-1)
	for _, n := range nodes {
		if n < 0 || n >= maxNodes {
			return nil, fmt.Errorf("%w: node id %d outside [0, %d)", ErrRequest, n, maxNodes)
		}
		top = max(top, n)
	}
	pos := make([]int, top+1)
	for i := range pos {
		pos[i] = -1
	}
	for k, n := range nodes {
		if pos[n] >= 0 {
			return nil, fmt.Errorf("%w: node %d requested twice", ErrRequest, n)
		}
		pos[n] = k
	}
	layout := x.layout
	out := make([]float64, layout.HistogramLen(len(nodes)))
	w := len(layout.features)
	for i, n := range nodeOf {
		if n < 0 || n > top || pos[n] < 0 {
			continue
		}
		base := pos[n] * layout.bins
		gi, hi := g[i], h[i]
		for f, bin := range x.bins[i*w : (i+1)*w] {
			j := 3 * (base + layout.offset[f] + int(bin))
			out[j] += gi
			out[j+1] += hi
			out[j+2]++
		}
	}
	return out, nil
}
