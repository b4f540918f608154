// Package bolt is the coordinator's embedded store on go.etcd.io/bbolt: one file, no server to
// install. Runs and versions are JSON documents; a commit writes the version and its run's
// record in one transaction.
package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fedprop/fedprop/coordinator"
)

var (
	bucketRuns     = []byte("runs")
	bucketRunOrder = []byte("run_order")
	bucketVersions = []byte("versions")
)

// Store is a coordinator.Store in one bbolt file.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the store at path. It waits up to a few seconds for another
// process's lock on the file, then fails with an error that says so.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRuns, bucketRunOrder, bucketVersions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close() // the error that failed the open is the one to report
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close implements coordinator.Store.
func (s *Store) Close() error { return s.db.Close() }

func versionKey(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

func putRun(tx *bolt.Tx, r coordinator.RunState) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	runs := tx.Bucket(bucketRuns)
	if runs.Get([]byte(r.ID)) == nil {
		order := tx.Bucket(bucketRunOrder)
		seq, err := order.NextSequence()
		if err != nil {
			return err
		}
		if err := order.Put(versionKey(seq), []byte(r.ID)); err != nil {
			return err
		}
	}
	return runs.Put([]byte(r.ID), b)
}

func getRun(tx *bolt.Tx, id string) (coordinator.RunState, error) {
	var r coordinator.RunState
	b := tx.Bucket(bucketRuns).Get([]byte(id))
	if b == nil {
		return r, fmt.Errorf("run %q: %w", id, coordinator.ErrNotFound)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode run %q: %w", id, err)
	}
	return r, nil
}

// SaveRun implements coordinator.Store.
func (s *Store) SaveRun(_ context.Context, r coordinator.RunState) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putRun(tx, r) })
}

// Run implements coordinator.Store.
func (s *Store) Run(_ context.Context, id string) (r coordinator.RunState, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		r, err = getRun(tx, id)
		return err
	})
	return r, err
}

// Runs implements coordinator.Store.
func (s *Store) Runs(context.Context) ([]coordinator.RunState, error) {
	var out []coordinator.RunState
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRunOrder).ForEach(func(_, id []byte) error {
			r, err := getRun(tx, string(id))
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Commit implements coordinator.Store.
func (s *Store) Commit(_ context.Context, v coordinator.ModelVersion, r coordinator.RunState) error {
	doc, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode version %d: %w", v.Version, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		var latest uint64
		if k, _ := tx.Bucket(bucketVersions).Cursor().Last(); k != nil {
			latest = binary.BigEndian.Uint64(k)
		}
		lastRound := 0
		if stored, err := getRun(tx, r.ID); err == nil {
			lastRound = stored.LastRound
		} else if !errors.Is(err, coordinator.ErrNotFound) {
			return err
		}
		if err := coordinator.CheckCommit(latest, lastRound, v, r); err != nil {
			return err
		}
		if err := tx.Bucket(bucketVersions).Put(versionKey(v.Version), doc); err != nil {
			return err
		}
		return putRun(tx, r)
	})
}

func decodeVersion(b []byte) (coordinator.ModelVersion, error) {
	var v coordinator.ModelVersion
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decode version: %w", err)
	}
	return v, nil
}

// Version implements coordinator.Store.
func (s *Store) Version(_ context.Context, version uint64) (v coordinator.ModelVersion, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVersions).Get(versionKey(version))
		if b == nil {
			return fmt.Errorf("version %d: %w", version, coordinator.ErrNotFound)
		}
		v, err = decodeVersion(b)
		return err
	})
	return v, err
}

// Latest implements coordinator.Store.
func (s *Store) Latest(context.Context) (v coordinator.ModelVersion, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		k, b := tx.Bucket(bucketVersions).Cursor().Last()
		if k == nil {
			return fmt.Errorf("latest version: %w", coordinator.ErrNotFound)
		}
		v, err = decodeVersion(b)
		return err
	})
	return v, err
}

// Versions implements coordinator.Store.
func (s *Store) Versions(context.Context) ([]coordinator.ModelVersion, error) {
	var out []coordinator.ModelVersion
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVersions).ForEach(func(_, b []byte) error {
			v, err := decodeVersion(b)
			if err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}
