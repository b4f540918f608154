package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/pki"
)

func TestCAInitIssueAndRevoke(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	code, out, errOut := runCLI(t, "ca", "init", "--dir", dir, "--name", "bank")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `created CA "bank CA"`)

	code, out, errOut = runCLI(t, "ca", "issue", "--dir", dir, "--role", "client", "--name", "branch-000")
	require.Equal(t, 0, code, errOut)
	serial := regexp.MustCompile(`serial ([0-9a-f]+)`).FindStringSubmatch(out)
	require.Len(t, serial, 2, out)
	for _, f := range []string{"ca.pem", "ca-key.pem", "branch-000.pem", "branch-000-key.pem"} {
		require.FileExists(t, filepath.Join(dir, f))
	}
	for _, f := range []string{"ca-key.pem", "branch-000-key.pem"} {
		info, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), f)
	}

	kit := filepath.Join(t.TempDir(), "coordinator-kit")
	code, out, errOut = runCLI(t, "ca", "issue", "--dir", dir, "--out", kit, "--role", "coordinator", "--name", "coord", "--host", "fedprop.bank.example", "--host", "10.1.2.3")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "hosts: fedprop.bank.example, 10.1.2.3")
	_, err := pki.ServerTLSConfig(pki.TLSFiles{CA: filepath.Join(kit, "ca.pem"), Cert: filepath.Join(kit, "coord.pem"), Key: filepath.Join(kit, "coord-key.pem")})
	require.NoError(t, err, "the kit is what a coordinator needs")

	deny := filepath.Join(t.TempDir(), "deny.txt")
	code, _, errOut = runCLI(t, "ca", "revoke", "--deny-list", deny, "branch-000", "serial:"+serial[1])
	require.Equal(t, 0, code, errOut)
	list, err := pki.LoadDenyList(deny)
	require.NoError(t, err)
	assert.True(t, list.Revoked(pki.Identity{Name: "branch-000"}))
	assert.True(t, list.Revoked(pki.Identity{Name: "x", Serial: serial[1]}))

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"init over an existing CA", []string{"ca", "init", "--dir", dir}, 1, "already exists"},
		{"reissue over an existing kit", []string{"ca", "issue", "--dir", dir, "--role", "client", "--name", "branch-000"}, 1, "already exists"},
		{"unknown role", []string{"ca", "issue", "--dir", dir, "--role", "root", "--name", "x"}, 2, `role "root"`},
		{"bad name", []string{"ca", "issue", "--dir", dir, "--role", "client", "--name", "../x"}, 2, "must start with a letter or digit"},
		{"hosts on a client", []string{"ca", "issue", "--dir", dir, "--role", "client", "--name", "x", "--host", "h"}, 2, "hosts are for coordinator"},
		{"missing name", []string{"ca", "issue", "--dir", dir, "--role", "client"}, 2, "--name are required"},
		{"no CA", []string{"ca", "issue", "--dir", t.TempDir(), "--role", "client", "--name", "x"}, 1, "ca.pem"},
		{"bad deny entry", []string{"ca", "revoke", "--deny-list", deny, "a b"}, 2, "arguments:1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			assert.Equal(t, tc.code, code, errOut)
			assert.Contains(t, errOut, tc.msg)
		})
	}
}

func TestTransportMustBeMutualTLSOrExplicitlyInsecure(t *testing.T) {
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schema, []byte("name: tiny\nlabel:\n  column: y\n  positive: \"1\"\n  negative: [\"0\"]\nnumeric: [x]\nconsent:\n  tracked: false\n"), 0o600))
	pkiDir := filepath.Join(dir, "pki")
	code, _, errOut := runCLI(t, "ca", "init", "--dir", pkiDir)
	require.Equal(t, 0, code, errOut)
	code, _, errOut = runCLI(t, "ca", "issue", "--dir", pkiDir, "--role", "client", "--name", "branch-001")
	require.Equal(t, 0, code, errOut)
	code, _, errOut = runCLI(t, "synth", "--out", filepath.Join(dir, "data"), "--branches", "1", "--customers", "50")
	require.Equal(t, 0, code, errOut)
	data, err := filepath.Glob(filepath.Join(dir, "data", "branch-*.csv"))
	require.NoError(t, err)
	require.NotEmpty(t, data)

	t.Setenv("FEDPROP_RUN_SCHEMA", schema)
	coord := []string{"coordinator", "--store", filepath.Join(dir, "c.db"), "--listen", "256.0.0.1:0"}
	clientArgs := []string{"client", "--id", "branch-000", "--data", data[0], "--schema", filepath.Join(dir, "data", "schema.yaml")}
	kit := []string{"--tls-ca", filepath.Join(pkiDir, "ca.pem"), "--tls-cert", filepath.Join(pkiDir, "branch-001.pem"), "--tls-key", filepath.Join(pkiDir, "branch-001-key.pem")}
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"coordinator without TLS", coord, 2, "tls.ca, tls.cert, tls.key: required for mutual TLS"},
		{"coordinator with TLS and insecure", append(coord, "--insecure", "--tls-deny-list", "deny.txt"), 2, "choose one"},
		{"coordinator with a client certificate", append(coord, kit...), 2, "a coordinator needs a coordinator certificate"},
		{"insecure coordinator warns", append(coord, "--insecure"), 1, "INSECURE: serving plaintext gRPC"},
		{"client without TLS", clientArgs, 2, "tls.ca, tls.cert, tls.key: required"},
		{"client with another client's certificate", append(clientArgs, kit...), 2, `tls.cert ` + filepath.Join(pkiDir, "branch-001.pem") + ` is for client/branch-001, but this client's id is "branch-000"`},
		{"model list without TLS", []string{"model", "list", "--coordinator", "127.0.0.1:1"}, 2, "tls.ca, tls.cert, tls.key: required"},
		{"insecure model list warns", []string{"model", "list", "--coordinator", "127.0.0.1:1", "--insecure"}, 1, "INSECURE: dialling the coordinator in plaintext"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			assert.Equal(t, tc.code, code, errOut)
			assert.Contains(t, errOut, tc.msg)
		})
	}
}
