package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/store/mem"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// TestRunCommandsStartListStatusStopAndResume drives `fedprop run` against a coordinator over
// gRPC on a loopback socket: start from a coordinator configuration (its run: section), the
// JSON status of the waiting run, the list, a stop with its reason, and the resume.
func TestRunCommandsStartListStatusStopAndResume(t *testing.T) {
	schemas := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(schemas, "tiny.yaml"), []byte(tinySchemaYAML), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := coordinator.NewServer(ctx, mem.New(), nil, coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Logger: quietLog()})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpctransport.NewGRPCServer(srv, "test", specLoader(schemas))
	done := make(chan struct{}, 2)
	go func() { _ = gs.Serve(lis); done <- struct{}{} }()
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); gs.Stop(); <-done; <-done }()
	conn := []string{"--coordinator", lis.Addr().String(), "--insecure", "--log-level", "error"}
	cli := func(args ...string) (int, string, string) {
		return runCLI(t, append(append([]string{"run"}, args...), conn...)...)
	}

	cfg := filepath.Join(t.TempDir(), "coordinator.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nrun:\n  id: nightly\n  rounds: 3\n  min_clients: 4\n  schema: tiny.yaml\n"), 0o600))
	code, out, errOut := cli("start", "--config", cfg, "--output", "json")
	require.Equal(t, 0, code, errOut)
	var started runJSON
	require.NoError(t, json.Unmarshal([]byte(out), &started), out)
	assert.Equal(t, "nightly", started.RunID)

	code, out, errOut = cli("status", "--output", "json")
	require.Equal(t, 0, code, errOut)
	var st runJSON
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	assert.Equal(t, runJSON{RunID: "nightly", State: "waiting", Active: true, Phase: "waiting", RoundsTotal: 3, MinClients: 4,
		PrivacyMechanism: "none"}, st, "a waiting run says how many clients it needs")

	code, out, _ = cli("status")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "0 of 4 needed", "the table says how many clients are missing")

	code, out, errOut = cli("stop", "nightly", "--reason", "wrong schema version", "--output", "json")
	require.Equal(t, 0, code, errOut)
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	assert.Equal(t, "stopped", st.State)
	assert.False(t, st.Active)
	assert.Contains(t, st.Message, "wrong schema version")

	code, out, errOut = cli("list", "--output", "json")
	require.Equal(t, 0, code, errOut)
	var list []runJSON
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.Len(t, list, 1)
	assert.Equal(t, "stopped", list[0].State)

	code, _, errOut = cli("stop", "nightly")
	assert.NotEqual(t, 0, code, "a stopped run is not stopped again")
	assert.Contains(t, errOut, "already stopped")

	code, out, errOut = cli("start", "--config", cfg, "--output", "json")
	require.Equal(t, 0, code, errOut)
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	assert.Equal(t, "waiting", st.State, "resumed")
	assert.True(t, st.Active)

	code, _, errOut = cli("status", "--output", "yaml")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "--output")
}
