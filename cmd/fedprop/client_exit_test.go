package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clientKitArgs are the --tls-* flags of NAME's kit in dir.
func clientKitArgs(dir, name string) []string {
	return []string{"--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, name+".pem"), "--tls-key", filepath.Join(dir, name+"-key.pem")}
}

// coordinatorAddr is where a coordinator started by startCoordinatorCmd listens.
func coordinatorAddr(t *testing.T, logs *lockedBuffer) string {
	t.Helper()
	for _, l := range logs.lines() {
		if l["msg"] == "coordinator listening" {
			return l["addr"].(string)
		}
	}
	t.Fatal("the coordinator logged no address")
	return ""
}

// TestAClientThatCannotEverConnectExitsTwoWithAHint runs `fedprop client` through its cobra
// entry point against coordinators it can never use: a mutual-TLS coordinator with a kit from
// another CA, the same coordinator with --insecure, a plaintext coordinator with a TLS kit,
// and a port that speaks HTTP. Each exits with status 2 within 10 s, its last line naming
// what to change; none retries until stopped.
func TestAClientThatCannotEverConnectExitsTwoWithAHint(t *testing.T) {
	dir := t.TempDir()
	ownPKI, otherPKI := filepath.Join(dir, "pki"), filepath.Join(dir, "other-pki")
	for _, args := range [][]string{
		{"ca", "init", "--dir", ownPKI},
		{"ca", "issue", "--dir", ownPKI, "--role", "coordinator", "--name", "coordinator"},
		{"ca", "issue", "--dir", ownPKI, "--role", "client", "--name", "branch-000"},
		{"ca", "init", "--dir", otherPKI},
		{"ca", "issue", "--dir", otherPKI, "--role", "client", "--name", "branch-000"},
		{"synth", "--out", filepath.Join(dir, "data"), "--branches", "1", "--customers", "50"},
	} {
		code, _, errOut := runCLI(t, args...)
		require.Equal(t, 0, code, "%v: %s", args, errOut)
	}
	schema := filepath.Join(dir, "data", "schema.yaml")
	data, err := filepath.Glob(filepath.Join(dir, "data", "branch-*.csv"))
	require.NoError(t, err)
	require.NotEmpty(t, data)
	run := "run:\n  schema: " + schema + "\n  min_clients: 2\n"
	write := func(name, doc string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
		return path
	}
	tlsCoord := startCoordinatorCmd(t, append([]string{"--config", write("tls.yaml", "listen: 127.0.0.1:0\n"+run), "--store", filepath.Join(dir, "tls.db")},
		clientKitArgs(ownPKI, "coordinator")...)...)
	plainCoord := startCoordinatorCmd(t, "--config", write("plain.yaml", "insecure: true\nlisten: 127.0.0.1:0\n"+run), "--store", filepath.Join(dir, "plain.db"))
	web := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(web.Close)
	clientConfig := write("client.yaml", "secure_aggregation:\n  state_dir: "+filepath.Join(dir, "state")+"\n")
	clientArgs := func(addr string, extra ...string) []string {
		return append([]string{"client", "--config", clientConfig, "--id", "branch-000", "--coordinator", addr, "--data", data[0], "--schema", schema}, extra...)
	}

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"a kit from another CA", clientArgs(coordinatorAddr(t, tlsCoord), clientKitArgs(otherPKI, "branch-000")...),
			[]string{"the coordinator's certificate is signed by an unknown authority", "hint: tls.ca must be the CA certificate that issued the coordinator's certificate"}},
		{"--insecure against mutual TLS", clientArgs(coordinatorAddr(t, tlsCoord), "--insecure"),
			[]string{"plaintext (insecure) against a TLS coordinator", "hint: the coordinator serves mutual TLS: remove insecure: true (--insecure)"}},
		{"TLS against a plaintext coordinator", clientArgs(coordinatorAddr(t, plainCoord), clientKitArgs(ownPKI, "branch-000")...),
			[]string{"TLS against a plaintext (insecure) coordinator", "hint: the coordinator serves plaintext"}},
		{"a port that speaks HTTP", clientArgs(web.Listener.Addr().String(), "--insecure"),
			[]string{"does not speak gRPC", "hint: check the coordinator address: " + web.Listener.Addr().String() + " answers \"HTTP/1.1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, _, errOut := runCLI(t, tc.args...)
			took := time.Since(start)
			t.Logf("exit %d after %v", code, took)
			assert.Equal(t, 2, code, errOut)
			assert.Less(t, took, 10*time.Second)
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			last := lines[len(lines)-1]
			assert.True(t, strings.HasPrefix(last, "fedprop: client branch-000 stopped: register: "), last)
			for _, w := range tc.want {
				assert.Contains(t, last, w, "the exit line holds the cause and the hint")
			}
			assert.NotContains(t, errOut, "register failed; retrying", "nothing was retried")
		})
	}
}
