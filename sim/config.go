// Package sim is fedprop's simulator: it drives the production coordinator and client cores
// in one process, without sockets, on synthetic or CSV data, and writes per-round metrics and
// a summary. What researchers simulate is what branches run.
package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/internal/confcheck"
	"github.com/fedprop/fedprop/sim/attack"
	"github.com/fedprop/fedprop/synth"
)

// Config is a simulation: the data, how it is split over clients, and the run.
type Config struct {
	// Seed drives partitioning, cohort selection and local training; the same seed gives the
	// same numbers, bit for bit.
	Seed uint64                `yaml:"seed" json:"seed"`
	Data DataConfig            `yaml:"data" json:"data"`
	Run  coordinator.RunConfig `yaml:"run" json:"run"`
	// Centralized also trains the same model on the pooled training rows (L-BFGS) for comparison.
	Centralized *bool `yaml:"centralized" json:"centralized"`
	// Workers bounds how many clients train at once (default: the number of CPUs).
	Workers int `yaml:"workers" json:"workers"`
	// CommitteeSize, in he mode with no committee listed, makes the first CommitteeSize
	// clients the committee.
	CommitteeSize int `yaml:"committee_size" json:"committee_size,omitempty"`
	// Failures is how simulated clients fail: dropouts, stragglers, late joiners, leavers.
	Failures FailureConfig `yaml:"failures" json:"failures"`
	// Attack makes a fraction of the clients malicious (plaintext research runs).
	Attack attack.Config `yaml:"attack" json:"attack"`
	// Personalization fine-tunes the global model at every client after the run.
	Personalization PersonalizationConfig `yaml:"personalization" json:"personalization"`
	// PrivacyAudit sets up `fedprop sim audit`, the empirical privacy audit of the run's model;
	// a plain simulation ignores it.
	PrivacyAudit PrivacyAuditConfig `yaml:"privacy_audit" json:"privacy_audit,omitzero"`
}

// DataConfig chooses the data source.
type DataConfig struct {
	// Source is "synthetic" (the built-in bank generator) or "csv".
	Source    string          `yaml:"source" json:"source"`
	Synthetic synth.Config    `yaml:"synthetic" json:"synthetic"`
	CSV       CSVConfig       `yaml:"csv" json:"csv"`
	Partition PartitionConfig `yaml:"partition" json:"partition"`
	// BranchClients adds bank branches to a synthetic population, which then stands for
	// mobile-app clients: a cross-device federation whose committee comes from the branches.
	BranchClients BranchClientsConfig `yaml:"branch_clients" json:"branch_clients,omitzero"`
}

// BranchClientsConfig is the branch side of a cross-device federation: a few reliable clients
// with many records each. With Count > 0 the synthetic population's clients are app clients
// (named app-000000, ...) and the branches are branch-000, ...; committee_size draws the
// committee from the branches, and the failure model (dropouts, stragglers, late joiners,
// leavers) applies to the app clients only.
type BranchClientsConfig struct {
	Count int `yaml:"count" json:"count,omitempty"`
	// CustomersPerBranch is the mean number of customers of a branch (default 2000); the
	// synthetic generator draws them, with the same features, consent opt-out and test
	// fraction as the app clients, from its own seed stream.
	CustomersPerBranch int `yaml:"customers_per_branch" json:"customers_per_branch,omitempty"`
}

// branchSynth is the generator configuration of the branch clients.
func (c DataConfig) branchSynth() synth.Config {
	sc := c.Synthetic
	sc.Branches = c.BranchClients.Count
	sc.CustomersPerBranch = c.BranchClients.CustomersPerBranch
	// Their own stream: the same seed would give branch b the customers of app client b.
	sc.Seed ^= 0xb4a2c4
	return sc.WithDefaults()
}

// appClientName names the i-th (0-based) app client of a cross-device population.
func appClientName(i int) string { return fmt.Sprintf("app-%06d", i) }

// CSVConfig names a CSV, its schema and its held-out rows. Paths are relative to the working
// directory.
type CSVConfig struct {
	Path   string `yaml:"path" json:"path"`
	Schema string `yaml:"schema" json:"schema"`
	// TestRows is a file of 0-based data-row indices (header excluded) held out for testing;
	// without it, TestFraction of the rows are held out at random.
	TestRows     string  `yaml:"test_rows" json:"test_rows"`
	TestFraction float64 `yaml:"test_fraction" json:"test_fraction"`
}

// PartitionConfig splits CSV rows over clients.
type PartitionConfig struct {
	// Method is "iid", "dirichlet" (label skew), "quantity" (size skew) or "natural" (one
	// client per value of Column).
	Method  string  `yaml:"method" json:"method"`
	Clients int     `yaml:"clients" json:"clients"`
	Alpha   float64 `yaml:"alpha" json:"alpha"`
	Column  string  `yaml:"column" json:"column"`
}

// ParseConfig decodes a YAML simulation config strictly, fills defaults and validates. An
// unknown key, a key given twice or a value of the wrong type is an error that names the key
// by its path as written, with its line, and suggests the nearest valid key for a typo
// ("run.roudns: line 14: unknown key, did you mean run.rounds?"); see confcheck.CheckYAML.
func ParseConfig(name string, data []byte) (Config, error) {
	var c Config
	bad := func(err error) (Config, error) {
		return c, fmt.Errorf("%s: %w: %w", name, coordinator.ErrBadConfig, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return bad(err)
	}
	noPrivacy, rewritten := explicitNone(&doc, "run", "privacy", "epsilon")
	// Checked on the tree as read, so that lines are the file's own.
	if err := errors.Join(confcheck.CheckYAML(&doc, &c)...); err != nil {
		return bad(err)
	}
	if rewritten {
		out, err := yaml.Marshal(&doc)
		if err != nil {
			return bad(err)
		}
		data = out
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return bad(err)
	}
	if noPrivacy {
		// "epsilon: none" (or null) is the no-privacy point of a utility curve: the same run
		// without differential privacy. An absent epsilon is not: it stays an error unless
		// a noise multiplier is given.
		c.Run.Privacy = coordinator.PrivacyConfig{Mechanism: coordinator.DPNone}
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return bad(err)
	}
	return c, nil
}

// explicitNone reports whether the YAML document root sets the key path to null or to
// "none", and whether it rewrote a "none" there into null (in place), so that it decodes.
func explicitNone(root *yaml.Node, path ...string) (none, rewritten bool) {
	if len(root.Content) == 0 {
		return false, false
	}
	n := root.Content[0]
	for i, key := range path {
		if n.Kind != yaml.MappingNode {
			return false, false
		}
		var next *yaml.Node
		for k := 0; k+1 < len(n.Content); k += 2 {
			if n.Content[k].Value == key {
				next = n.Content[k+1]
			}
		}
		if next == nil {
			return false, false
		}
		if i < len(path)-1 {
			n = next
			continue
		}
		switch {
		case next.Tag == "!!null":
			return true, false
		case next.Kind == yaml.ScalarNode && next.Value == "none":
			next.Tag, next.Value, next.Style = "!!null", "null", 0
			return true, true
		}
	}
	return false, false
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Data.Source == "" {
		c.Data.Source = "synthetic"
	}
	if c.Data.Source == "synthetic" {
		if c.Data.Synthetic.Seed == 0 {
			c.Data.Synthetic.Seed = c.Seed
		}
		c.Data.Synthetic = c.Data.Synthetic.WithDefaults()
	}
	if c.Data.Partition.Method == "" {
		c.Data.Partition.Method = "iid"
	}
	if c.Data.Partition.Clients == 0 {
		c.Data.Partition.Clients = 10
	}
	if c.Data.Partition.Alpha == 0 {
		c.Data.Partition.Alpha = 0.5
	}
	if c.Data.CSV.TestFraction == 0 {
		c.Data.CSV.TestFraction = 0.2
	}
	if c.Run.ID == "" {
		c.Run.ID = "sim"
	}
	if c.Run.Seed == 0 {
		c.Run.Seed = c.Seed
	}
	if c.Run.MinClients == 0 {
		c.Run.MinClients = 1
	}
	if c.Centralized == nil {
		t := true
		c.Centralized = &t
	}
	if c.Failures.DeadlineTicks == 0 {
		c.Failures.DeadlineTicks = 2
	}
	if c.Data.BranchClients.Count > 0 && c.Data.BranchClients.CustomersPerBranch == 0 {
		c.Data.BranchClients.CustomersPerBranch = synth.DefaultCustomersPerBranch
	}
	sa := &c.Run.SecureAggregation
	if sa.Mode == coordinator.SecAggHE && len(sa.Committee) == 0 && c.CommitteeSize > 0 {
		for i := range c.CommitteeSize {
			switch {
			case c.Data.BranchClients.Count > 0:
				// The committee holds key shares and must answer: it comes from the branches.
				if i < c.Data.BranchClients.Count {
					sa.Committee = append(sa.Committee, synth.BranchName(c.Data.branchSynth(), i))
				}
			case c.Data.Source == "synthetic":
				sa.Committee = append(sa.Committee, synth.BranchName(c.Data.Synthetic, i))
			case c.Data.Partition.Method != "natural":
				sa.Committee = append(sa.Committee, clientName(i))
			}
		}
	}
	c.Run = c.Run.WithDefaults()
	return c
}

// clientName names the i-th (0-based) client of a CSV partition.
func clientName(i int) string { return fmt.Sprintf("client-%02d", i+1) }

// Validate names the first key that cannot work.
func (c Config) Validate() error {
	var errs []error
	switch c.Data.Source {
	case "synthetic":
		if err := c.Data.Synthetic.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("data.synthetic: %w", err))
		}
	case "csv":
		if c.Data.CSV.Path == "" {
			errs = append(errs, errors.New("data.csv.path: required when data.source is csv"))
		}
		if c.Data.CSV.Schema == "" {
			errs = append(errs, errors.New("data.csv.schema: required when data.source is csv"))
		}
		if c.Data.CSV.TestFraction <= 0 || c.Data.CSV.TestFraction >= 1 {
			errs = append(errs, fmt.Errorf("data.csv.test_fraction: must be in (0, 1), got %v", c.Data.CSV.TestFraction))
		}
		switch c.Data.Partition.Method {
		case "iid", "dirichlet", "quantity":
		case "natural":
			if c.Data.Partition.Column == "" {
				errs = append(errs, errors.New("data.partition.column: required for the natural partition"))
			}
		default:
			errs = append(errs, fmt.Errorf("data.partition.method: %q is not one of iid, dirichlet, quantity, natural", c.Data.Partition.Method))
		}
		if c.Data.Partition.Clients < 1 {
			errs = append(errs, fmt.Errorf("data.partition.clients: must be at least 1, got %d", c.Data.Partition.Clients))
		}
		if c.Data.Partition.Alpha <= 0 {
			errs = append(errs, fmt.Errorf("data.partition.alpha: must be positive, got %v", c.Data.Partition.Alpha))
		}
	default:
		errs = append(errs, fmt.Errorf("data.source: %q is not synthetic or csv", c.Data.Source))
	}
	if b := c.Data.BranchClients; b.Count != 0 || b.CustomersPerBranch != 0 {
		switch {
		case c.Data.Source != "synthetic":
			errs = append(errs, errors.New("data.branch_clients: only with data.source synthetic"))
		case b.Count < 0 || b.CustomersPerBranch < 0:
			errs = append(errs, fmt.Errorf("data.branch_clients: count and customers_per_branch must not be negative, got %d and %d", b.Count, b.CustomersPerBranch))
		case b.Count > 0:
			if err := c.Data.branchSynth().Validate(); err != nil {
				errs = append(errs, fmt.Errorf("data.branch_clients: %w", err))
			}
		}
		if c.CommitteeSize > b.Count && b.Count > 0 {
			errs = append(errs, fmt.Errorf("committee_size: %d, but the committee comes from the %d data.branch_clients", c.CommitteeSize, b.Count))
		}
	}
	if c.Attack.Enabled() {
		if err := c.Attack.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Failures.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Personalization.Epochs < 0 {
		errs = append(errs, fmt.Errorf("personalization.epochs: must not be negative, got %d", c.Personalization.Epochs))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers: must not be negative, got %d", c.Workers))
	}
	if err := c.PrivacyAudit.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Run.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
