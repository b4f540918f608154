// Package telemetry exposes the coordinator and the client agent to Prometheus. Each role
// owns a prometheus.Registry of its own, never the process-wide default, so that what a
// /metrics endpoint shows is exactly what this package declares (and a test sees only its own
// counts).
//
// The coordinator's metrics count what its driver reports through coordinator.Observer
// (committed versions, notes by their Event, results by their Outcome, audit entries) and
// what its gRPC edge sees through the interceptors here; the core knows nothing of this
// package. The client's metrics count the agent's calls to the coordinator through a
// decorator of its connection. No metric is labelled with a client id or anything else a
// client chooses: every label takes its values from a small fixed set, for cardinality and
// for privacy.
package telemetry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fedprop/fedprop/task"
)

// Path is where Serve answers with the metrics.
const Path = "/metrics"

// Timeouts of the metrics HTTP server. A scrape is one small GET: a peer that takes longer
// than readHeaderTimeout to send its headers holds a connection for nothing (slowloris).
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 5 * time.Second
	// scrapeTimeout bounds one gathering; maxScrapes the scrapes served at once.
	scrapeTimeout = 10 * time.Second
	maxScrapes    = 4
)

// newRegistry makes a registry with the Go runtime's and the process's own metrics, which an
// operator expects beside the role's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// handler serves reg's metrics, with the handler's own request counts among them.
func handler(reg *prometheus.Registry) http.Handler {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:            reg,
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapes,
		Timeout:             scrapeTimeout,
	})
	return promhttp.InstrumentMetricHandler(reg, h)
}

// Serve answers GET /metrics with h on lis (and 404 elsewhere) until ctx ends, then shuts the
// server down, letting scrapes in flight finish for a few seconds. It returns nil after that
// shutdown, or the error that stopped the server. It closes lis.
func Serve(ctx context.Context, lis net.Listener, h http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(stop)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// kinds are the task kinds a metric may be labelled with; any other value reads "other".
var kinds = []task.Kind{task.KindStats, task.KindTrain, task.KindEvaluate, task.KindKeygen, task.KindDecrypt}

// kindLabel is k's label value: its name when it is one of kinds, else "other". A result's kind
// is what its client said, so it is never used as a label unchecked.
func kindLabel(k task.Kind) string {
	for _, known := range kinds {
		if k == known {
			return k.String()
		}
	}
	return "other"
}

// kindLabels are every value kindLabel returns, to initialise a vector's series at zero (a
// series that appears only at its first increment hides that increment from rate()).
func kindLabels() []string {
	out := make([]string, 0, len(kinds)+1)
	for _, k := range kinds {
		out = append(out, k.String())
	}
	return append(out, "other")
}
