package main

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/spf13/pflag"

	"github.com/fedprop/fedprop/ops/telemetry"
)

// metricsConfig is the metrics section of the coordinator's and the client's configuration:
// a Prometheus /metrics endpoint, off unless metrics.listen is set.
type metricsConfig struct {
	// Listen is the endpoint's address (127.0.0.1:9464); empty serves none.
	Listen string `yaml:"listen"`
	// AllowRemote lets Listen be an address other than loopback. The endpoint has neither TLS
	// nor authentication, and the metrics tell who watches them how the federation runs
	// (rounds, refusals, privacy spent), so by default it is reachable from this host only.
	AllowRemote bool `yaml:"allow_remote"`
}

// metricsFlags adds --metrics-listen, bound to metrics.listen.
func metricsFlags(fs *pflag.FlagSet) map[string]string {
	fs.String("metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics; off when empty (config metrics.listen, env FEDPROP_METRICS_LISTEN)")
	return map[string]string{"metrics-listen": "metrics.listen"}
}

// validate refuses an address that is not host:port, and one beyond loopback without
// metrics.allow_remote. The caller marks the error as coordinator.ErrBadConfig.
func (m metricsConfig) validate() error {
	if m.Listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(m.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: %q is not host:port (127.0.0.1:9464): %w", m.Listen, err)
	}
	if !isLoopback(host) && !m.AllowRemote {
		return fmt.Errorf("metrics.listen: %q is not a loopback address, and the metrics endpoint has no TLS and no authentication: "+
			"listen on 127.0.0.1 or [::1] (and scrape through a proxy that has both), or set metrics.allow_remote: true to expose it anyway",
			m.Listen)
	}
	return nil
}

// isLoopback reports whether host names only this machine: localhost, or a loopback IP. An
// empty host is every interface; any other name may resolve anywhere.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listen opens the endpoint's listener: nil when metrics.listen is not set (the default),
// with a warning when the address reaches beyond loopback. Call validate first.
func (m metricsConfig) listen(log *slog.Logger) (net.Listener, error) {
	if m.Listen == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", m.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	if host, _, _ := net.SplitHostPort(m.Listen); !isLoopback(host) {
		log.Warn("the metrics endpoint listens beyond loopback without TLS or authentication (metrics.allow_remote): anyone who reaches it reads how the federation runs",
			"addr", lis.Addr().String())
	}
	log.Info("metrics endpoint listening", "addr", lis.Addr().String(), "path", telemetry.Path)
	return lis, nil
}
