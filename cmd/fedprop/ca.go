package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// newCACmd is `fedprop ca`: the certificate authority behind mutual TLS.
func newCACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Provision mutual TLS: a certificate authority and one kit per party",
		Long: `fedprop ca creates the federation's certificate authority and issues each party a kit:
ca.pem (the CA every party trusts), NAME.pem (its certificate, carrying its role and name) and
NAME-key.pem (its private key, mode 0600). Keep ca-key.pem on the machine that issues.`,
	}

	var initDir, initName string
	var initValid time.Duration
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a certificate authority: DIR/ca.pem and DIR/ca-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if initDir == "" {
				return usagef("--dir is required")
			}
			ca, err := pki.InitCA(initDir, pki.InitOptions{Name: initName, ValidFor: initValid})
			if err != nil {
				return caError(err)
			}
			c := ca.Certificate()
			fmt.Fprintf(g.stdout, "created CA %q in %s (valid until %s)\n  %s: give to every party\n  %s: keep secret; needed to issue\n",
				c.Subject.CommonName, initDir, c.NotAfter.UTC().Format(time.RFC3339), pki.CACertFile, pki.CAKeyFile)
			return nil
		},
	}
	initCmd.Flags().StringVar(&initDir, "dir", "", "directory for the CA's files (created, mode 0700)")
	initCmd.Flags().StringVar(&initName, "name", "fedprop", "the CA's name (its certificate's CommonName is NAME CA)")
	initCmd.Flags().DurationVar(&initValid, "valid-for", pki.DefaultCAValidity, "the CA's lifetime")

	var issueDir, issueOut, issueRole, issueName string
	var issueHosts []string
	var issueValid time.Duration
	issueCmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a party's kit: ca.pem, NAME.pem and NAME-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if issueDir == "" || issueName == "" || issueRole == "" {
				return usagef("--dir, --role and --name are required")
			}
			role, err := pki.ParseRole(issueRole)
			if err != nil {
				return usagef("--role: %v", err)
			}
			ca, err := pki.LoadCA(issueDir)
			if err != nil {
				return caError(err)
			}
			cred, err := ca.Issue(pki.IssueRequest{Role: role, Name: issueName, Hosts: issueHosts, ValidFor: issueValid})
			if err != nil {
				return caError(err)
			}
			out := issueOut
			if out == "" {
				out = issueDir
			}
			kit, err := ca.WriteKit(out, cred)
			if err != nil {
				return caError(err)
			}
			c := cred.Certificate
			fmt.Fprintf(g.stdout, "issued %s certificate for %s: serial %s, valid until %s\n", role, issueName, cred.Identity.Serial, c.NotAfter.UTC().Format(time.RFC3339))
			if len(c.DNSNames)+len(c.IPAddresses) > 0 {
				hosts := append([]string{}, c.DNSNames...)
				for _, ip := range c.IPAddresses {
					hosts = append(hosts, ip.String())
				}
				fmt.Fprintf(g.stdout, "  hosts: %s\n", strings.Join(hosts, ", "))
			}
			fmt.Fprintf(g.stdout, "  tls.ca:   %s\n  tls.cert: %s\n  tls.key:  %s\n", kit.CA, kit.Cert, kit.Key)
			fmt.Fprintf(g.stdout, "to revoke: fedprop ca revoke --deny-list FILE %s   (or serial:%s)\n", issueName, cred.Identity.Serial)
			return nil
		},
	}
	issueCmd.Flags().StringVar(&issueDir, "dir", "", "the CA's directory (from fedprop ca init)")
	issueCmd.Flags().StringVar(&issueOut, "out", "", "directory for the kit (default: --dir)")
	issueCmd.Flags().StringVar(&issueRole, "role", "", "client, coordinator, owner, approver or admin")
	issueCmd.Flags().StringVar(&issueName, "name", "", "the party's name: a client's id, a coordinator's host name, a person's login")
	issueCmd.Flags().StringSliceVar(&issueHosts, "host", nil, "coordinator only: DNS name or IP address clients dial (repeatable; default localhost,127.0.0.1,::1)")
	issueCmd.Flags().DurationVar(&issueValid, "valid-for", pki.DefaultCertValidity, "the certificate's lifetime (cut to the CA's)")

	var denyPath string
	revokeCmd := &cobra.Command{
		Use:   "revoke ENTRY...",
		Short: "Add certificate names or serial numbers to a deny list (a running coordinator re-reads it)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if denyPath == "" {
				return usagef("--deny-list is required")
			}
			lines := strings.Join(args, "\n") + "\n"
			if _, err := pki.ParseDenyList([]byte(lines), "arguments"); err != nil {
				return usagef("%v", err)
			}
			f, err := os.OpenFile(denyPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600) // #nosec G304 -- the operator names the deny list
			if err != nil {
				return err
			}
			if _, err := f.WriteString(lines); err != nil {
				_ = f.Close()
				return fmt.Errorf("append to %s: %w", denyPath, err)
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "added %d entries to %s; coordinators watching it refuse them within %v\n", len(args), denyPath, pki.DefaultDenyListPoll)
			return nil
		},
	}
	revokeCmd.Flags().StringVar(&denyPath, "deny-list", "", "the deny list file a coordinator reads (tls.deny_list)")

	cmd.AddCommand(initCmd, issueCmd, revokeCmd)
	return cmd
}

// caError makes a refused name, role or host a usage error (exit 2).
func caError(err error) error {
	if errors.Is(err, pki.ErrInvalid) {
		return usageError{err}
	}
	return err
}

// tlsFiles are the tls.* keys of a client's or model owner's configuration.
type tlsFiles struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

func (f tlsFiles) files() pki.TLSFiles { return pki.TLSFiles{CA: f.CA, Cert: f.Cert, Key: f.Key} }

// coordinatorTLS are the coordinator's tls.* keys.
type coordinatorTLS struct {
	tlsFiles `yaml:",inline"`
	// DenyList is a file of revoked certificate names and serial numbers, re-read while the
	// coordinator runs.
	DenyList string `yaml:"deny_list"`
}

// rateLimitConfig is the coordinator's rate_limit.* keys.
type rateLimitConfig struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// coordinatorSecurity is the coordinator's edge: top-level keys insecure, tls.*,
// max_message_bytes and rate_limit.*.
type coordinatorSecurity struct {
	// Insecure serves plaintext with no authentication; it must be asked for explicitly.
	Insecure bool           `yaml:"insecure"`
	TLS      coordinatorTLS `yaml:"tls"`
	// MaxMessageBytes bounds one request message.
	MaxMessageBytes int             `yaml:"max_message_bytes"`
	RateLimit       rateLimitConfig `yaml:"rate_limit"`
}

func defaultCoordinatorSecurity() coordinatorSecurity {
	def := grpctransport.DefaultRateLimit() // see there for why these numbers
	return coordinatorSecurity{MaxMessageBytes: 16 << 20, RateLimit: rateLimitConfig{PerSecond: def.PerSecond, Burst: def.Burst}}
}

// coordinatorSecurityFlags adds the edge's flags; the returned map binds them to their keys.
func coordinatorSecurityFlags(fs *pflag.FlagSet) map[string]string {
	fs.Bool("insecure", false, "serve plaintext gRPC with no authentication; logs a warning (config insecure, env FEDPROP_INSECURE)")
	fs.String("tls-ca", "", "CA certificate clients' certificates must chain to (config tls.ca, env FEDPROP_TLS_CA)")
	fs.String("tls-cert", "", "the coordinator's certificate (config tls.cert, env FEDPROP_TLS_CERT)")
	fs.String("tls-key", "", "the coordinator's private key (config tls.key, env FEDPROP_TLS_KEY)")
	fs.String("tls-deny-list", "", "revoked certificate names and serials, re-read while running (config tls.deny_list, env FEDPROP_TLS_DENY_LIST)")
	return map[string]string{"insecure": "insecure", "tls-ca": "tls.ca", "tls-cert": "tls.cert", "tls-key": "tls.key", "tls-deny-list": "tls.deny_list"}
}

// clientSecurityFlags adds the flags of a party that dials a coordinator.
func clientSecurityFlags(fs *pflag.FlagSet) map[string]string {
	fs.Bool("insecure", false, "dial in plaintext with no certificate; logs a warning (config insecure, env FEDPROP_INSECURE)")
	fs.String("tls-ca", "", "CA certificate the coordinator's must chain to (config tls.ca, env FEDPROP_TLS_CA)")
	fs.String("tls-cert", "", "this party's certificate (config tls.cert, env FEDPROP_TLS_CERT)")
	fs.String("tls-key", "", "this party's private key (config tls.key, env FEDPROP_TLS_KEY)")
	return map[string]string{"insecure": "insecure", "tls-ca": "tls.ca", "tls-cert": "tls.cert", "tls-key": "tls.key"}
}

// mergeKeys adds more flag bindings to keys.
func mergeKeys(keys map[string]string, more map[string]string) map[string]string {
	for k, v := range more {
		keys[k] = v
	}
	return keys
}

// checkTransport refuses a configuration that is neither mutual TLS nor explicitly insecure.
func checkTransport(insecure bool, files pki.TLSFiles, extra ...string) error {
	switch {
	case insecure && (files.Set() || len(extra) > 0):
		return errors.New("insecure is set together with tls.* keys; choose one")
	case insecure:
		return nil
	}
	if missing := files.Missing(); len(missing) > 0 {
		return fmt.Errorf("%s: required for mutual TLS (fedprop ca issue makes them); plaintext needs an explicit insecure: true (--insecure)",
			strings.Join(missing, ", "))
	}
	return checkKeyFile("tls.key", files.Key)
}

// checkKeyFile refuses a private key file that its group or others may read or write: such a
// key is as good as shared, and the party should not start with it. A file that cannot be
// statted is left to the TLS loader, which names it.
func checkKeyFile(key, path string) error {
	if runtime.GOOS == "windows" {
		return nil // no POSIX permission bits
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: %s has mode %04o, which gives its group or others access to the private key: chmod 600 %s (a Kubernetes secret volume: defaultMode 0400)",
			key, path, perm, path)
	}
	return nil
}

// serverOptions validates the edge and builds the gRPC server options. run, when not nil,
// keeps the deny list current until ctx ends: it polls the file and reloads on SIGHUP.
func (s coordinatorSecurity) serverOptions(log *slog.Logger, listen string) (opts []grpc.ServerOption, run func(ctx context.Context) error, err error) {
	var extra []string
	if s.TLS.DenyList != "" {
		extra = append(extra, "tls.deny_list")
	}
	if err := checkTransport(s.Insecure, s.TLS.files(), extra...); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	if s.MaxMessageBytes < 0 {
		return nil, nil, fmt.Errorf("%w: max_message_bytes: must be >= 0, got %d", coordinator.ErrBadConfig, s.MaxMessageBytes)
	}
	edge := grpctransport.Edge{
		RateLimit:       grpctransport.RateLimit{PerSecond: s.RateLimit.PerSecond, Burst: s.RateLimit.Burst},
		MaxRecvMsgBytes: s.MaxMessageBytes,
		Logger:          log,
	}
	if err := edge.RateLimit.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	if s.Insecure {
		log.Warn("INSECURE: serving plaintext gRPC with no authentication (--insecure): anyone who reaches this address can act as any client, pull every model and start runs",
			"listen", listen)
	} else {
		deny, err := pki.LoadDenyList(s.TLS.DenyList)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: tls.deny_list: %w", coordinator.ErrBadConfig, err)
		}
		if edge.TLS, err = pki.ServerTLSConfig(s.TLS.files()); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
		}
		edge.Revoked = deny.Revoked
		log.Info("mutual TLS 1.3: callers need a certificate from the CA; roles are checked per method", "ca", s.TLS.CA,
			"deny_list", s.TLS.DenyList, "revoked_entries", deny.Len())
		if s.TLS.DenyList != "" {
			run = func(ctx context.Context) error { watchDenyList(ctx, deny, log); return nil }
		}
	}
	opts, err = edge.ServerOptions()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	return opts, run, nil
}

// watchDenyList keeps deny current until ctx ends: pki.DenyList.Refresh polls the file and
// re-reads it on SIGHUP, which this process routes to it.
func watchDenyList(ctx context.Context, deny *pki.DenyList, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	deny.Refresh(ctx, pki.DefaultDenyListPoll, hup, log)
}

// dialCoordinator connects a client or model owner: mutual TLS with its kit, or plaintext
// (with a warning) when insecure. When wantName is set the certificate must be a client's of
// that name, so that a misconfigured branch fails at start rather than on every call.
func dialCoordinator(log *slog.Logger, addr string, insecure bool, files pki.TLSFiles, wantName string) (*grpc.ClientConn, error) {
	if err := checkTransport(insecure, files); err != nil {
		return nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	if insecure {
		log.Warn("INSECURE: dialling the coordinator in plaintext with no certificate (--insecure): updates and models cross the network unprotected",
			"coordinator", addr)
		return grpctransport.Dial(addr)
	}
	if wantName != "" {
		cfg, err := pki.ClientTLSConfig(files)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
		}
		id, err := pki.IdentityOf(cfg.Certificates[0].Leaf)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.cert: %w", coordinator.ErrBadConfig, err)
		}
		if id.Role != pki.RoleClient || id.Name != wantName {
			return nil, fmt.Errorf("%w: tls.cert %s is for %s, but this client's id is %q: the coordinator would refuse every call",
				coordinator.ErrBadConfig, files.Cert, id, wantName)
		}
	}
	conn, err := grpctransport.DialTLS(addr, files)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	return conn, nil
}

// modelDialer holds the model command's transport flags; env FEDPROP_* supply defaults.
type modelDialer struct {
	insecure bool
	files    pki.TLSFiles
}

func (d *modelDialer) flags(fs *pflag.FlagSet) {
	fs.BoolVar(&d.insecure, "insecure", false, "dial in plaintext with no certificate; logs a warning (env FEDPROP_INSECURE)")
	fs.StringVar(&d.files.CA, "tls-ca", os.Getenv("FEDPROP_TLS_CA"), "CA certificate (env FEDPROP_TLS_CA)")
	fs.StringVar(&d.files.Cert, "tls-cert", os.Getenv("FEDPROP_TLS_CERT"), "your certificate: an owner's, approver's or admin's, as the command needs (env FEDPROP_TLS_CERT)")
	fs.StringVar(&d.files.Key, "tls-key", os.Getenv("FEDPROP_TLS_KEY"), "its private key (env FEDPROP_TLS_KEY)")
}

func (d *modelDialer) dial(cmd *cobra.Command, g *globals, addr string) (*grpc.ClientConn, error) {
	insecure := d.insecure
	if f := cmd.Flags().Lookup("insecure"); f == nil || !f.Changed {
		if v, ok := os.LookupEnv("FEDPROP_INSECURE"); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, usagef("FEDPROP_INSECURE: %q is not true or false", v)
			}
			insecure = b
		}
	}
	log, err := g.logger()
	if err != nil {
		return nil, err
	}
	return dialCoordinator(log, addr, insecure, d.files, "")
}
