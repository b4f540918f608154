package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/fedprop/fedprop/audit"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/dataset"
	"github.com/fedprop/fedprop/internal/crashpoint"
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
	// AuditLog is the hash-chained audit log of runs, commits, approvals and rejections;
	// empty means beside the embedded store (STORE.audit.jsonl), or fedprop-audit.jsonl with
	// a PostgreSQL store.
	AuditLog string `yaml:"audit_log"`
	// Security is the network edge: insecure, tls.*, max_message_bytes, rate_limit.* (ca.go).
	Security coordinatorSecurity `yaml:",inline"`
}

func defaultCoordinatorConfig() coordinatorConfig {
	return coordinatorConfig{
		Listen: "127.0.0.1:7070",
		Store:  "fedprop.db",
		ID:     "fedprop-coordinator",
		Tick:   100 * time.Millisecond,

		Run: coordinator.RunConfig{}.WithDefaults(),

		Security: defaultCoordinatorSecurity(),
	}
}

func newCoordinatorCmd(g *globals) *cobra.Command {
	var configPath string
	var securityKeys map[string]string
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run the coordinator: serve clients, aggregate their sums, commit model versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := defaultCoordinatorConfig()
			if err := loadConfig(configPath, &cfg, cmd.Flags(), mergeKeys(map[string]string{"listen": "listen", "store": "store"}, securityKeys)); err != nil {
				return err
			}
			return runCoordinator(cmd.Context(), g, cfg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "coordinator config file (YAML)")
	cmd.Flags().String("listen", "", "gRPC listen address (config listen, env FEDPROP_LISTEN)")
	cmd.Flags().String("store", "", "embedded store file, or a postgres:// DSN for replicas (config store, env FEDPROP_STORE)")
	securityKeys = coordinatorSecurityFlags(cmd.Flags())
	return cmd
}

// loadRunSpec validates a run config and reads its schema.
func loadRunSpec(rc coordinator.RunConfig) (coordinator.RunSpec, error) {
	rc = rc.WithDefaults()
	if err := rc.Validate(); err != nil {
		return coordinator.RunSpec{}, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	if rc.Schema == "" {
		return coordinator.RunSpec{}, fmt.Errorf("%w: run.schema: required (the data schema every client uses)", coordinator.ErrBadConfig)
	}
	doc, err := os.ReadFile(rc.Schema)
	if err != nil {
		return coordinator.RunSpec{}, fmt.Errorf("%w: run.schema: %w", coordinator.ErrBadConfig, err)
	}
	schema, err := dataset.ParseSchema(rc.Schema, doc)
	if err != nil {
		return coordinator.RunSpec{}, fmt.Errorf("%w: run.schema: %w", coordinator.ErrBadConfig, err)
	}
	return coordinator.RunSpec{Config: rc, Schema: schema, SchemaYAML: doc}, nil
}

func runCoordinator(ctx context.Context, g *globals, cfg coordinatorConfig) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	spec, err := loadRunSpec(cfg.Run)
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
	store, ctx, err := openStore(ctx, log, cfg.Store, cfg.ID)
	if err != nil {
		return err
	}
	defer store.Close()
	srv, err := coordinator.NewServer(ctx, store, &spec, coordinator.ServerConfig{ID: cfg.ID, TickInterval: cfg.Tick, Logger: log, CrashPoint: crash,
		Audit: audit.NewFileStore(auditLogPath(cfg)), Version: version})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	gs := grpctransport.NewGRPCServer(srv, cfg.ID, func(doc []byte) (coordinator.RunSpec, error) {
		rc := coordinator.RunConfig{}
		if err := decodeStrict(doc, &rc); err != nil {
			return coordinator.RunSpec{}, err
		}
		return loadRunSpec(rc)
	}, edgeOpts...)
	log.Info("coordinator listening", "addr", lis.Addr().String(), "store", postgres.Redact(cfg.Store), "run", cfg.Run.ID)
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return grpctransport.Serve(ctx, gs, lis) })
	eg.Go(func() error { return srv.Run(ctx) })
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

// auditLogPath is where the audit log lives: audit_log, or beside the embedded store.
func auditLogPath(cfg coordinatorConfig) string {
	switch {
	case cfg.AuditLog != "":
		return cfg.AuditLog
	case strings.HasPrefix(cfg.Store, "postgres://"), strings.HasPrefix(cfg.Store, "postgresql://"):
		return "fedprop-audit.jsonl"
	}
	return cfg.Store + ".audit.jsonl"
}
