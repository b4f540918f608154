package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/fedprop/fedprop/client"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/dataset/parquet"
	"github.com/fedprop/fedprop/ops/telemetry"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/privacy"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// clientConfig is configs/client.yaml.
type clientConfig struct {
	// ID is the client's name, unique in the federation.
	ID string `yaml:"id"`
	// Coordinator is the coordinator's gRPC address.
	Coordinator string `yaml:"coordinator"`
	// Schema is the data schema (it must match the run's).
	Schema string `yaml:"schema"`
	// Data is the local CSV of customer records.
	Data string `yaml:"data"`
	// EvalData is an optional CSV of held-out records for federated evaluation; without it,
	// HoldoutFraction of Data is held out (seeded by Seed).
	EvalData        string  `yaml:"eval_data"`
	HoldoutFraction float64 `yaml:"holdout_fraction"`
	Seed            uint64  `yaml:"seed"`
	// PollWait is how long one long poll may wait for a task.
	PollWait time.Duration `yaml:"poll_wait"`
	// MaxBackoff caps the retry delay when the coordinator is unreachable.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Insecure dials in plaintext; otherwise TLS is the client's kit (see ca.go).
	Insecure bool     `yaml:"insecure"`
	TLS      tlsFiles `yaml:"tls"`
	// SecureAggregation is the client's side of secure aggregation.
	SecureAggregation clientSecAggConfig `yaml:"secure_aggregation"`
	// Privacy is the client's own privacy floor: tasks weaker than it are declined, and as a
	// committee member it helps decrypt only aggregates that carry at least its noise.
	Privacy privacy.Floor `yaml:"privacy"`
	// Metrics is the Prometheus endpoint (metrics.go); off by default.
	Metrics metricsConfig `yaml:"metrics"`
}

// defaultStateRoot holds each client's state directory when secure_aggregation.state_dir is
// not set.
const defaultStateRoot = "fedprop-client-state"

func defaultClientConfig() clientConfig {
	return clientConfig{
		Coordinator:       "127.0.0.1:7070",
		HoldoutFraction:   0.2,
		Seed:              1,
		PollWait:          20 * time.Second,
		MaxBackoff:        15 * time.Second,
		SecureAggregation: clientSecAggConfig{Mode: coordinator.SecAggNone, MinContributors: 2},
	}
}

func newClientCmd(g *globals) *cobra.Command {
	var configPath string
	var securityKeys, metricsKeys map[string]string
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Run a branch client: connect out, train on local records, send protected sums",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := defaultClientConfig()
			keys := map[string]string{"id": "id", "coordinator": "coordinator", "data": "data", "schema": "schema", "eval-data": "eval_data"}
			if err := loadConfig(configPath, &cfg, cmd.Flags(), mergeKeys(mergeKeys(keys, securityKeys), metricsKeys)); err != nil {
				return err
			}
			return runClient(cmd.Context(), g, cfg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "client config file (YAML)")
	cmd.Flags().String("id", "", "client id (config id, env FEDPROP_ID)")
	cmd.Flags().String("coordinator", "", "coordinator address (config coordinator, env FEDPROP_COORDINATOR)")
	cmd.Flags().String("data", "", "local CSV (config data, env FEDPROP_DATA)")
	cmd.Flags().String("schema", "", "schema file (config schema, env FEDPROP_SCHEMA)")
	cmd.Flags().String("eval-data", "", "held-out CSV (config eval_data, env FEDPROP_EVAL_DATA)")
	securityKeys = clientSecurityFlags(cmd.Flags())
	metricsKeys = metricsFlags(cmd.Flags())
	return cmd
}

func (c clientConfig) validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("id: required"))
	}
	if c.Coordinator == "" {
		errs = append(errs, errors.New("coordinator: required"))
	}
	if c.Schema == "" {
		errs = append(errs, errors.New("schema: required"))
	}
	if c.Data == "" {
		errs = append(errs, errors.New("data: required"))
	}
	if c.EvalData == "" && (c.HoldoutFraction < 0 || c.HoldoutFraction >= 1) {
		errs = append(errs, fmt.Errorf("holdout_fraction: must be in [0, 1), got %v", c.HoldoutFraction))
	}
	if c.PollWait <= 0 {
		errs = append(errs, fmt.Errorf("poll_wait: must be positive, got %v", c.PollWait))
	}
	if err := checkTransport(c.Insecure, c.TLS.files()); err != nil {
		errs = append(errs, err)
	}
	if err := c.Privacy.Validate("privacy."); err != nil {
		errs = append(errs, err)
	}
	if err := c.Metrics.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	return nil
}

// loadClientData reads the client's records and splits off its held-out rows.
func loadClientData(ctx context.Context, cfg clientConfig) (*dataset.Schema, *dataset.Dataset, *dataset.Dataset, error) {
	schema, err := dataset.LoadSchema(cfg.Schema)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: schema: %w", coordinator.ErrBadConfig, err)
	}
	// CSV or Parquet, by the schema's format or the file's extension.
	all, err := parquet.Read(ctx, cfg.Data, schema, dataset.ReadOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	if cfg.EvalData != "" {
		eval, err := parquet.Read(ctx, cfg.EvalData, schema, dataset.ReadOptions{})
		if err != nil {
			return nil, nil, nil, err
		}
		return schema, all, eval, nil
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x401d))
	var train, eval []int
	for i := range all.Len() {
		if rng.Float64() < cfg.HoldoutFraction {
			eval = append(eval, i)
		} else {
			train = append(train, i)
		}
	}
	tr, ev := all.Subset(train), all.Subset(eval)
	tr.ExcludedNoConsent = all.ExcludedNoConsent
	return schema, tr, ev, nil
}

func runClient(ctx context.Context, g *globals, cfg clientConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	schema, train, eval, err := loadClientData(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("local data loaded", "client", cfg.ID, "file", cfg.Data, "train_rows", train.Len(), "eval_rows", eval.Len(),
		"excluded_no_consent", train.ExcludedNoConsent+eval.ExcludedNoConsent, "consent_tracked", schema.Consent.Tracked)
	if cfg.SecureAggregation.StateDir == "" {
		// One directory per client, so that clients started from the same directory never
		// share a ledger or a key.
		cfg.SecureAggregation.StateDir = filepath.Join(defaultStateRoot, cfg.ID)
	}
	if err := cfg.SecureAggregation.validate(); err != nil {
		return err
	}
	kit := cfg.TLS.files()
	if cfg.Insecure {
		kit = pki.TLSFiles{}
	}
	opts, err := cfg.SecureAggregation.sessionOptions(cfg.Privacy, kit, log)
	if err != nil {
		return err
	}
	session, err := client.NewSession(cfg.ID, schema, train, eval, opts)
	if err != nil {
		return err
	}
	conn, err := dialCoordinator(log, cfg.Coordinator, cfg.Insecure, cfg.TLS.files(), cfg.ID)
	if err != nil {
		return err
	}
	defer conn.Close()
	var coord client.Coordinator = grpctransport.NewClient(conn)
	var metrics *telemetry.ClientMetrics
	metricsLis, err := cfg.Metrics.listen(log)
	if err != nil {
		return err
	}
	if metricsLis != nil {
		metrics = telemetry.NewClientMetrics()
		coord = metrics.Instrument(coord)
	}
	agent := client.NewAgent(coord, session, client.AgentConfig{
		PollWait: cfg.PollWait, MaxBackoff: cfg.MaxBackoff, SoftwareVersion: version, Logger: log,
	})
	if f := cfg.Privacy.WithDefaults(); f.Enforced() {
		log.Info("privacy floor", "require", f.Require, "min_noise_multiplier", f.MinNoiseMultiplier, "max_clip_norm", f.MaxClipNorm,
			"max_epsilon", f.MaxEpsilon, "delta", f.Delta, "max_expected_contributors", f.MaxExpectedContributors)
	} else {
		log.Warn("no privacy floor: this client accepts tasks without differential privacy (set privacy.require to refuse them)")
	}
	log.Info("client connecting", "client", cfg.ID, "coordinator", cfg.Coordinator)
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return agent.Run(ctx) })
	if metricsLis != nil {
		eg.Go(func() error { return telemetry.Serve(ctx, metricsLis, metrics.Handler()) })
	}
	err = eg.Wait()
	if errors.Is(err, context.Canceled) {
		log.Info("client stopped", "client", cfg.ID)
		return nil
	}
	var pe *client.PermanentError
	if errors.As(err, &pe) {
		// Retrying cannot fix it: the configuration must change (a kit from another CA,
		// --insecure against TLS, a wrong address, another schema), so it exits as bad
		// configuration does, with the hint on the error's one line.
		return usageError{clientStopped{id: cfg.ID, err: pe}}
	}
	return err
}

// clientStopped is a client agent that stopped for good (client.PermanentError). Its message
// is one line ending in the hint, whatever a TLS or gRPC error below it holds.
type clientStopped struct {
	id  string
	err *client.PermanentError
}

func (e clientStopped) Error() string {
	return "client " + e.id + " stopped: " + strings.Join(strings.Fields(e.err.Error()), " ")
}

func (e clientStopped) Unwrap() error { return e.err }
