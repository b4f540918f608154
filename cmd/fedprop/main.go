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
	if _, _, findErr := root.Find(args); findErr != nil {
		// cobra resolves the command line before it runs anything and stops at the first
		// word that names no subcommand; the same lookup failing now means that was the error.
		err = usageError{err}
	}
	fmt.Fprintf(stderr, "fedprop: %v\n", err)
	return exitCode(err)
}

// exitCode is the exit status for an error run returned: 2 for bad usage or configuration,
// 1 for anything else. It is the one place that maps errors to exit codes.
func exitCode(err error) int {
	var ue usageError
	var ace argCountError
	switch {
	case errors.As(err, &ue), errors.As(err, &ace), errors.Is(err, coordinator.ErrBadConfig):
		return 2
	}
	return 1
}

// argCountError is a command given the wrong number of positional arguments (cobra.ExactArgs,
// cobra.MinimumNArgs); see exitCode.
type argCountError struct{ err error }

func (e argCountError) Error() string { return e.err.Error() }
func (e argCountError) Unwrap() error { return e.err }

// typeUsageErrors makes the errors cobra raises about a command line typed, so that exitCode
// tells them apart with errors.As rather than by their text: a flag it cannot parse (unknown,
// missing its value, of the wrong type), a required flag not set, and positional arguments
// the command does not take. An unknown subcommand of the root is typed by run.
func typeUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// cobra checks required flags and flag groups itself, after this hook, with untyped
	// errors; checking them here first types them. cobra runs only the nearest
	// PersistentPreRunE, so a subcommand that sets its own must do the same.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := cmd.ValidateRequiredFlags(); err != nil {
			return usageError{err}
		}
		if err := cmd.ValidateFlagGroups(); err != nil {
			return usageError{err}
		}
		return nil
	}
	// cobra adds its completion command when the root executes; adding it now lets the walk
	// below type its subcommands' argument checks too (cobra then finds it and adds no other).
	root.InitDefaultCompletionCmd()
	typeArgErrors(root)
}

// typeArgErrors wraps the positional-argument check of cmd and of every command below it.
// Arguments given to a command that takes none (cobra.NoArgs, which words this "unknown
// command") name a subcommand it does not have: a usageError. Too many or too few for a
// command that takes some: an argCountError.
func typeArgErrors(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		takesNone := check(cmd, nil) == nil && check(cmd, []string{"x"}) != nil
		cmd.Args = func(c *cobra.Command, args []string) error {
			err := check(c, args)
			switch {
			case err == nil:
				return nil
			case takesNone:
				return usageError{err}
			}
			return argCountError{err}
		}
	}
	for _, sub := range cmd.Commands() {
		typeArgErrors(sub)
	}
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
	// Without a command there is nothing to do: that is bad usage (exit status 2), with the
	// usage on standard error, not a successful run that printed its help. cobra would print
	// the help and succeed for a root with no run of its own; `fedprop --help` still does.
	// An argument that names no command never gets here (see run).
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		fmt.Fprint(stderr, cmd.UsageString())
		return usagef("no command given: name one of the commands above")
	}
	// A root that runs would be listed as a command line of its own ("fedprop [flags]"): it
	// is not one. (Subcommands inherit the template, and have a parent, so theirs is
	// unchanged.)
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .Runnable}}", "{{if and .Runnable .HasParent}}", 1))
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", envOr("FEDPROP_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env FEDPROP_LOG_LEVEL)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", envOr("FEDPROP_LOG_FORMAT", "text"), "log format: text or json (env FEDPROP_LOG_FORMAT)")
	root.AddCommand(
		newCoordinatorCmd(g),
		newClientCmd(g),
		newSimCmd(g),
		newModelCmd(g),
		newRunCmd(g),
		newSynthCmd(g),
		newPrivacyCmd(g),
		newCACmd(g),
		newAuditCmd(g),
		newStoreCmd(g),
		newLoadtestCmd(g),
		newConsoleCmd(g),
	)
	typeUsageErrors(root)
	return root
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
