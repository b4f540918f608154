package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/internal/confcheck"
)

// TestLoadConfigNamesMistakesAsWritten: a misspelt key or a value of the wrong type in the
// coordinator's or a client's configuration is named by its key path as written, with its
// line and the nearest valid key, never by a Go type; one set by a FEDPROP_ variable or a
// flag names the variable or the flag.
func TestLoadConfigNamesMistakesAsWritten(t *testing.T) {
	dir := t.TempDir()
	write := func(doc string) string {
		path := filepath.Join(dir, "config.yaml")
		require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
		return path
	}
	coordinatorCfg := func() any { c := defaultCoordinatorConfig(); return &c }
	clientCfg := func() any { c := defaultClientConfig(); return &c }
	tests := []struct {
		name string
		cfg  func() any
		doc  string
		env  map[string]string
		flag string // --rounds, bound to run.rounds, set to this value when not empty
		want string
		typo bool // a *confcheck.UnknownKeyError; otherwise a *confcheck.ValueError
	}{
		{name: "coordinator: a typo in run", cfg: coordinatorCfg, doc: "listen: 127.0.0.1:0\nrun:\n  roudns: 10\n",
			want: "run.roudns: line 3: unknown key, did you mean run.rounds?", typo: true},
		{name: "coordinator: a word for an integer", cfg: coordinatorCfg, doc: "run:\n  rounds: ten\n",
			want: `run.rounds: line 2: "ten" is not an integer`},
		{name: "coordinator: a typo of an inlined key", cfg: coordinatorCfg, doc: "insecrue: true\n",
			want: "insecrue: line 1: unknown key, did you mean insecure?", typo: true},
		{name: "coordinator: a word for a duration", cfg: coordinatorCfg, doc: "tick: often\n",
			want: `tick: line 1: "often" is not a duration such as 30s or 5m`},
		{name: "client: a typo in a section", cfg: clientCfg, doc: "id: branch-1\nsecure_aggregation:\n  comittee: [a]\n",
			want: "secure_aggregation.comittee: line 3: unknown key, did you mean secure_aggregation.committee?", typo: true},
		{name: "client: a word for a number", cfg: clientCfg, doc: "holdout_fraction: a fifth\n",
			want: `holdout_fraction: line 1: "a fifth" is not a number`},
		{name: "from the environment", cfg: coordinatorCfg, env: map[string]string{"FEDPROP_RUN_ROUNDS": "ten"},
			want: `FEDPROP_RUN_ROUNDS: run.rounds: "ten" is not an integer`},
		{name: "from a flag", cfg: coordinatorCfg, flag: "ten",
			want: `--rounds: run.rounds: "ten" is not an integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			path := ""
			if tt.doc != "" {
				path = write(tt.doc)
			}
			flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
			flags.String("rounds", "", "")
			if tt.flag != "" {
				require.NoError(t, flags.Set("rounds", tt.flag))
			}
			err := loadConfig(path, tt.cfg(), flags, map[string]string{"rounds": "run.rounds"})
			require.Error(t, err)
			assert.ErrorContains(t, err, tt.want)
			assert.True(t, errors.Is(err, coordinator.ErrBadConfig), "exit status 2")
			assert.NotContains(t, err.Error(), "coordinator.RunConfig")
			assert.NotContains(t, err.Error(), "main.")
			var uk *confcheck.UnknownKeyError
			var ve *confcheck.ValueError
			assert.Equal(t, tt.typo, errors.As(err, &uk), "UnknownKeyError")
			assert.Equal(t, !tt.typo, errors.As(err, &ve), "ValueError")
		})
	}
}

// TestTyposInRoleConfigsExitTwoWithTheKey runs the example through the command line:
// exit status 2 and the key as written, with the nearest valid one.
func TestTyposInRoleConfigsExitTwoWithTheKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "coordinator.yaml")
	require.NoError(t, os.WriteFile(path, []byte("insecure: true\nlisten: 127.0.0.1:0\nrun:\n  roudns: 10\n"), 0o600))
	code, _, stderr := runCLI(t, "coordinator", "--config", path)
	assert.Equal(t, 2, code, stderr)
	assert.Equal(t, "fedprop: bad configuration: config "+path+": run.roudns: line 4: unknown key, did you mean run.rounds?\n", stderr)
}
