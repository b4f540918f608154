package gbdt

import (
	"fmt"

	"github.com/fedprop/fedprop/dataset"
)

// Fit fits a model on d's rows with the pinned standardisation. It is FitFederated with one
// client: the same sketch, the same Grower and the same histograms, so a centralized fit is
// the federated algorithm and not a separate implementation that merely resembles it.
func Fit(d *dataset.Dataset, std dataset.Standardization, p Params) (*Model, error) {
	return FitFederated([]*dataset.Dataset{d}, std, p)
}

// FitFederated fits a model with the rows split across clients, one dataset each, in one
// process: every exchange sums the clients' vectors, in client order, and hands the sum to
// the coordinator's side. Client k subsamples its rows with ClientSeed(p.Seed, k). With
// Subsample 1 the result depends on the union of the rows alone, up to floating-point
// rounding of the sums (the splits are the same, see gainTolerance; leaf values agree to
// about 1e-12).
func FitFederated(parts []*dataset.Dataset, std dataset.Standardization, p Params) (*Model, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: no clients", ErrData)
	}
	schema := parts[0].Schema
	if schema == nil {
		return nil, fmt.Errorf("%w: %s has no schema", ErrData, parts[0].Source)
	}

	labelSum := make([]float64, LabelSumsLen)
	sketch := make([]float64, SketchLen(len(schema.Numeric)))
	for _, d := range parts {
		v, err := LabelSums(d)
		if err != nil {
			return nil, err
		}
		add(labelSum, v)
		if v, err = SketchCounts(d, std); err != nil {
			return nil, err
		}
		if len(v) != len(sketch) {
			return nil, fmt.Errorf("%w: %s has %d numeric features, %s has %d", ErrData, d.Source, len(v)/GridCells, parts[0].Source, len(schema.Numeric))
		}
		add(sketch, v)
	}
	base, err := BaseScore(labelSum)
	if err != nil {
		return nil, err
	}
	edges, err := Edges(sketch, len(schema.Numeric), p.Bins)
	if err != nil {
		return nil, err
	}
	layout, err := NewBinner(schema, std, edges)
	if err != nil {
		return nil, err
	}
	clients := make([]*Local, len(parts))
	for k, d := range parts {
		x, err := layout.Bin(d)
		if err != nil {
			return nil, err
		}
		if clients[k], err = NewLocal(x, d.Label, base); err != nil {
			return nil, fmt.Errorf("%s: %w", d.Source, err)
		}
	}

	m := &Model{Format: ModelFormat, Params: p, BaseScore: base, Features: layout.Features()}
	for t := range p.Trees {
		tree, err := growTree(layout, p, t, clients)
		if err != nil {
			return nil, fmt.Errorf("tree %d: %w", t, err)
		}
		m.Trees = append(m.Trees, tree)
	}
	return m, nil
}

// growTree runs one tree's exchanges between a Grower and the clients.
func growTree(layout *Binner, p Params, t int, clients []*Local) (Tree, error) {
	g, err := NewGrower(layout, p, t)
	if err != nil {
		return Tree{}, err
	}
	for k, c := range clients {
		c.StartTree(t, p.Subsample, ClientSeed(p.Seed, k))
	}
	for !g.Done() {
		nodes := g.Pending()
		sum := make([]float64, layout.HistogramLen(len(nodes)))
		for _, c := range clients {
			h, err := c.Histograms(nodes)
			if err != nil {
				return Tree{}, err
			}
			add(sum, h)
		}
		if err := g.Apply(sum); err != nil {
			return Tree{}, err
		}
		if g.Done() {
			break // the last level's splits lead to leaves only: no client needs them
		}
		for _, c := range clients {
			if err := c.ApplySplits(g.Splits()); err != nil {
				return Tree{}, err
			}
		}
	}
	tree, err := g.Tree()
	if err != nil {
		return Tree{}, err
	}
	for _, c := range clients {
		if err := c.FinishTree(tree); err != nil {
			return Tree{}, err
		}
	}
	return tree, nil
}

// add adds v into sum element by element; the lengths are equal by construction.
func add(sum, v []float64) {
	for i, x := range v {
		sum[i] += x
	}
}
