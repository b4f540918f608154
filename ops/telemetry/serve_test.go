package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/ops/telemetry"
)

// serve starts Serve on a loopback port and returns its base URL; the server stops, and Serve
// must have returned nil, when the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- telemetry.Serve(ctx, lis, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "Serve returns nil once shut down")
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return "http://" + lis.Addr().String()
}

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url) // #nosec G107 -- a loopback test server
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// TestServeAnswersMetricsOnlyAtItsPath scrapes a real listener.
func TestServeAnswersMetricsOnlyAtItsPath(t *testing.T) {
	m := telemetry.NewCoordinatorMetrics()
	m.Flushed(coordinator.Flush{Actions: coordinator.Actions{Commit: &coordinator.ModelVersion{Version: 1}}, Progress: coordinator.Progress{Phase: "train", Round: 1}})
	base := serve(t, m.Handler())

	cases := []struct {
		path string
		code int
		has  []string
	}{
		{telemetry.Path, http.StatusOK, []string{
			"fedprop_coordinator_rounds_committed_total 1",
			`fedprop_coordinator_phase{phase="train"} 1`,
			`fedprop_coordinator_results_rejected_total{reason="bounds"} 0`,
			"fedprop_coordinator_aggregates_discarded_total 0",
			"# HELP fedprop_coordinator_store_commit_seconds",
			"go_goroutines",
			"promhttp_metric_handler_requests_total",
		}},
		{"/", http.StatusNotFound, nil},
		{"/debug/pprof/", http.StatusNotFound, nil},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			code, body := get(t, base+tc.path)
			assert.Equal(t, tc.code, code)
			for _, s := range tc.has {
				assert.Contains(t, body, s)
			}
		})
	}
}

// TestServeStopsWhenItsContextEnds: the listener is closed once Serve returns.
func TestServeStopsWhenItsContextEnds(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- telemetry.Serve(ctx, lis, telemetry.NewClientMetrics().Handler()) }()
	code, body := get(t, "http://"+addr+telemetry.Path)
	require.Equal(t, http.StatusOK, code)
	assert.True(t, strings.Contains(body, "fedprop_client_tasks_done_total"))
	cancel()
	require.NoError(t, <-done)
	_, err = net.DialTimeout("tcp", addr, time.Second)
	assert.Error(t, err, "nothing listens after shutdown")
}
