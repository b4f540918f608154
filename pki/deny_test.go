package pki

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDenyList(t *testing.T) {
	set, err := ParseDenyList([]byte(`# revoked after the laptop was lost
bank-a
name:0abc          # a name that looks like a serial
serial:1F:2e       # as openssl prints it
0x00DEAD
deadbeef
`), "deny.txt")
	require.NoError(t, err)
	cases := []struct {
		id      Identity
		revoked bool
	}{
		{Identity{Name: "bank-a", Serial: "99"}, true},
		{Identity{Name: "bank-b", Serial: "99"}, false},
		{Identity{Name: "0abc", Serial: "1"}, true},
		{Identity{Name: "x", Serial: "abc"}, false},
		{Identity{Name: "x", Serial: "1f2e"}, true},
		{Identity{Name: "x", Serial: "1F2E"}, true},
		{Identity{Name: "x", Serial: "dead"}, true},
		{Identity{Name: "deadbeef", Serial: "1"}, true},
		{Identity{Name: "x", Serial: "deadbeef"}, true},
		{Identity{Name: "x"}, false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.revoked, set.Revoked(tc.id), "%+v", tc.id)
	}
}

func TestParseDenyListNamesTheBadLine(t *testing.T) {
	cases := []struct {
		name, in, msg string
	}{
		{"two entries on a line", "ok\nbank-a bank-b\n", "deny.txt:2:"},
		{"bad name", "name:a/b\n", "deny.txt:1:"},
		{"bad serial", "serial:xyz\n", "deny.txt:1:"},
		{"odd colon groups", "serial:1:22\n", "deny.txt:1:"},
		{"zero serial", "serial:00\n", "deny.txt:1:"},
		{"neither", "\n\n/etc/passwd\n", "deny.txt:3:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDenyList([]byte(tc.in), "deny.txt")
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestDenyListReloadKeepsThePreviousListOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deny.txt")
	require.NoError(t, os.WriteFile(path, []byte("bank-a\n"), 0o600))
	d, err := LoadDenyList(path)
	require.NoError(t, err)
	assert.True(t, d.Revoked(Identity{Name: "bank-a"}))
	changed, err := d.Reload()
	require.NoError(t, err)
	assert.False(t, changed, "same content")

	require.NoError(t, os.WriteFile(path, []byte("bank-a\nnot valid\n"), 0o600))
	_, err = d.Reload()
	require.ErrorIs(t, err, ErrInvalid)
	assert.True(t, d.Revoked(Identity{Name: "bank-a"}), "the previous list stays in force")

	require.NoError(t, os.Remove(path))
	_, err = d.Reload()
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.True(t, d.Revoked(Identity{Name: "bank-a"}))

	require.NoError(t, os.WriteFile(path, []byte("bank-b\n"), 0o600))
	changed, err = d.Reload()
	require.NoError(t, err)
	assert.True(t, changed)
	assert.False(t, d.Revoked(Identity{Name: "bank-a"}))
	assert.True(t, d.Revoked(Identity{Name: "bank-b"}))
	assert.Equal(t, 1, d.Len())

	_, err = LoadDenyList(filepath.Join(t.TempDir(), "missing.txt"))
	require.ErrorIs(t, err, os.ErrNotExist, "a missing deny list is an error at start")
	empty, err := LoadDenyList("")
	require.NoError(t, err)
	assert.False(t, empty.Revoked(Identity{Name: "bank-a"}))
}

func TestDenyListWatchPicksUpAnEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deny.txt")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	d, err := LoadDenyList(path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Watch(ctx, 10*time.Millisecond, quiet()) }()
	defer func() { cancel(); <-done }()

	assert.False(t, d.Revoked(Identity{Name: "bank-a"}))
	require.NoError(t, os.WriteFile(path, []byte("bank-a\n"), 0o600))
	require.Eventually(t, func() bool { return d.Revoked(Identity{Name: "bank-a"}) }, 10*time.Second, 10*time.Millisecond)
}

// FuzzParseDenyList: no input panics, and every accepted name entry revokes that name.
func FuzzParseDenyList(f *testing.F) {
	f.Add([]byte("bank-a\nserial:1f:2e\n# c\nname:x\n0xdead\n"))
	f.Add([]byte("a b\n"))
	f.Add([]byte("serial:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseDenyList(data, "fuzz")
		if err != nil {
			return
		}
		for name := range set.names {
			if ValidName(name) != nil || !set.Revoked(Identity{Name: name}) {
				t.Fatalf("name entry %q not usable", name)
			}
		}
		for serial := range set.serials {
			if _, ok := parseSerial(serial); !ok {
				t.Fatalf("serial entry %q does not parse again", serial)
			}
		}
	})
}
