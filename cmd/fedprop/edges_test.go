package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	pb "github.com/fedprop/fedprop/proto/fedprop/v1"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store/mem"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

const tinySchemaYAML = "name: tiny\nlabel:\n  column: y\n  positive: \"1\"\n  negative: [\"0\"]\nnumeric: [x]\nconsent:\n  tracked: false\n"

// TestConfigEdgesExitTwoNamingTheKey feeds each role a configuration that used to panic, spin
// or pass silently: a NaN or infinite float, a negative or zero duration. Each must exit with
// status 2 and name the key as the file spells it, before anything starts.
func TestConfigEdgesExitTwoNamingTheKey(t *testing.T) {
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schema, []byte(tinySchemaYAML), 0o600))
	write := func(name, doc string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
		return path
	}
	coordinatorWith := func(name, extra string) []string {
		return []string{"coordinator", "--config", write(name, "insecure: true\nlisten: 256.0.0.1:0\nstore: "+filepath.Join(dir, name+".db")+"\n"+extra+"run:\n  schema: "+schema+"\n"+
			"  min_clients: 2\n"), "--log-level", "error"}
	}
	coordinatorRun := func(name, run string) []string {
		return []string{"coordinator", "--config", write(name, "insecure: true\nlisten: 256.0.0.1:0\nstore: "+filepath.Join(dir, name+".db")+"\nrun:\n  schema: "+schema+"\n"+run), "--log-level", "error"}
	}
	clientWith := func(name, extra string) []string {
		return []string{"client", "--config", write(name, "id: branch-1\ninsecure: true\nschema: "+schema+"\ndata: "+filepath.Join(dir, "none.csv")+"\n"+extra)}
	}
	simWith := func(name, run, extra string) []string {
		return []string{"sim", "--config", write(name, "seed: 1\ndata: {source: synthetic, synthetic: {branches: 3, customers_per_branch: 100}}\nrun: {rounds: 1, min_clients: 3"+run+"}\n"+extra),
			"--out", filepath.Join(dir, name+"-out")}
	}
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"negative tick", coordinatorWith("tick.yaml", "tick: -1s\n"), "tick: must be a positive duration, got -1s"},
		{"zero tick", coordinatorWith("tick0.yaml", "tick: 0s\n"), "tick: must be a positive duration, got 0s"},
		{"NaN cohort fraction", coordinatorRun("cohort.yaml", "  cohort_fraction: .nan\n"), "run.cohort_fraction: must be a finite number, got NaN"},
		{"infinite learning rate", coordinatorRun("lr.yaml", "  train: {learning_rate: .inf}\n"), "run.train.learning_rate: must be a finite number, got +Inf"},
		{"negative round deadline", coordinatorRun("deadline.yaml", "  round_deadline: -1m\n"), "run.round_deadline: must be a positive duration, got -1m0s"},
		{"NaN rate limit", coordinatorWith("rate.yaml", "rate_limit: {per_second: .nan}\n"), "rate_limit.per_second: must be a finite number, got NaN"},
		{"schema_dir that is no directory", coordinatorWith("dir.yaml", "schema_dir: "+schema+"\n"), "schema_dir: " + schema + " is not a directory"},
		{"negative backoff", clientWith("backoff.yaml", "max_backoff: -5s\n"), "max_backoff: must be a positive duration, got -5s"},
		{"negative poll wait", clientWith("poll.yaml", "poll_wait: -1s\n"), "poll_wait: must be a positive duration, got -1s"},
		{"NaN holdout fraction", clientWith("holdout.yaml", "holdout_fraction: .nan\n"), "holdout_fraction: must be a finite number, got NaN"},
		{"NaN privacy floor", clientWith("floor.yaml", "privacy: {max_epsilon: .nan}\n"), "privacy.max_epsilon: must be a finite number, got NaN"},
		{"NaN dropout in a simulation", simWith("dropout.yaml", "", "failures: {dropout: .nan}\n"), "failures.dropout: must be a finite number, got NaN"},
		{"NaN in a simulation's run", simWith("simrun.yaml", ", cohort_fraction: .nan", ""), "run.cohort_fraction: must be a finite number, got NaN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			assert.Equal(t, 2, code, errOut)
			assert.Contains(t, errOut, tc.msg)
			assert.NotContains(t, errOut, "panic")
		})
	}
}

// TestKeyFilesOthersCanReadAreRefused gives each party a private key of mode 0644 (and 0640):
// the coordinator, a client and a model owner refuse to start with it, and so does fedprop ca
// with its CA key, each with the fix in the message and exit status 2.
func TestKeyFilesOthersCanReadAreRefused(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	code, _, errOut := runCLI(t, "ca", "init", "--dir", pkiDir)
	require.Equal(t, 0, code, errOut)
	for _, p := range []struct{ role, name string }{{"coordinator", "coord"}, {"client", "branch-1"}, {"owner", "owner"}} {
		code, _, errOut = runCLI(t, "ca", "issue", "--dir", pkiDir, "--role", p.role, "--name", p.name)
		require.Equal(t, 0, code, errOut)
	}
	kit := func(name string) []string {
		return []string{"--tls-ca", filepath.Join(pkiDir, "ca.pem"), "--tls-cert", filepath.Join(pkiDir, name+".pem"), "--tls-key", filepath.Join(pkiDir, name+"-key.pem")}
	}
	schema := filepath.Join(dir, "schema.yaml")
	require.NoError(t, os.WriteFile(schema, []byte(tinySchemaYAML), 0o600))
	t.Setenv("FEDPROP_RUN_SCHEMA", schema)

	cases := []struct {
		name string
		key  string
		mode os.FileMode
		args []string
	}{
		{"coordinator key readable by all", "coord-key.pem", 0o644,
			append([]string{"coordinator", "--store", filepath.Join(dir, "c.db"), "--listen", "256.0.0.1:0"}, kit("coord")...)},
		{"client key readable by its group", "branch-1-key.pem", 0o640,
			append([]string{"client", "--id", "branch-1", "--schema", schema, "--data", filepath.Join(dir, "none.csv")}, kit("branch-1")...)},
		{"owner key readable by all", "owner-key.pem", 0o604, append([]string{"model", "list", "--coordinator", "127.0.0.1:1"}, kit("owner")...)},
		{"CA key readable by all", "ca-key.pem", 0o644, []string{"ca", "issue", "--dir", pkiDir, "--role", "client", "--name", "branch-2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := filepath.Join(pkiDir, tc.key)
			require.NoError(t, os.Chmod(key, tc.mode))
			defer func() { require.NoError(t, os.Chmod(key, 0o600)) }()
			code, _, errOut := runCLI(t, tc.args...)
			assert.Equal(t, 2, code, errOut)
			assert.Contains(t, errOut, key)
			assert.Contains(t, errOut, "chmod 600")
		})
	}
}

// TestStartRunReadsSchemasOnlyFromSchemaDir asks StartRun's loader for schemas by hostile
// names: it reads only regular files inside schema_dir, at most maxSchemaBytes, and answers
// every name outside it the same way, existing or not, without touching the file system.
func TestStartRunReadsSchemasOnlyFromSchemaDir(t *testing.T) {
	root := t.TempDir()
	schemas := filepath.Join(root, "schemas")
	require.NoError(t, os.Mkdir(schemas, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(schemas, "tiny.yaml"), []byte(tinySchemaYAML), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(root, "secret.yaml"), []byte(tinySchemaYAML), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(schemas, "huge.yaml"), []byte("#"+strings.Repeat("x", maxSchemaBytes)+"\n"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(root, "secret.yaml"), filepath.Join(schemas, "escape.yaml")))
	require.NoError(t, os.Symlink("/dev/zero", filepath.Join(schemas, "zero.yaml")))
	require.NoError(t, os.Mkdir(filepath.Join(schemas, "sub"), 0o700))

	load := specLoader(schemas)
	doc := func(schema string) []byte { return []byte("id: r\nmin_clients: 2\nschema: " + schema + "\n") }
	cases := []struct {
		name   string
		schema string
		want   error  // nil: loads
		msg    string // in the error
	}{
		{"a name inside", "tiny.yaml", nil, ""},
		{"an absolute path inside", filepath.Join(schemas, "tiny.yaml"), nil, ""},
		{"a device", "/dev/zero", errNoSuchSchema, `"/dev/zero": no readable schema file`},
		{"an existing file outside", filepath.Join(root, "secret.yaml"), errNoSuchSchema, "no readable schema file"},
		{"a missing file outside", filepath.Join(root, "nothing.yaml"), errNoSuchSchema, "no readable schema file"},
		{"up and out", "../secret.yaml", errNoSuchSchema, "no readable schema file"},
		{"a link out of the directory", "escape.yaml", errNoSuchSchema, "no readable schema file"},
		{"a link to a device", "zero.yaml", errNoSuchSchema, "no readable schema file"},
		{"a directory", "sub", errNoSuchSchema, "no readable schema file"},
		{"a missing file inside", "none.yaml", errNoSuchSchema, "no readable schema file"},
		{"a file over the cap", "huge.yaml", coordinator.ErrBadConfig, "larger than 1048576 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := load(doc(tc.schema))
			if tc.want == nil {
				require.NoError(t, err)
				assert.Equal(t, "tiny", spec.Schema.Name)
				return
			}
			require.ErrorIs(t, err, tc.want)
			require.ErrorIs(t, err, coordinator.ErrBadConfig)
			assert.Contains(t, err.Error(), "run.schema")
			assert.Contains(t, err.Error(), tc.msg)
			assert.NotContains(t, err.Error(), "no such file", "nothing tells a missing file from an existing one")
			assert.NotContains(t, err.Error(), "permission denied")
		})
	}

	// The same name outside schema_dir reads the same whether or not it exists.
	_, exists := load(doc(filepath.Join(root, "secret.yaml")))
	_, missing := load(doc(filepath.Join(root, "nothing.yaml")))
	assert.Equal(t, strings.Replace(exists.Error(), "secret.yaml", "X", 1), strings.Replace(missing.Error(), "nothing.yaml", "X", 1))

	_, err := specLoader("")(doc("tiny.yaml"))
	require.ErrorIs(t, err, coordinator.ErrBadConfig)
	assert.Contains(t, err.Error(), "set schema_dir")
}

// TestStartRunOverGRPCRefusesHostileRunsAndAuditsNone sends StartRun the attacks of issue 12
// through the coordinator's own loader: /dev/zero as the schema, and a NaN cohort_fraction.
// Both are InvalidArgument at once, the second naming run.cohort_fraction, and the audit log
// records no run start for either.
func TestStartRunOverGRPCRefusesHostileRunsAndAuditsNone(t *testing.T) {
	schemas := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(schemas, "tiny.yaml"), []byte(tinySchemaYAML), 0o600))
	log := &audit.MemStore{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := coordinator.NewServer(ctx, mem.New(), nil, coordinator.ServerConfig{TickInterval: 10 * time.Millisecond, Audit: log, Logger: quietLog()})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpctransport.NewGRPCServer(srv, "test", specLoader(schemas))
	done := make(chan struct{}, 2)
	go func() { _ = gs.Serve(lis); done <- struct{}{} }()
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); gs.Stop(); <-done; <-done }()
	conn, err := grpctransport.Dial(lis.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	admin := pb.NewAdminServiceClient(conn)

	for _, tc := range []struct{ name, doc, msg string }{
		{"/dev/zero as the schema", "id: zero\nmin_clients: 2\nschema: /dev/zero\n", "no readable schema file"},
		{"NaN cohort fraction", "id: nan\nmin_clients: 2\nschema: tiny.yaml\ncohort_fraction: .nan\n", "run.cohort_fraction: must be a finite number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := admin.StartRun(ctx, &pb.StartRunRequest{ConfigYaml: []byte(tc.doc)})
			require.Error(t, err)
			s, _ := status.FromError(err)
			assert.Equal(t, codes.InvalidArgument, s.Code(), "status %v", s)
			assert.Contains(t, s.Message(), tc.msg)
		})
	}
	entries, err := log.Entries(ctx)
	require.NoError(t, err)
	assert.Empty(t, entries, "no run started, none audited")

	id, err := grpctransport.NewAdminClient(conn).StartRun(ctx, []byte("id: good\nmin_clients: 2\nschema: tiny.yaml\n"))
	require.NoError(t, err)
	assert.Equal(t, "good", id)
	info, err := srv.GetRun(ctx, "good")
	require.NoError(t, err)
	assert.Equal(t, "good", info.State.ID)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestListKeysFromTheEnvironment: a list-valued key (secure_aggregation.committee, .parameters)
// is spelt a,b,c in its FEDPROP_ variable, as the README's configuration tables say.
func TestListKeysFromTheEnvironment(t *testing.T) {
	t.Setenv("FEDPROP_SECURE_AGGREGATION_COMMITTEE", "branch-000, branch-001,branch-002")
	t.Setenv("FEDPROP_SECURE_AGGREGATION_PARAMETERS", "[simulation, key-recovery]")
	cfg := defaultClientConfig()
	require.NoError(t, loadConfig("", &cfg, nil, nil))
	assert.Equal(t, []string{"branch-000", "branch-001", "branch-002"}, cfg.SecureAggregation.Committee)
	assert.Equal(t, []string{"simulation", "key-recovery"}, cfg.SecureAggregation.Parameters)
}
