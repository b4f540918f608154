// Command fedprop is fedprop's single binary: one subcommand per role.
//
//	fedprop coordinator --config configs/coordinator.yaml
//	fedprop client      --config configs/client.yaml
//	fedprop sim         --config configs/sim-synthetic.yaml --out out/demo
//	fedprop model       list | pull | score
//	fedprop synth       --out data/ --branches 3
//	fedprop ca          init | issue | revoke
//
// Configuration comes from a YAML file, FEDPROP_* environment variables and flags, in
// increasing precedence. Exit status: 0 success, 1 runtime failure, 2 bad usage or config.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fedprop/fedprop/coordinator"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// usageError marks bad usage or configuration: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "fedprop: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, coordinator.ErrBadConfig) || isCobraUsage(err) {
		return 2
	}
	return 1
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "flag needs an argument") ||
		strings.HasPrefix(msg, "invalid argument") || strings.HasPrefix(msg, "required flag")
}

// globals are the settings every subcommand shares.
type globals struct {
	stdout, stderr io.Writer
	logLevel       string
	logFormat      string
}

func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usagef("--log-level: %q is not debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, usagef("--log-format: %q is not text or json", g.logFormat)
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "fedprop",
		Short: "Federated propensity models for banks",
		Long: `fedprop trains propensity models by federated learning: branches and app clients train on
their own customers' records and send only protected sums; a coordinator aggregates them into a
global model that model owners pull with its metrics.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", envOr("FEDPROP_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env FEDPROP_LOG_LEVEL)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", envOr("FEDPROP_LOG_FORMAT", "text"), "log format: text or json (env FEDPROP_LOG_FORMAT)")
	root.AddCommand(
		newCoordinatorCmd(g),
		newClientCmd(g),
		newSimCmd(g),
		newModelCmd(g),
		newSynthCmd(g),
		newPrivacyCmd(g),
		newCACmd(g),
		newAuditCmd(g),
		newStoreCmd(g),
		newLoadtestCmd(g),
	)
	return root
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
