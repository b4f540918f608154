package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/fedprop/fedprop/console"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// defaultConsoleValidity is how long a console session lasts unless --valid-for says otherwise.
const defaultConsoleValidity = time.Hour

// newConsoleCmd is `fedprop console`: sign-in to the coordinator's oversight console.
func newConsoleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Sign in to the coordinator's oversight console (a web console for owners, approvers and admins)",
	}
	var addr, consoleURL string
	var validFor time.Duration
	var dialer modelDialer
	login := &cobra.Command{
		Use:   "login",
		Short: "Print a one-time sign-in link for the oversight console",
		Long: `fedprop console login signs you in to the coordinator's oversight console with your own
certificate kit (an owner's, approver's or admin's from fedprop ca issue).

It makes a fresh ECDSA P-256 session key on this machine, signs a delegation of signing to it
with your certificate's key (valid for --valid-for, at most 8h), sends the delegation to the
coordinator over mutual TLS, and prints a link:

  https://CONSOLE/login?token=TOKEN#key=SESSION-KEY

The token is single use and expires in a few minutes. The session key travels in the link's
fragment, which browsers never send to a server: the coordinator never holds it. Open the link
in your browser; an approver's decisions in the console are signed by that key under your
delegation, and the audit log keeps both. Treat the link like a password until you have
opened it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if validFor <= 0 || validFor > pki.MaxDelegation {
				return usagef("--valid-for: %v is not in (0, %v]", validFor, pki.MaxDelegation)
			}
			base, err := consoleBase(consoleURL, addr)
			if err != nil {
				return usagef("--console: %v", err)
			}
			if missing := dialer.files.Missing(); len(missing) > 0 {
				return usagef("%s: required: the console session acts for your certificate, whose key signs the delegation",
					strings.Join(missing, ", "))
			}
			signer, err := pki.LoadSigner(dialer.files)
			if err != nil {
				return usagef("%v", err)
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			now := time.Now()
			d, err := signer.Delegate(&key.PublicKey, now.Add(validFor), now)
			if err != nil {
				return err
			}
			pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			conn, err := dialer.dial(cmd, g, addr)
			if err != nil {
				return err
			}
			defer conn.Close()
			t, err := grpctransport.NewConsoleClient(conn).Login(cmd.Context(), d)
			if err != nil {
				return fmt.Errorf("console login at %s: %w", addr, err)
			}
			link := base.JoinPath("login")
			link.RawQuery = url.Values{"token": {t.Token}}.Encode()
			link.Fragment = "key=" + base64.RawURLEncoding.EncodeToString(pkcs8)
			fmt.Fprintln(g.stdout, link.String())
			fmt.Fprintf(g.stderr, "open this link once, before %s; the session acts for %s until %s\n",
				t.Expires.UTC().Format(time.RFC3339), t.Identity, t.SessionExpires.UTC().Format(time.RFC3339))
			return nil
		},
	}
	login.Flags().StringVar(&addr, "coordinator", envOr("FEDPROP_COORDINATOR", "127.0.0.1:7070"), "coordinator gRPC address (env FEDPROP_COORDINATOR)")
	login.Flags().StringVar(&consoleURL, "console", envOr("FEDPROP_CONSOLE", ""),
		"the console's address as your browser reaches it: https://HOST:PORT or HOST:PORT (default: the coordinator's host, port 7443; env FEDPROP_CONSOLE)")
	login.Flags().DurationVar(&validFor, "valid-for", defaultConsoleValidity, "how long the session may last, at most 8h (the coordinator may cut it shorter)")
	dialer.flags(login.Flags())
	cmd.AddCommand(login)
	return cmd
}

// consoleBase is the console's base URL: flag as given (https:// added), or the coordinator's
// host on the console's default port.
func consoleBase(flag, coordinatorAddr string) (*url.URL, error) {
	if flag == "" {
		host := coordinatorAddr
		if i := strings.LastIndex(host, ":"); i >= 0 {
			host = host[:i]
		}
		flag = "https://" + host + ":7443"
	}
	if !strings.Contains(flag, "://") {
		flag = "https://" + flag
	}
	u, err := url.Parse(flag)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an https:// address: the console serves HTTPS only", flag)
	}
	u.Path, u.RawQuery, u.Fragment = strings.TrimSuffix(u.Path, "/"), "", ""
	return u, nil
}

// consoleConfig is the console section of the coordinator's configuration: the oversight
// console, off unless console.listen is set.
type consoleConfig struct {
	// Listen is the console's HTTPS address (0.0.0.0:7443); empty serves none.
	Listen string `yaml:"listen"`
	// Cert and Key are the certificate browsers see; empty means the coordinator's own
	// (tls.cert, tls.key), which browsers trust only if the fedprop CA is installed in them.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// SessionMaxAge caps every session, whatever the delegation asks (default and at most 8h).
	SessionMaxAge time.Duration `yaml:"session_max_age"`
}

// consoleFlags adds --console-listen, bound to console.listen.
func consoleFlags(fs *pflag.FlagSet) map[string]string {
	fs.String("console-listen", "", "serve the oversight console at https://ADDR; off when empty (config console.listen, env FEDPROP_CONSOLE_LISTEN)")
	return map[string]string{"console-listen": "console.listen"}
}

// validate checks the console's settings against the edge's. The caller marks the error as
// coordinator.ErrBadConfig. Every console.* key is checked even while console.listen is empty:
// a mistake in the section is a mistake whether or not the console is on yet, and turning it
// on later should not be when it surfaces.
func (c consoleConfig) validate(sec coordinatorSecurity) error {
	if (c.Cert == "") != (c.Key == "") {
		return errors.New("console.cert and console.key: set both or neither (neither serves the coordinator's tls.cert and tls.key)")
	}
	if c.SessionMaxAge <= 0 || c.SessionMaxAge > pki.MaxDelegation {
		return fmt.Errorf("console.session_max_age: %v is not in (0, %v]", c.SessionMaxAge, pki.MaxDelegation)
	}
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("console.listen: %q is not host:port (0.0.0.0:7443): %w", c.Listen, err)
	}
	if sec.Insecure {
		// Not a plaintext fallback: the console has no other way to know who signs in, and
		// the release gate checks console decisions against the CA the edge trusts.
		return errors.New("console.listen: the console signs people in with their certificates and checks decisions against the CA: " +
			"it needs mutual TLS (tls.*); with insecure: true (--insecure) it does not start; leave console.listen empty or configure tls.*")
	}
	return nil
}

// startConsole builds the console over srv, registers its sign-in service on gs and returns
// the function that serves it until ctx ends.
func startConsole(cfg coordinatorConfig, log *slog.Logger, srv *coordinator.Server, gs *grpc.Server, reviewers *pki.Verifier,
	fed *console.Federation) (func(ctx context.Context) error, error) {
	cc := cfg.Console
	deny, err := pki.LoadDenyList(cfg.Security.TLS.DenyList)
	if err != nil {
		return nil, fmt.Errorf("%w: tls.deny_list: %w", coordinator.ErrBadConfig, err)
	}
	con, err := console.New(console.Config{Backend: srv, Verifier: reviewers, Revoked: deny.Revoked, DenyListPath: cfg.Security.TLS.DenyList,
		Federation: fed, SessionMaxAge: cc.SessionMaxAge, Logger: log, Version: version})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	cert, key := cc.Cert, cc.Key
	if cert == "" {
		cert, key = cfg.Security.TLS.Cert, cfg.Security.TLS.Key
	}
	tlsCfg, err := console.TLSConfig(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", coordinator.ErrBadConfig, err)
	}
	lis, err := net.Listen("tcp", cc.Listen)
	if err != nil {
		return nil, fmt.Errorf("console.listen: %w", err)
	}
	grpctransport.RegisterConsoleService(gs, con)
	log.Info("oversight console listening", "addr", "https://"+lis.Addr().String(), "sign_in", "fedprop console login")
	return func(ctx context.Context) error {
		if cfg.Security.TLS.DenyList != "" {
			go watchDenyList(ctx, deny, log)
		}
		return console.Serve(ctx, lis, con.Handler(), tlsCfg, log)
	}, nil
}
