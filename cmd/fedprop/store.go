package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/store/bolt"
	"github.com/fedprop/fedprop/store/postgres"
)

// openStore opens the coordinator's store named by setting: a bbolt file (the embedded
// default), or a postgres:// DSN. With PostgreSQL the replica first waits until it leads
// (postgres.Leader): it returns a store whose writes are fenced by its term and a context
// that ends, with cause postgres.ErrLeadershipLost, if the lead is lost. Closing the store
// gives up the lead.
func openStore(ctx context.Context, log *slog.Logger, setting, replica string) (coordinator.Store, context.Context, error) {
	if !postgres.IsDSN(setting) {
		s, err := bolt.Open(setting)
		return s, ctx, err
	}
	leader, err := postgres.NewLeader(setting, postgres.LeaderConfig{Name: replica, Logger: log})
	if err != nil {
		return nil, ctx, err
	}
	log.Info("campaigning for leadership", "store", postgres.Redact(setting))
	lease, err := leader.Campaign(ctx)
	if err != nil {
		return nil, ctx, err
	}
	s, err := postgres.Open(lease.Context(), setting, postgres.Options{})
	if err != nil {
		lease.Release()
		return nil, ctx, err
	}
	return &leasedStore{Store: s.Fenced(lease.Term()), lease: lease}, lease.Context(), nil
}

// leasedStore is a fenced PostgreSQL store that gives up the lead when closed.
type leasedStore struct {
	*postgres.Store
	lease *postgres.Lease
}

func (s *leasedStore) Close() error {
	err := s.Store.Close()
	s.lease.Release()
	return err
}

// leadershipLost returns the error to exit with when ctx ended because this replica lost
// the lead, nil otherwise. A replica that lost the lead exits non-zero so that its
// supervisor restarts it as a follower.
func leadershipLost(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, postgres.ErrLeadershipLost) {
		return fmt.Errorf("coordinator stopped: %w", cause)
	}
	return nil
}
