package crashpoint_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/internal/crashpoint"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want crashpoint.Spec
		ok   bool
	}{
		{"commit:3", crashpoint.Spec{Point: "commit", N: 3}, true},
		{" result.train:12 ", crashpoint.Spec{Point: "result.train", N: 12}, true},
		{"commit", crashpoint.Spec{}, false},
		{":3", crashpoint.Spec{}, false},
		{"commit:0", crashpoint.Spec{}, false},
		{"commit:-1", crashpoint.Spec{}, false},
		{"commit:x", crashpoint.Spec{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := crashpoint.Parse(tt.in)
			if !tt.ok {
				require.ErrorIs(t, err, crashpoint.ErrBadSpec)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.want.String(), got.String())
		})
	}
}

func TestHookKillsAtTheNthMatchingPoint(t *testing.T) {
	tests := []struct {
		spec   string
		points []string
		killAt int // index into points, -1 for never
	}{
		{"commit:2", []string{"result.train", "commit", "committed", "commit", "commit"}, 3},
		{"result:3", []string{"result.stats", "aggregate", "result.train", "result.evaluate"}, 3},
		{"result.train:1", []string{"result.stats", "result.trainer", "result.train"}, 2},
		{"aggregate:5", []string{"aggregate", "aggregate"}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			spec, err := crashpoint.Parse(tt.spec)
			require.NoError(t, err)
			var log bytes.Buffer
			killed := -1
			i := 0
			hook := spec.Hook(&log, func() {
				require.Equal(t, -1, killed, "killed twice")
				killed = i
			})
			for i = range tt.points {
				hook(tt.points[i])
			}
			assert.Equal(t, tt.killAt, killed)
			if tt.killAt >= 0 {
				assert.Contains(t, log.String(), "crashpoint: killing the process at "+tt.spec[:len(tt.spec)-2])
			} else {
				assert.Empty(t, log.String())
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(crashpoint.EnvVar, "")
	hook, err := crashpoint.FromEnv()
	require.NoError(t, err)
	assert.Nil(t, hook)
	t.Setenv(crashpoint.EnvVar, "commit")
	_, err = crashpoint.FromEnv()
	require.ErrorIs(t, err, crashpoint.ErrBadSpec)
	t.Setenv(crashpoint.EnvVar, "commit:1")
	hook, err = crashpoint.FromEnv()
	require.NoError(t, err)
	assert.NotNil(t, hook)
}
