package sim

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/partition"
	"github.com/fedprop/fedprop/synth"
)

// ClientData is one simulated client's rows: training rows and held-out rows.
type ClientData struct {
	Name        string
	Train, Test *dataset.Dataset
	// Branch marks a branch client of data.branch_clients: reliable (the failure model
	// leaves it alone) and eligible for the committee.
	Branch bool
}

// World is the simulated federation's data.
type World struct {
	Schema     *dataset.Schema
	SchemaYAML []byte
	Clients    []ClientData
	// Test is every client's held-out rows pooled: the test set the metrics are computed on.
	Test *dataset.Dataset
	// Idle counts clients left out for having no training rows.
	Idle int
}

// TrainRows counts the training rows over all clients.
func (w *World) TrainRows() int {
	n := 0
	for _, c := range w.Clients {
		n += c.Train.Len()
	}
	return n
}

// PooledTrain is every client's training rows together, for the centralized reference.
func (w *World) PooledTrain() *dataset.Dataset {
	parts := make([]*dataset.Dataset, len(w.Clients))
	for i, c := range w.Clients {
		parts[i] = c.Train
	}
	return dataset.Concat(parts...)
}

// TableReader reads data.csv.path: dataset/parquet's Read (CSV or Parquet, by the schema's
// format or the file's extension) in the fedprop binary. The simulator package does not link it
// itself, so that what builds it (make demo) does not compile a Parquet library it never uses.
type TableReader func(ctx context.Context, path string, schema *dataset.Schema, opts dataset.ReadOptions) (*dataset.Dataset, error)

// Load builds the world a config describes, reading CSV files only.
func Load(ctx context.Context, cfg Config) (*World, error) { return LoadWith(ctx, cfg, nil) }

// LoadWith is Load reading the data file with read (nil: CSV only).
func LoadWith(ctx context.Context, cfg Config, read TableReader) (*World, error) {
	switch cfg.Data.Source {
	case "synthetic":
		return loadSynthetic(cfg.Data)
	case "csv":
		return loadCSV(ctx, cfg, read)
	}
	return nil, fmt.Errorf("data.source: %q is not synthetic or csv", cfg.Data.Source)
}

// loadSynthetic draws the synthetic population and, in a cross-device federation, the branch
// clients, which come first.
func loadSynthetic(dc DataConfig) (*World, error) {
	sc := dc.Synthetic
	population, err := synth.Generate(sc)
	if err != nil {
		return nil, fmt.Errorf("synthetic data: %w", err)
	}
	var branches []synth.Branch
	if dc.BranchClients.Count > 0 {
		if branches, err = synth.Generate(dc.branchSynth()); err != nil {
			return nil, fmt.Errorf("data.branch_clients: %w", err)
		}
		for i := range population {
			population[i].Name = appClientName(i)
		}
	}
	schema := synth.Schema(sc)
	doc, err := yaml.Marshal(schema)
	if err != nil {
		return nil, fmt.Errorf("synthetic schema: %w", err)
	}
	w := &World{Schema: schema, SchemaYAML: doc}
	tests := make([]*dataset.Dataset, 0, len(branches)+len(population))
	add := func(b synth.Branch, branch bool) {
		tests = append(tests, b.Test)
		if b.Train.Len() == 0 {
			// A tiny app client whose customers all opted out (or were held out) has nothing
			// to train on: it takes no part, but its held-out rows still count in the test set.
			w.Idle++
			return
		}
		w.Clients = append(w.Clients, ClientData{Name: b.Name, Train: b.Train, Test: b.Test, Branch: branch})
	}
	for _, b := range branches {
		add(b, true)
	}
	for _, b := range population {
		add(b, false)
	}
	w.Test = dataset.Concat(tests...)
	return w, nil
}

func loadCSV(ctx context.Context, cfg Config, read TableReader) (*World, error) {
	c := cfg.Data.CSV
	doc, err := os.ReadFile(c.Schema)
	if err != nil {
		return nil, fmt.Errorf("data.csv.schema: %w", err)
	}
	schema, err := dataset.ParseSchema(c.Schema, doc)
	if err != nil {
		return nil, err
	}
	format := dataset.FormatOf(schema, c.Path)
	if read == nil {
		if format == dataset.FormatParquet {
			return nil, fmt.Errorf("data.csv.path: %s is Parquet, and this program reads CSV only: run it with fedprop sim", c.Path)
		}
		read = func(ctx context.Context, path string, schema *dataset.Schema, _ dataset.ReadOptions) (*dataset.Dataset, error) {
			return dataset.ReadCSV(ctx, path, schema)
		}
	}
	all, err := read(ctx, c.Path, schema, dataset.ReadOptions{})
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xda7a))

	// Which rows are held out: the listed data-row indices, or a seeded random fraction.
	isTest := make([]bool, all.Len())
	if c.TestRows != "" {
		listed, err := readIndexFile(c.TestRows)
		if err != nil {
			return nil, err
		}
		// Line is 1-based: in a CSV file data row k sits on line k+1, after the skipped lines
		// and the header (comment or blank lines in between would shift it: test_rows needs
		// a file without them); a Parquet row's Line is its 1-based row number.
		first := 1
		if format != dataset.FormatParquet {
			first += schema.CSV.SkipLines
			if schema.CSV.Header == nil || *schema.CSV.Header {
				first++
			}
		}
		for i := range isTest {
			_, isTest[i] = listed[all.Line[i]-first]
		}
	} else {
		for i := range isTest {
			isTest[i] = rng.Float64() < c.TestFraction
		}
	}

	// Partition all rows at once, so each client's held-out rows follow its own distribution,
	// then split each client's rows into training and held-out rows.
	names, parts, err := partitionRows(all, schema, cfg.Data.Partition, rng)
	if err != nil {
		return nil, fmt.Errorf("data.partition: %w", err)
	}
	w := &World{Schema: schema, SchemaYAML: doc}
	tests := make([]*dataset.Dataset, 0, len(parts))
	for i, rows := range parts {
		var train, test []int
		for _, r := range rows {
			if isTest[r] {
				test = append(test, r)
			} else {
				train = append(train, r)
			}
		}
		if len(train) == 0 {
			return nil, fmt.Errorf("data.partition: client %s received no training rows; use fewer clients or a larger alpha", names[i])
		}
		cd := ClientData{Name: names[i], Train: all.Subset(train), Test: all.Subset(test)}
		w.Clients = append(w.Clients, cd)
		tests = append(tests, cd.Test)
	}
	if all.ExcludedNoConsent > 0 && len(w.Clients) > 0 {
		// The reader counted the excluded rows for the whole file; the simulator attributes
		// them to the first client so that totals stay right.
		w.Clients[0].Train.ExcludedNoConsent = all.ExcludedNoConsent
	}
	w.Test = dataset.Concat(tests...)
	return w, nil
}

func partitionRows(all *dataset.Dataset, schema *dataset.Schema, p PartitionConfig, rng *rand.Rand) ([]string, [][]int, error) {
	var (
		parts [][]int
		err   error
	)
	switch p.Method {
	case "iid":
		parts, err = partition.IID(all.Len(), p.Clients, rng)
	case "dirichlet":
		parts, err = partition.Dirichlet(all.Label, p.Clients, p.Alpha, rng)
	case "quantity":
		parts, err = partition.Quantity(all.Len(), p.Clients, p.Alpha, rng)
	case "natural":
		values, err := columnValues(all, schema, p.Column)
		if err != nil {
			return nil, nil, err
		}
		names, parts := partition.Natural(values)
		for i := range names {
			names[i] = p.Column + "=" + names[i]
		}
		return names, parts, nil
	default:
		return nil, nil, fmt.Errorf("method %q is not one of iid, dirichlet, quantity, natural", p.Method)
	}
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(parts))
	for i := range names {
		names[i] = clientName(i)
	}
	return names, parts, nil
}

// columnValues returns a categorical or sensitive column's value per row.
func columnValues(d *dataset.Dataset, s *dataset.Schema, column string) ([]string, error) {
	for j, c := range s.Categorical {
		if c.Column == column {
			out := make([]string, d.Len())
			for i := range out {
				k := int(d.Category[i][j])
				if k < len(c.Values) {
					out[i] = c.Values[k]
				} else {
					out[i] = "<other>"
				}
			}
			return out, nil
		}
	}
	for k, c := range s.Sensitive {
		if c.Column == column {
			out := make([]string, d.Len())
			for i := range out {
				out[i] = d.Groups[i][k]
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("column %q is not a categorical or sensitive column of the schema", column)
}

// readIndexFile reads one non-negative integer per line.
func readIndexFile(path string) (map[int]struct{}, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data.csv.test_rows: %w", err)
	}
	defer f.Close()
	out := map[int]struct{}{}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		n, err := strconv.Atoi(text)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s:%d:1: %q is not a row index", path, line, text)
		}
		out[n] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no row indices", path)
	}
	return out, nil
}
