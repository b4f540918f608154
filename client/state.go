package client

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fedprop/fedprop/secagg"
)

// StateDir is a client's state directory: its committee identity key and key material, and
// its privacy ledger with its latest releases, each in a file only the client's user can read
// (mode 0600), so that a restarted client keeps its place in the committee and its account of
// what it has released.
type StateDir string

const (
	identityFile = "identity.key"
	memberFile   = "committee.key"
	privacyFile  = "privacy.json"
)

// Identity loads the client's X25519 identity key, creating it on first use.
func (d StateDir) Identity() (*ecdh.PrivateKey, error) {
	path := filepath.Join(string(d), identityFile)
	b, err := d.read(identityFile)
	switch {
	case err == nil:
		key, err := ecdh.X25519().NewPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("identity key %s: %w", path, err)
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	key, err := secagg.NewIdentity(nil)
	if err != nil {
		return nil, err
	}
	if err := d.write(identityFile, key.Bytes()); err != nil {
		return nil, err
	}
	return key, nil
}

// Member returns the saved committee key material, or nil before the first setup.
func (d StateDir) Member() ([]byte, error) {
	b, err := d.read(memberFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// SaveMember writes the committee key material (a MemberConfig.Persist function).
func (d StateDir) SaveMember(b []byte) error { return d.write(memberFile, b) }

// Privacy returns the saved privacy ledger and releases, or nil on first start.
func (d StateDir) Privacy() ([]byte, error) {
	b, err := d.read(privacyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// SavePrivacy writes the privacy ledger and releases (a SessionOptions.PersistPrivacy
// function).
func (d StateDir) SavePrivacy(b []byte) error { return d.write(privacyFile, b) }

// read refuses a key file that others can read: a leaked share weakens the threshold.
func (d StateDir) read(name string) ([]byte, error) {
	path := filepath.Join(string(d), name)
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %v: it must be readable by its owner only (chmod 600)", path, info.Mode().Perm())
	}
	return os.ReadFile(path)
}

// write replaces a key file atomically with mode 0600.
func (d StateDir) write(name string, b []byte) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	tmp, err := os.CreateTemp(string(d), name+".tmp*")
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(string(d), name))
}
