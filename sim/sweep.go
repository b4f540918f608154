package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// ErrBadGrid marks a sweep grid that cannot be parsed or expanded.
var ErrBadGrid = errors.New("bad sweep grid")

// MaxSweepConfigurations bounds the cartesian product of a grid.
const MaxSweepConfigurations = 10000

// None is the grid value that sets a key to YAML null: the zero value of the field (0, "",
// false), or nil for a pointer, and so whatever the config defines for an unset key.
const None = "none"

// Grid is a parsed sweep grid: each axis sets one config key to each of its values in turn.
type Grid []Axis

// Axis is one swept key and its values, in the order given.
type Axis struct {
	// Key is a dotted YAML path into the simulation config, such as data.partition.alpha.
	Key string
	// Values are YAML scalars as written (0.5, fedavg, 30s), or None.
	Values []string
}

// Setting is one key set to one value in one configuration of a sweep.
type Setting struct {
	Key   string
	Value string
}

// Settings is one point of a grid: a value for every axis, in grid order.
type Settings []Setting

// String is "key=value,key2=value2".
func (s Settings) String() string {
	parts := make([]string, len(s))
	for i, kv := range s {
		parts[i] = kv.Key + "=" + kv.Value
	}
	return strings.Join(parts, ",")
}

// Value is the value of key, and whether the settings set it.
func (s Settings) Value(key string) (string, bool) {
	for _, kv := range s {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// ParseGrid parses 'key=v1,v2;key2=w1,w2'. Keys are dotted YAML paths of the simulation
// config; values are YAML scalars, and None sets a key to null. Blanks around keys and values
// are ignored, as is a trailing ';'. A key may appear once, and not beside a key inside it
// (run and run.rounds).
func ParseGrid(s string) (Grid, error) {
	var g Grid
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, values, ok := strings.Cut(part, "=")
		key = strings.TrimSpace(key)
		if !ok {
			return nil, fmt.Errorf("%w: %q has no '=': write key=v1,v2", ErrBadGrid, part)
		}
		if !keyPattern.MatchString(key) {
			return nil, fmt.Errorf("%w: %q is not a dotted config key such as data.partition.alpha", ErrBadGrid, key)
		}
		if seen[key] {
			return nil, fmt.Errorf("%w: key %s appears twice", ErrBadGrid, key)
		}
		for other := range seen {
			if strings.HasPrefix(key, other+".") || strings.HasPrefix(other, key+".") {
				return nil, fmt.Errorf("%w: keys %s and %s overlap", ErrBadGrid, other, key)
			}
		}
		seen[key] = true
		a := Axis{Key: key}
		have := map[string]bool{}
		for v := range strings.SplitSeq(values, ",") {
			v = strings.TrimSpace(v)
			if v == "" {
				return nil, fmt.Errorf("%w: key %s has an empty value", ErrBadGrid, key)
			}
			if have[v] {
				return nil, fmt.Errorf("%w: key %s lists %s twice", ErrBadGrid, key, v)
			}
			have[v] = true
			a.Values = append(a.Values, v)
		}
		g = append(g, a)
	}
	if len(g) == 0 {
		return nil, fmt.Errorf("%w: no keys: write key=v1,v2;key2=w1,w2", ErrBadGrid)
	}
	return g, nil
}

// Size is the number of configurations of the grid, capped at MaxSweepConfigurations+1.
func (g Grid) Size() int {
	n := 1
	for _, a := range g {
		n *= len(a.Values)
		if n > MaxSweepConfigurations {
			return MaxSweepConfigurations + 1
		}
	}
	return n
}

// Keys are the swept keys in grid order.
func (g Grid) Keys() []string {
	keys := make([]string, len(g))
	for i, a := range g {
		keys[i] = a.Key
	}
	return keys
}

// Points is the cartesian product in grid order: the last axis varies fastest.
func (g Grid) Points() []Settings {
	if len(g) == 0 || g.Size() > MaxSweepConfigurations {
		return nil
	}
	points := []Settings{nil}
	for _, a := range g {
		next := make([]Settings, 0, len(points)*len(a.Values))
		for _, p := range points {
			for _, v := range a.Values {
				q := append(Settings(nil), p...)
				next = append(next, append(q, Setting{a.Key, v}))
			}
		}
		points = next
	}
	return points
}

// SweepConfig is one configuration of a sweep before it runs.
type SweepConfig struct {
	Index    int
	Settings Settings
	Config   Config
}

// ExpandSweep applies every point of grid to the base YAML document and parses the result
// with ParseConfig, so that every configuration is checked before any runs: an unknown key
// fails with the key named. name is the base document's name in errors.
func ExpandSweep(baseYAML []byte, name string, grid Grid) ([]SweepConfig, error) {
	if len(grid) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrBadGrid)
	}
	if n := grid.Size(); n > MaxSweepConfigurations {
		return nil, fmt.Errorf("%w: more than %d configurations", ErrBadGrid, MaxSweepConfigurations)
	}
	points := grid.Points()
	out := make([]SweepConfig, len(points))
	for i, p := range points {
		doc, err := applySettings(baseYAML, p)
		if err != nil {
			return nil, fmt.Errorf("%s: sweep configuration %d (%s): %w", name, i, p, err)
		}
		cfg, err := ParseConfig(name, doc)
		if err != nil {
			return nil, fmt.Errorf("sweep configuration %d (%s): %w", i, p, err)
		}
		out[i] = SweepConfig{Index: i, Settings: p, Config: cfg}
	}
	return out, nil
}

// applySettings returns base with every setting's path set to its value.
func applySettings(base []byte, settings Settings) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(base, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadGrid, err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("%w: the config is not one YAML document", ErrBadGrid)
	}
	root := doc.Content[0]
	if isNull(root) {
		*root = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	for _, s := range settings {
		if err := setPath(root, strings.Split(s.Key, "."), scalar(s.Value)); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadGrid, s.Key, err)
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadGrid, err)
	}
	return out, nil
}

// scalar is the YAML node of a grid value: a plain scalar resolved as YAML resolves it
// (0.5 a float, true a bool, fedavg a string), or null for None.
func scalar(v string) *yaml.Node {
	if v == None {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Value: v}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// setPath sets path under the mapping m to value, creating mappings on the way and
// replacing a null on the way by a mapping.
func setPath(m *yaml.Node, path []string, value *yaml.Node) error {
	for depth, key := range path {
		if m.Kind != yaml.MappingNode {
			return fmt.Errorf("%s is not a mapping", strings.Join(path[:depth], "."))
		}
		var child *yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				child = m.Content[i+1]
				break
			}
		}
		last := depth == len(path)-1
		if child == nil {
			child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, child)
		}
		if last {
			*child = *value
			return nil
		}
		if isNull(child) {
			*child = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		if child.Kind == yaml.AliasNode {
			return fmt.Errorf("%s is a YAML alias; write the mapping out", strings.Join(path[:depth+1], "."))
		}
		m = child
	}
	return nil
}

// SweepOptions are a sweep's process settings.
type SweepOptions struct {
	// Workers bounds the configurations run at once (default and maximum:
	// runtime.GOMAXPROCS(0)). Each run gets an equal share of the cores as its config's
	// Workers, so the total stays at the core count; a grid that sets workers keeps its value.
	Workers int
	// Logger receives every run's log, tagged with its configuration.
	Logger *slog.Logger
	// Version is the fedprop version written into every summary.
	Version string
	// Observer, when set, gives the observer of one configuration's rounds. Runs go in
	// parallel, so the observers are called concurrently.
	Observer func(c SweepConfig) Observer
	// Done, when set, hears of every finished configuration in completion order, one at a
	// time.
	Done func(row SweepRow)
}

// SweepRow is one finished configuration of a sweep.
type SweepRow struct {
	Index    int
	Settings Settings
	Config   Config
	// Result is the run; nil when it failed before its first round.
	Result *Result
	// Err is why the run failed, or nil.
	Err error
}

// Sweep runs every configuration of grid applied to baseYAML (see ExpandSweep), several at
// once, and returns one row per configuration in grid order whatever the order they finish
// in. A configuration that fails keeps its error in its row and the others go on; Sweep
// itself fails when the grid or a configuration is invalid (before anything runs) or when
// ctx ends. Every run is seeded by its config, so a sweep repeats exactly.
func Sweep(ctx context.Context, baseYAML []byte, name string, grid Grid, opts SweepOptions) ([]SweepRow, error) {
	configs, err := ExpandSweep(baseYAML, name, grid)
	if err != nil {
		return nil, err
	}
	cores := runtime.GOMAXPROCS(0)
	parallel := opts.Workers
	if parallel <= 0 || parallel > cores {
		parallel = cores
	}
	parallel = min(parallel, len(configs))
	perRun := max(1, cores/parallel)
	_, gridSetsWorkers := configs[0].Settings.Value("workers")
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	rows := make([]SweepRow, len(configs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	for range parallel {
		wg.Go(func() {
			for i := range next {
				c := configs[i]
				if !gridSetsWorkers {
					c.Config.Workers = perRun
				}
				ro := Options{Logger: opts.Logger.With("sweep", c.Settings.String()), Version: opts.Version}
				if opts.Observer != nil {
					ro.Observer = opts.Observer(c)
				}
				res, err := Run(ctx, c.Config, ro)
				row := SweepRow{Index: i, Settings: c.Settings, Config: c.Config, Result: res, Err: err}
				mu.Lock()
				rows[i] = row
				if opts.Done != nil && ctx.Err() == nil {
					opts.Done(row)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range configs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	return rows, nil
}
