package console_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestFindChromiumFailsUnderCIAndSkipsElsewhere pins what the browser tests do about Chromium,
// with the file system and PATH simulated: under CI=true a missing Chromium fails them (CI
// installs it, so its absence is a broken machine), elsewhere it skips them; either way the
// message says how to install it. FEDPROP_CHROMIUM is the only place looked at when set.
func TestFindChromiumFailsUnderCIAndSkipsElsewhere(t *testing.T) {
	const custom = "/opt/chromium/chrome"
	tests := []struct {
		name     string
		env      map[string]string
		files    []string // paths that exist
		onPath   string   // what PATH finds for "chromium" ("" nothing)
		wantPath string
		wantFail bool
		wantMsg  []string
	}{
		{name: "Debian's chromium", files: []string{chromiumDefault}, wantPath: chromiumDefault},
		{name: "Debian's chromium under CI", env: map[string]string{"CI": "true"}, files: []string{chromiumDefault}, wantPath: chromiumDefault},
		{name: "chromium on PATH", onPath: "/usr/local/bin/chromium", wantPath: "/usr/local/bin/chromium"},
		{name: "FEDPROP_CHROMIUM", env: map[string]string{"FEDPROP_CHROMIUM": custom}, files: []string{custom, chromiumDefault}, wantPath: custom},
		{name: "absent: skip", wantMsg: []string{"skipping: ", "apt-get install chromium", "FEDPROP_CHROMIUM"}},
		{name: "absent under CI: fail", env: map[string]string{"CI": "true"}, wantFail: true,
			wantMsg: []string{"CI=true and Chromium not found", "apt-get install chromium"}},
		{name: "CI other than true: skip", env: map[string]string{"CI": "1"}, wantMsg: []string{"skipping: "}},
		{name: "FEDPROP_CHROMIUM names nothing: not replaced by another", env: map[string]string{"FEDPROP_CHROMIUM": custom},
			files: []string{chromiumDefault}, onPath: chromiumDefault, wantMsg: []string{"skipping: FEDPROP_CHROMIUM=" + custom + " names no file", "apt-get install chromium"}},
		{name: "FEDPROP_CHROMIUM names nothing under CI: fail", env: map[string]string{"FEDPROP_CHROMIUM": custom, "CI": "true"},
			files: []string{chromiumDefault}, wantFail: true, wantMsg: []string{"CI=true and FEDPROP_CHROMIUM=" + custom + " names no file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exists := func(p string) bool {
				for _, f := range tt.files {
					if f == p {
						return true
					}
				}
				return false
			}
			lookPath := func(string) (string, error) {
				if tt.onPath == "" {
					return "", errors.New("not found")
				}
				return tt.onPath, nil
			}
			path, fail, msg := findChromium(func(k string) string { return tt.env[k] }, exists, lookPath)
			assert.Equal(t, tt.wantPath, path)
			assert.Equal(t, tt.wantFail, fail)
			if tt.wantPath != "" {
				assert.Empty(t, msg)
			}
			for _, w := range tt.wantMsg {
				assert.Contains(t, msg, w)
			}
		})
	}
}
