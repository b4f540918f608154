// Package pgtest gives tests a PostgreSQL server to use: the one named by the
// FEDPROP_TEST_POSTGRES environment variable (a DSN), with a fresh schema per test.
//
// When the variable is unset a test is skipped with a message that says so, unless the CI
// environment variable is "true": CI installs and starts a server (.ci/run), so there a
// missing server fails the test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable holding the test server's DSN.
const EnvDSN = "FEDPROP_TEST_POSTGRES"

// ServerDSN returns the test server's DSN, skipping (or, under CI=true, failing) tb when
// there is none.
func ServerDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is required under CI (.ci/run starts a PostgreSQL server and sets it)", EnvDSN)
		}
		tb.Skipf("skipping: set %s to a PostgreSQL DSN (e.g. postgres://user:pass@127.0.0.1:5432/db) to run the PostgreSQL tests", EnvDSN)
	}
	return dsn
}

// DSN creates an empty schema on the test server and returns a DSN whose search_path is
// that schema, so that everything the test creates lands there; the schema is dropped when
// tb ends.
func DSN(tb testing.TB) string {
	tb.Helper()
	base := ServerDSN(tb)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	schema := "fedprop_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect to %s: %v", EnvDSN, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema %s: %v", schema, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return WithSearchPath(base, schema)
}

// WithSearchPath returns dsn with its search_path set to schema.
func WithSearchPath(dsn, schema string) string { return WithParam(dsn, "search_path", schema) }

// WithParam returns dsn with one more connection parameter (search_path,
// application_name, ...). It handles both the URL form (postgres://...) and the key=value
// form; value must not need quoting.
func WithParam(dsn, key, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set(key, value)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return fmt.Sprintf("%s %s=%s", dsn, key, value)
}
