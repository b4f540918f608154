// Package sharedtest locates the reference data that tests and benchmarks read from the
// project's shared folder (../shared/data beside the repository root). The data is real public
// data the project did not write and never copies into the repository.
//
// When the folder is absent a test is skipped with a message that says so, unless the CI
// environment variable is "true": CI always has the data, so there a missing file fails.
package sharedtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Path returns the absolute path of name inside the shared data folder, skipping (or, under
// CI=true, failing) tb when the file is not there.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	dir, err := DataDir()
	if err == nil {
		p := filepath.Join(dir, name)
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("shared reference data %s is required under CI: %v", name, err)
	}
	tb.Skipf("skipping: shared reference data %s not found (%v); it lives in ../shared/data beside the repository", name, err)
	return ""
}

// DataDir returns the shared data folder: $FEDPROP_SHARED_DATA when set, otherwise
// ../shared/data relative to the module root (the directory holding go.mod).
func DataDir() (string, error) {
	if d := os.Getenv("FEDPROP_SHARED_DATA"); d != "" {
		return d, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "..", "shared", "data"), nil
}

// ModuleRoot walks up from the working directory to the directory that holds go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
