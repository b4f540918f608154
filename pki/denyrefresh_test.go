package pki

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a log sink the refresh loop writes while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDenyListRefreshOnSIGHUP edits the deny list and sends the refresh loop a SIGHUP, with
// polling an hour away: the loop re-reads at once, and a bad edit leaves the list in force.
// The signal is sent on an unbuffered channel and the loop stopped before anything is read,
// so every signal sent has been handled by then.
func TestDenyListRefreshOnSIGHUP(t *testing.T) {
	cases := []struct {
		name    string
		edit    string
		revoked map[string]bool // name -> revoked after the signal
		logs    []string
		notLogs []string
	}{
		{"an added entry is refused at once", "bank-a\nbank-b\n",
			map[string]bool{"bank-a": true, "bank-b": true}, []string{"SIGHUP: re-reading the deny list", "deny list reloaded", "entries=2"}, []string{"level=ERROR"}},
		{"a removed entry is let in again", "# bank-a came back\n",
			map[string]bool{"bank-a": false}, []string{"SIGHUP: re-reading the deny list", "deny list reloaded", "entries=0"}, []string{"level=ERROR"}},
		{"a bad edit keeps the previous list", "bank-b\nnot valid\n",
			map[string]bool{"bank-a": true, "bank-b": false}, []string{"level=ERROR", "deny list not reloaded; the previous list stays in force", "one entry a line"}, []string{"deny list reloaded"}},
		{"an unchanged file logs no reload", "bank-a\n",
			map[string]bool{"bank-a": true}, []string{"SIGHUP: re-reading the deny list"}, []string{"deny list reloaded", "level=ERROR"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "deny.txt")
			require.NoError(t, os.WriteFile(path, []byte("bank-a\n"), 0o600))
			d, err := LoadDenyList(path)
			require.NoError(t, err)
			var logs syncBuffer
			ctx, cancel := context.WithCancel(context.Background())
			hup := make(chan os.Signal)
			done := make(chan struct{})
			go func() { defer close(done); d.Refresh(ctx, time.Hour, hup, slog.New(slog.NewTextHandler(&logs, nil))) }()

			require.NoError(t, os.WriteFile(path, []byte(tc.edit), 0o600))
			hup <- syscall.SIGHUP
			cancel()
			<-done
			for name, want := range tc.revoked {
				assert.Equal(t, want, d.Revoked(Identity{Name: name}), name)
			}
			for _, line := range tc.logs {
				assert.Contains(t, logs.String(), line)
			}
			for _, line := range tc.notLogs {
				assert.NotContains(t, logs.String(), line)
			}
		})
	}
}

// TestDenyListRefreshPolls edits the deny list with no signal: the next poll picks it up.
func TestDenyListRefreshPolls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deny.txt")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	d, err := LoadDenyList(path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Refresh(ctx, 5*time.Millisecond, nil, quiet()) }()
	defer func() { cancel(); <-done }()

	assert.False(t, d.Revoked(Identity{Name: "bank-a"}))
	require.NoError(t, os.WriteFile(path, []byte("bank-a\n"), 0o600))
	require.Eventually(t, func() bool { return d.Revoked(Identity{Name: "bank-a"}) }, 10*time.Second, 5*time.Millisecond)
}

// TestDenyListRefreshReturns: the loop ends with its context, and at once for a list read
// from no file, which has nothing to refresh.
func TestDenyListRefreshReturns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deny.txt")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	fromFile, err := LoadDenyList(path)
	require.NoError(t, err)
	noFile, err := LoadDenyList("")
	require.NoError(t, err)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		list *DenyList
		ctx  context.Context
	}{
		{"a cancelled context", fromFile, ended},
		{"no file", noFile, context.Background()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			go func() { defer close(done); tc.list.Refresh(tc.ctx, time.Hour, make(chan os.Signal), quiet()) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Refresh did not return")
			}
		})
	}
}
