package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/fedprop/fedprop/console"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/crashpoint"
	"github.com/fedprop/fedprop/ops/telemetry"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/store/postgres"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// coordinatorConfig is configs/coordinator.yaml.
type coordinatorConfig struct {
	// Listen is the gRPC address.
	Listen string `yaml:"listen"`
	// Store is the path of the embedded store file, or a postgres:// DSN (replicas).
	Store string `yaml:"store"`
	// ID names this coordinator in clients' logs.
	ID string `yaml:"id"`
	// Tick is the driver's clock resolution.
	Tick time.Duration `yaml:"tick"`
	// Run is the run this coordinator starts (or resumes) at start-up.
	Run coordinator.RunConfig `yaml:"run"`
	// SchemaDir holds the schemas that runs started over the admin service may use: their
	// run.schema is a file name inside it (a relative path, or an absolute one that lies
	// inside it), read at most maxSchemaBytes. Empty refuses every run started over the admin
	// service, since the coordinator then reads no file on a caller's behalf. The start-up
	// run's run.schema above is this file's own path and is read from wherever it points.
	SchemaDir string `yaml:"schema_dir"`
	// AuditLog named the audit log file of an older fedprop. The log now lives in the store,
	// written with the state it records, so the key is refused with a message that says so
	// rather than silently ignored.
	AuditLog string `yaml:"audit_log"`
	// Security is the network edge: insecure, tls.*, max_message_bytes, rate_limit.* (ca.go).
	Security coordinatorSecurity `yaml:",inline"`
	// Metrics is the Prometheus endpoint (metrics.go); off by default.
	Metrics metricsConfig `yaml:"metrics"`
	// Console is the oversight console (console.go); off by default.
	Console consoleConfig `yaml:"console"`
}

func defaultCoordinatorConfig() coordinatorConfig {
	return coordinatorConfig{
		Listen: "127.0.0.1:7070",
		Store:  "fedprop.db",
		ID:     "fedprop-coordinator",
		Tick:   100 * time.Millisecond,

		Run: coordinator.RunConfig{}.WithDefaults(),

		Security: defaultCoordinatorSecurity(),
		Console:  consoleConfig{SessionMaxAge: console.DefaultSessionMaxAge},
	}
}

func newCoordinatorCmd(g *globals) *cobra.Command {
	var configPath string
	var securityKeys, metricsKeys, consoleKeys map[string]string
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run the coordinator: serve clients, aggregate their sums, commit model versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := defaultCoordinatorConfig()
			keys := mergeKeys(mergeKeys(mergeKeys(map[string]string{"listen": "listen", "store": "store"}, securityKeys), metricsKeys), consoleKeys)
			if err := loadConfig(configPath, &cfg, cmd.Flags(), keys); err != nil {
				return err
			}
			return runCoordinator(cmd.Context(), g, cfg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "coordinator config file (YAML)")
	cmd.Flags().String("listen", "", "gRPC listen address (config listen, env FEDPROP_LISTEN)")
	cmd.Flags().String("store", "", "embedded store file, or a postgres:// DSN for replicas (config store, env FEDPROP_STORE)")
	securityKeys = coordinatorSecurityFlags(cmd.Flags())
	metricsKeys = metricsFlags(cmd.Flags())
	consoleKeys = consoleFlags(cmd.Flags())
	return cmd
}

// maxSchemaBytes bounds a schema file: a schema is a few kilobytes of YAML, and a run's
// schema is stored with it.
const maxSchemaBytes = 1 << 20

// errNoSuchSchema is the one answer to an admin's run.schema that names no readable schema
// file inside schema_dir, whatever the reason: outside the directory (decided from the name
// alone, before the file system is touched), missing, unreadable, a link out of it, not a
// regular file. The caller learns nothing about paths elsewhere on the coordinator.
var errNoSuchSchema = errors.New("no readable schema file of that name in the coordinator's schema_dir")

// loadRunSpec validates a run config and reads its schema with readSchema.
func loadRunSpec(rc coordinator.RunConfig, readSchema func(name string) ([]byte, error)) (coordinator.RunSpec, error) {
	rc = rc.WithDefaults()
	if err := rc.Validate(); err != nil {
		return coordinator.RunSpec{}, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	if rc.Schema == "" {
		return coordinator.RunSpec{}, fmt.Errorf("%w: run.schema: required (the data schema every client uses)", coordinator.ErrBadConfig)
	}
	doc, err := readSchema(rc.Schema)
	if err != nil {
		return coordinator.RunSpec{}, fmt.Errorf("%w: run.schema: %w", coordinator.ErrBadConfig, err)
	}
	schema, err := dataset.ParseSchema(rc.Schema, doc)
	if err != nil {
		return coordinator.RunSpec{}, fmt.Errorf("%w: run.schema: %w", coordinator.ErrBadConfig, err)
	}
	return coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc}, nil
}

// readSchemaFile reads the operator's own schema file (the start-up run's run.schema): any
// path, but only a regular file of at most maxSchemaBytes.
func readSchemaFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path) // #nosec G304 -- the operator's configuration names it
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, path)
}

// readCapped reads r, refusing more than maxSchemaBytes without reading further.
func readCapped(r io.Reader, name string) ([]byte, error) {
	doc, err := io.ReadAll(io.LimitReader(r, maxSchemaBytes+1))
	if err != nil {
		return nil, err
	}
	if len(doc) > maxSchemaBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a schema", name, maxSchemaBytes)
	}
	return doc, nil
}

// schemaReader reads a schema an admin names over the network: only a regular file inside
// dir, by a name that stays inside it (no "..", no symbolic link out: os.Root), of at most
// maxSchemaBytes. Every failure but a file inside dir that is too large reads as
// errNoSuchSchema.
func schemaReader(dir string) func(name string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if dir == "" {
			return nil, errors.New("this coordinator accepts no run over the admin service: set schema_dir in its configuration to the directory of the schemas runs may use")
		}
		shown := clipValue(name)
		rel := name
		if filepath.IsAbs(name) {
			abs, err := filepath.Abs(dir)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", shown, errNoSuchSchema)
			}
			if rel, err = filepath.Rel(abs, filepath.Clean(name)); err != nil {
				return nil, fmt.Errorf("%q: %w", shown, errNoSuchSchema)
			}
		}
		if !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("%q: %w", shown, errNoSuchSchema)
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", shown, errNoSuchSchema)
		}
		defer root.Close()
		// Stat before opening: opening a FIFO would block and a device would never end.
		if info, err := root.Stat(rel); err != nil || !info.Mode().IsRegular() {
			return nil, fmt.Errorf("%q: %w", shown, errNoSuchSchema)
		}
		f, err := root.Open(rel)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", shown, errNoSuchSchema)
		}
		defer f.Close()
		return readCapped(f, fmt.Sprintf("%q", shown))
	}
}

// clipValue shortens a caller's string before an error quotes it.
func clipValue(s string) string {
	const keep = 128
	if len(s) <= keep {
		return s
	}
	return s[:keep] + "..."
}

// specLoader is StartRun's: the request's YAML is the run section, and its schema is read
// from schema_dir.
func specLoader(schemaDir string) grpctransport.SpecLoader {
	read := schemaReader(schemaDir)
	return func(doc []byte) (coordinator.RunSpec, error) {
		rc := coordinator.RunConfig{}
		if err := decodeStrict(doc, &rc); err != nil {
			return coordinator.RunSpec{}, err
		}
		return loadRunSpec(rc, read)
	}
}

// validate checks the coordinator's own settings before anything starts.
func (c coordinatorConfig) validate() error {
	if c.AuditLog != "" {
		return fmt.Errorf("%w: audit_log: the audit log now lives in the store (store), written with the state it records: remove this key; fedprop audit export writes the log to a file", coordinator.ErrBadConfig)
	}
	if c.Tick <= 0 {
		// time.NewTicker panics on it.
		return fmt.Errorf("%w: tick: must be a positive duration, got %v", coordinator.ErrBadConfig, c.Tick)
	}
	if err := c.Metrics.validate(); err != nil {
		return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	if err := c.Console.validate(c.Security); err != nil {
		return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	if c.SchemaDir == "" {
		return nil
	}
	info, err := os.Stat(c.SchemaDir)
	if err != nil {
		return fmt.Errorf("%w: schema_dir: %w", coordinator.ErrBadConfig, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("%w: schema_dir: %s is not a directory", coordinator.ErrBadConfig, c.SchemaDir)
	}
	return nil
}

func runCoordinator(ctx context.Context, g *globals, cfg coordinatorConfig) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	spec, err := loadRunSpec(cfg.Run, readSchemaFile)
	if err != nil {
		return err
	}
	edgeOpts, watchDeny, err := cfg.Security.serverOptions(log, cfg.Listen)
	if err != nil {
		return err
	}
	crash, err := crashpoint.FromEnv()
	if err != nil {
		return err
	}
	// Decisions are signed by approvers' certificate keys and checked against the edge's CA.
	var reviewers *pki.Verifier
	if !cfg.Security.Insecure {
		if reviewers, err = pki.LoadVerifier(cfg.Security.TLS.CA); err != nil {
			return fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
		}
	}
	store, ctx, err := openStore(ctx, log, cfg.Store, cfg.ID)
	if err != nil {
		return err
	}
	defer store.Close()
	// The metrics, when their endpoint is on: the driver reports to them, and their
	// interceptors come first so that calls the edge refuses are timed and counted too.
	var (
		metrics  *telemetry.CoordinatorMetrics
		observer coordinator.Observer
	)
	if cfg.Metrics.Listen != "" {
		metrics = telemetry.NewCoordinatorMetrics()
		observer = metrics
		edgeOpts = append(metrics.ServerOptions(), edgeOpts...)
	}
	// The console's federation page: what the edge sees of each client.
	var fed *console.Federation
	if cfg.Console.Listen != "" {
		fed = console.NewFederation(nil)
		edgeOpts = append(edgeOpts, grpctransport.ObserveClients(fed))
	}
	srv, err := coordinator.NewServer(ctx, store, &spec, coordinator.ServerConfig{ID: cfg.ID, TickInterval: cfg.Tick, Logger: log, CrashPoint: crash,
		Reviewers: reviewers, Version: version, Observer: observer})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	metricsLis, err := cfg.Metrics.listen(log)
	if err != nil {
		_ = lis.Close()
		return err
	}
	gs := grpctransport.NewGRPCServer(srv, cfg.ID, specLoader(cfg.SchemaDir), edgeOpts...)
	var serveConsole func(context.Context) error
	if cfg.Console.Listen != "" {
		if serveConsole, err = startConsole(cfg, log, srv, gs, reviewers, fed); err != nil {
			_ = lis.Close()
			if metricsLis != nil {
				_ = metricsLis.Close()
			}
			return err
		}
	}
	log.Info("coordinator listening", "addr", lis.Addr().String(), "store", postgres.Redact(cfg.Store), "run", cfg.Run.ID)
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return grpctransport.Serve(ctx, gs, lis) })
	eg.Go(func() error { return srv.Run(ctx) })
	if metricsLis != nil {
		eg.Go(func() error { return telemetry.Serve(ctx, metricsLis, metrics.Handler()) })
	}
	if serveConsole != nil {
		eg.Go(func() error { return serveConsole(ctx) })
	}
	if watchDeny != nil {
		eg.Go(func() error { return watchDeny(ctx) })
	}
	err = eg.Wait()
	if lost := leadershipLost(ctx); lost != nil {
		return lost
	}
	if errors.Is(err, context.Canceled) {
		log.Info("coordinator stopped")
		return nil
	}
	return err
}
