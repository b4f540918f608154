package pki

import (
	"context"
	"log/slog"
	"os"
	"time"
)

// Refresh keeps the list current until ctx ends, so that an edited deny list takes effect
// without a restart: it re-reads the file every interval (DefaultDenyListPoll when not
// positive) and whenever hup delivers a signal, and logs every change and every failure as
// ReloadAndLog does; after a failure the previous list stays in force. The caller subscribes
// hup to SIGHUP with signal.Notify, or passes nil for polling alone. Refresh runs in the
// caller's goroutine and starts none; for a list read from no file it returns at once.
func (d *DenyList) Refresh(ctx context.Context, interval time.Duration, hup <-chan os.Signal, log *slog.Logger) {
	if d.path == "" {
		return
	}
	if interval <= 0 {
		interval = DefaultDenyListPoll
	}
	if log == nil {
		log = slog.Default()
	}
	poll := time.NewTicker(interval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			d.ReloadAndLog(ctx, log)
		case <-hup:
			log.Info("SIGHUP: re-reading the deny list", "file", d.path)
			d.ReloadAndLog(ctx, log)
		}
	}
}
