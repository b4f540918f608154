package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fedprop/fedprop/console"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/internal/confcheck"
)

// TestConsoleIsOffByDefault: no console.listen in the defaults or in configs/coordinator.yaml,
// which documents every console key (commented out) so an operator sees what turning it on
// takes; sessions last at most 8h unless console.session_max_age says less.
func TestConsoleIsOffByDefault(t *testing.T) {
	def := defaultCoordinatorConfig().Console
	assert.Empty(t, def.Listen, "off by default")
	assert.Empty(t, def.Cert, "the coordinator's tls.cert by default")
	assert.Empty(t, def.Key)
	assert.Equal(t, console.DefaultSessionMaxAge, def.SessionMaxAge)
	assert.Equal(t, 8*time.Hour, def.SessionMaxAge)
	require.NoError(t, def.validate(coordinatorSecurity{Insecure: true}), "an insecure coordinator without a console starts")

	raw, err := os.ReadFile(filepath.Join("..", "..", "configs", "coordinator.yaml"))
	require.NoError(t, err)
	var shipped struct {
		Console consoleConfig `yaml:"console"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &shipped))
	assert.Empty(t, shipped.Console.Listen, "configs/coordinator.yaml turns no console on")
	for _, key := range []string{"#   listen: 127.0.0.1:7443", "#   cert:", "#   key:", "#   session_max_age: 8h", "--console-listen", "FEDPROP_CONSOLE_LISTEN", "mutual"} {
		assert.Contains(t, string(raw), key, "configs/coordinator.yaml documents it")
	}
}

// TestConsoleSettingsAreCheckedBeforeAnythingStarts: each wrong console setting is named by its
// key, whether or not console.listen turns the console on.
func TestConsoleSettingsAreCheckedBeforeAnythingStarts(t *testing.T) {
	tls := coordinatorSecurity{}
	tests := []struct {
		name string
		cfg  consoleConfig
		sec  coordinatorSecurity
		want string // "" when accepted
	}{
		{name: "on, with mutual TLS", cfg: consoleConfig{Listen: "127.0.0.1:7443", SessionMaxAge: time.Hour}, sec: tls},
		{name: "on, its own certificate", cfg: consoleConfig{Listen: "0.0.0.0:7443", Cert: "web.pem", Key: "web-key.pem", SessionMaxAge: 8 * time.Hour}, sec: tls},
		{name: "on, insecure", cfg: consoleConfig{Listen: "127.0.0.1:7443", SessionMaxAge: time.Hour}, sec: coordinatorSecurity{Insecure: true},
			want: "console.listen: the console signs people in with their certificates"},
		{name: "on, not host:port", cfg: consoleConfig{Listen: "7443", SessionMaxAge: time.Hour}, sec: tls,
			want: `console.listen: "7443" is not host:port`},
		{name: "a certificate without its key", cfg: consoleConfig{Listen: "127.0.0.1:7443", Cert: "web.pem", SessionMaxAge: time.Hour}, sec: tls,
			want: "console.cert and console.key: set both or neither"},
		{name: "a key without its certificate, console off", cfg: consoleConfig{Key: "web-key.pem", SessionMaxAge: time.Hour}, sec: tls,
			want: "console.cert and console.key: set both or neither"},
		{name: "sessions longer than a delegation", cfg: consoleConfig{Listen: "127.0.0.1:7443", SessionMaxAge: 9 * time.Hour}, sec: tls,
			want: "console.session_max_age: 9h0m0s is not in (0, 8h0m0s]"},
		{name: "zero sessions, console off", cfg: consoleConfig{SessionMaxAge: 0}, sec: coordinatorSecurity{Insecure: true},
			want: "console.session_max_age: 0s is not in (0, 8h0m0s]"},
		{name: "negative sessions", cfg: consoleConfig{Listen: "127.0.0.1:7443", SessionMaxAge: -time.Minute}, sec: tls,
			want: "console.session_max_age: -1m0s is not in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.validate(tt.sec)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "console."), err.Error())
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestConsoleKeysAreNamedAsWritten: a misspelt console key or a value of the wrong type is named
// by its key path as written, its line, or the variable that set it, never by a Go type.
func TestConsoleKeysAreNamedAsWritten(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		doc  string
		env  map[string]string
		want string
		typo bool // a *confcheck.UnknownKeyError; otherwise a *confcheck.ValueError
	}{
		{name: "a typo of listen", doc: "console:\n  lisen: 127.0.0.1:7443\n",
			want: "console.lisen: line 2: unknown key, did you mean console.listen?", typo: true},
		{name: "a typo of session_max_age", doc: "console:\n  session_max_ag: 1h\n",
			want: "console.session_max_ag: line 2: unknown key, did you mean console.session_max_age?", typo: true},
		{name: "a word for a duration", doc: "console:\n  listen: 127.0.0.1:7443\n  session_max_age: a working day\n",
			want: `console.session_max_age: line 3: "a working day" is not a duration such as 30s or 5m`},
		{name: "a list for an address", doc: "console:\n  listen: [127.0.0.1:7443]\n",
			want: "console.listen: line 2:"},
		{name: "from the environment", env: map[string]string{"FEDPROP_CONSOLE_SESSION_MAX_AGE": "soon"},
			want: `FEDPROP_CONSOLE_SESSION_MAX_AGE: console.session_max_age: "soon" is not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			path := ""
			if tt.doc != "" {
				path = filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".yaml")
				require.NoError(t, os.WriteFile(path, []byte(tt.doc), 0o600))
			}
			cfg := defaultCoordinatorConfig()
			flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
			err := loadConfig(path, &cfg, flags, consoleFlags(flags))
			require.Error(t, err)
			assert.ErrorContains(t, err, tt.want)
			assert.True(t, errors.Is(err, coordinator.ErrBadConfig), "exit status 2")
			assert.NotContains(t, err.Error(), "main.")
			var uk *confcheck.UnknownKeyError
			var ve *confcheck.ValueError
			assert.Equal(t, tt.typo, errors.As(err, &uk), "UnknownKeyError")
			assert.Equal(t, !tt.typo, errors.As(err, &ve), "ValueError")
		})
	}
}

// TestTheConsoleNeedsMutualTLS runs `fedprop coordinator` as an operator would: with
// --insecure (or a bad console setting from a flag, the environment or the file) it exits 2
// naming the key before anything listens; with the coordinator's kit it serves the console over
// HTTPS only, with the coordinator's certificate, and a plaintext request is refused.
func TestTheConsoleNeedsMutualTLS(t *testing.T) {
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schema, []byte(tinySchemaYAML), 0o600))
	write := func(name, doc string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
		return path
	}
	insecure := func(name, extra string) []string {
		return []string{"coordinator", "--log-level", "error", "--config", write(name, "insecure: true\nlisten: 127.0.0.1:0\nstore: "+
			filepath.Join(dir, name+".db")+"\n"+extra+"run:\n  schema: "+schema+"\n  min_clients: 2\n")}
	}
	refused := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{name: "insecure, by flag", args: append(insecure("flag.yaml", ""), "--console-listen", "127.0.0.1:0"),
			want: "console.listen: the console signs people in with their certificates and checks decisions against the CA: it needs mutual TLS"},
		{name: "insecure, by environment", env: map[string]string{"FEDPROP_CONSOLE_LISTEN": "127.0.0.1:0"}, args: insecure("env.yaml", ""),
			want: "with insecure: true (--insecure) it does not start"},
		{name: "insecure, by file", args: insecure("file.yaml", "console:\n  listen: 127.0.0.1:0\n"),
			want: "console.listen: the console signs people in"},
		{name: "sessions too long, console off", args: insecure("long.yaml", "console:\n  session_max_age: 24h\n"),
			want: "console.session_max_age: 24h0m0s is not in (0, 8h0m0s]"},
		{name: "not host:port", env: map[string]string{"FEDPROP_CONSOLE_LISTEN": "7443"}, args: insecure("port.yaml", ""),
			want: `console.listen: "7443" is not host:port`},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, _, errOut := runCLI(t, tt.args...)
			assert.Equal(t, 2, code, errOut)
			assert.Contains(t, errOut, "fedprop: bad configuration: ")
			assert.Contains(t, errOut, tt.want)
			assert.NotContains(t, errOut, "oversight console listening")
		})
	}

	t.Run("mutual TLS serves HTTPS only", func(t *testing.T) {
		pkiDir := filepath.Join(dir, "pki")
		code, _, errOut := runCLI(t, "ca", "init", "--dir", pkiDir)
		require.Equal(t, 0, code, errOut)
		code, _, errOut = runCLI(t, "ca", "issue", "--dir", pkiDir, "--role", "coordinator", "--name", "coordinator")
		require.Equal(t, 0, code, errOut)
		config := write("tls.yaml", "listen: 127.0.0.1:0\nrun:\n  schema: "+schema+"\n  min_clients: 2\n")
		logs := startCoordinatorCmd(t, "--config", config, "--store", filepath.Join(dir, "tls.db"),
			"--tls-ca", filepath.Join(pkiDir, "ca.pem"), "--tls-cert", filepath.Join(pkiDir, "coordinator.pem"),
			"--tls-key", filepath.Join(pkiDir, "coordinator-key.pem"), "--console-listen", "127.0.0.1:0")
		addr := ""
		for _, l := range logs.lines() {
			if l["msg"] == "oversight console listening" {
				addr, _ = l["addr"].(string)
			}
		}
		require.True(t, strings.HasPrefix(addr, "https://127.0.0.1:"), "the log names the console's https:// address: %q", addr)

		caPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.pem")) // #nosec G304 -- the test's own CA
		require.NoError(t, err)
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(caPEM))
		web := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		resp, err := web.Get(addr + "/")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, string(body), "fedprop console login", "the sign-in page says how to sign in")
		require.NotNil(t, resp.TLS)
		assert.Equal(t, "coordinator", resp.TLS.PeerCertificates[0].Subject.CommonName, "the coordinator's certificate by default")

		plain := &http.Client{Timeout: 10 * time.Second}
		resp, err = plain.Get("http://" + strings.TrimPrefix(addr, "https://") + "/") // #nosec G107 -- the test's own loopback console
		require.NoError(t, err)
		body, err = io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP is refused: %s", body)
		assert.NotContains(t, string(body), "fedprop console login")
	})
}
