package coordinator

import (
	"context"

	"github.com/fedprop/fedprop/task"
)

// Tick advances the driver's clock by one tick: the deadline clock of a Server with
// ServerConfig.ManualClock, which the simulator drives in virtual time.
func (s *Server) Tick(ctx context.Context) error {
	return s.do(ctx, func() {
		if s.core != nil {
			s.core.Tick()
		}
	})
}

// PollEach is one long poll, answered at once, of many in-process clients: each calls fn, in
// ids' order, with the client's outstanding task if it has one (unknown clients are skipped).
// The simulator's idle virtual clients poll through it, as one driver event per tick instead of
// one per client; fn runs inside the driver and must not call the Server.
func (s *Server) PollEach(ctx context.Context, ids []string, fn func(i int, t task.Task)) error {
	return s.do(ctx, func() {
		if s.core == nil {
			return
		}
		for i, id := range ids {
			if _, known := s.clients[id]; !known {
				continue
			}
			if t, ok, err := s.core.Poll(id); err == nil && ok {
				fn(i, t)
			}
		}
	})
}

// View calls fn with the active run's Core (nil if none) inside the driver, for in-process
// observers that read what the store does not hold (the encoder, the last model). fn must
// not change the Core or call the Server.
func (s *Server) View(ctx context.Context, fn func(c *Core)) error {
	return s.do(ctx, func() { fn(s.core) })
}

// RunStatus is where the run stands, without copying its record as Status does.
func (c *Core) RunStatus() RunStatus { return c.run.Status }
