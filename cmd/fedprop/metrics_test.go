package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestMetricsListenIsLoopbackUnlessAllowedRemote(t *testing.T) {
	cases := []struct {
		listen string
		remote bool
		err    string // "" when accepted
	}{
		{"", false, ""},
		{"127.0.0.1:9464", false, ""},
		{"127.0.0.2:0", false, ""},
		{"[::1]:9464", false, ""},
		{"localhost:9464", false, ""},
		{":9464", false, "is not a loopback address"},
		{"0.0.0.0:9464", false, "is not a loopback address"},
		{"[::]:9464", false, "is not a loopback address"},
		{"10.1.2.3:9464", false, "is not a loopback address"},
		{"metrics.bank.example:9464", false, "is not a loopback address"},
		{"0.0.0.0:9464", true, ""},
		{"9464", false, "is not host:port"},
	}
	for _, tc := range cases {
		name := tc.listen
		if name == "" {
			name = "off"
		}
		if tc.remote {
			name += " allow_remote"
		}
		t.Run(name, func(t *testing.T) {
			err := metricsConfig{Listen: tc.listen, AllowRemote: tc.remote}.validate()
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "metrics.listen: "), err.Error())
			assert.Contains(t, err.Error(), tc.err)
			if strings.Contains(tc.err, "loopback") {
				assert.Contains(t, err.Error(), "metrics.allow_remote: true", "the message says how to allow it")
			}
		})
	}
}

// TestANonLoopbackMetricsAddressIsRefusedBeforeAnythingStarts: from a flag, the environment or
// the file, for the coordinator and the client, exit status 2 naming metrics.listen.
func TestANonLoopbackMetricsAddressIsRefusedBeforeAnythingStarts(t *testing.T) {
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schema, []byte(tinySchemaYAML), 0o600))
	write := func(name, doc string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
		return path
	}
	coord := func(name, extra string) []string {
		return []string{"coordinator", "--log-level", "error", "--config", write(name, "insecure: true\nlisten: 127.0.0.1:0\nstore: "+filepath.Join(dir, name+".db")+"\n"+extra+
			"run:\n  schema: "+schema+"\n  min_clients: 2\n")}
	}
	clientArgs := []string{"client", "--id", "branch-1", "--insecure", "--schema", schema, "--data", filepath.Join(dir, "none.csv")}
	cases := []struct {
		name string
		env  string
		args []string
	}{
		{"coordinator flag", "", append(coord("flag.yaml", ""), "--metrics-listen", "0.0.0.0:9464")},
		{"coordinator environment", "10.1.2.3:9464", coord("env.yaml", "")},
		{"coordinator file", "", coord("file.yaml", "metrics:\n  listen: \":9464\"\n")},
		{"client flag", "", append(clientArgs, "--metrics-listen", "[::]:9465")},
		{"client environment", "192.0.2.1:9465", clientArgs},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("FEDPROP_METRICS_LISTEN", tc.env)
			}
			code, _, errOut := runCLI(t, tc.args...)
			assert.Equal(t, 2, code, errOut)
			assert.Contains(t, errOut, "fedprop: bad configuration: metrics.listen: ")
			assert.Contains(t, errOut, "not a loopback address")
			assert.NotContains(t, errOut, "metrics endpoint listening")
		})
	}
}

// lockedBuffer is a log sink the command writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines written so far.
func (b *lockedBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil {
			out = append(out, line)
		}
	}
	return out
}

// startCoordinatorCmd runs `fedprop coordinator` with args and env until the test ends, once
// it logs that it listens; it returns its log.
func startCoordinatorCmd(t *testing.T, args ...string) *lockedBuffer {
	t.Helper()
	logs := &lockedBuffer{}
	root := newRootCmd(io.Discard, logs)
	root.SetArgs(append([]string{"coordinator", "--log-format", "json"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "the coordinator stops cleanly")
		case <-time.After(20 * time.Second):
			t.Error("the coordinator did not stop")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, l := range logs.lines() {
			if l["msg"] == "coordinator listening" {
				return logs
			}
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("the coordinator stopped before it listened: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "the coordinator listens within 20s")
	}
}

// metricsAddr is where the log says the metrics endpoint listens ("" when it does not).
func metricsAddr(logs *lockedBuffer) string {
	for _, l := range logs.lines() {
		if l["msg"] == "metrics endpoint listening" {
			addr, _ := l["addr"].(string)
			return addr
		}
	}
	return ""
}

// TestTheMetricsEndpointIsOffByDefault runs the coordinator as shipped (configs/coordinator.yaml
// has the keys commented out) and as an operator turns the endpoint on, by flag or environment;
// only then does it listen, and it serves the coordinator's metrics.
func TestTheMetricsEndpointIsOffByDefault(t *testing.T) {
	assert.Empty(t, defaultCoordinatorConfig().Metrics.Listen)
	assert.Empty(t, defaultClientConfig().Metrics.Listen)
	for _, path := range []string{"coordinator.yaml", "client.yaml"} {
		var cfg struct {
			Metrics metricsConfig `yaml:"metrics"`
		}
		raw, err := os.ReadFile(filepath.Join("..", "..", "configs", path))
		require.NoError(t, err)
		require.NoError(t, yaml.Unmarshal(raw, &cfg))
		assert.Empty(t, cfg.Metrics.Listen, "configs/%s turns no endpoint on", path)
		assert.Contains(t, string(raw), "#   listen: 127.0.0.1:", "configs/%s shows the key", path)
	}

	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schema, []byte(tinySchemaYAML), 0o600))
	config := filepath.Join(dir, "coordinator.yaml")
	require.NoError(t, os.WriteFile(config, []byte("insecure: true\nlisten: 127.0.0.1:0\nrun:\n  schema: "+schema+"\n  min_clients: 2\n"), 0o600))
	cases := []struct {
		name string
		env  string
		args []string
		on   bool
	}{
		{"default", "", nil, false},
		{"by flag", "", []string{"--metrics-listen", "127.0.0.1:0"}, true},
		{"by environment", "127.0.0.1:0", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("FEDPROP_METRICS_LISTEN", tc.env)
			}
			args := append([]string{"--config", config, "--store", filepath.Join(t.TempDir(), "c.db")}, tc.args...)
			logs := startCoordinatorCmd(t, args...)
			addr := metricsAddr(logs)
			if !tc.on {
				assert.Empty(t, addr, "no metrics endpoint unless metrics.listen is set")
				return
			}
			require.NotEmpty(t, addr)
			resp, err := http.Get("http://" + addr + "/metrics") // #nosec G107 -- the test's own loopback endpoint
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Contains(t, string(body), `fedprop_coordinator_phase{phase="waiting"} 1`, "the run waits for its clients")
			assert.Contains(t, string(body), `fedprop_coordinator_audit_entries_total{action="run.start"} 1`)
		})
	}
}
