package pki

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultDenyListPoll is how often a watched deny list is re-read.
const DefaultDenyListPoll = 2 * time.Second

// maxDenyListBytes bounds a deny list file, which is read again and again.
const maxDenyListBytes = 16 << 20

// DenySet is a parsed deny list: certificate names and serial numbers that are refused.
type DenySet struct {
	names   map[string]bool
	serials map[string]bool // lower-case hexadecimal without leading zeros, as Identity.Serial
}

// Len is the number of entries.
func (s *DenySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.names) + len(s.serials)
}

// Revoked reports whether id's name or serial number is on the list.
func (s *DenySet) Revoked(id Identity) bool {
	if s == nil {
		return false
	}
	return s.names[id.Name] || (id.Serial != "" && s.serials[strings.ToLower(id.Serial)])
}

// ParseDenyList reads a deny list: one entry a line, "#" starts a comment, blank lines are
// ignored. An entry is "name:NAME", "serial:HEX" (colons between hex bytes and a 0x prefix
// allowed, as openssl and fedprop ca issue print serials), or a bare word, which revokes both
// the certificate of that name and, when the word is hexadecimal, the serial it spells. source
// names the input in errors, which give its line.
func ParseDenyList(data []byte, source string) (*DenySet, error) {
	set := &DenySet{names: map[string]bool{}, serials: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %w: %s", source, line, ErrInvalid, fmt.Sprintf(format, args...))
		}
		if strings.ContainsAny(text, " \t") {
			return nil, bad("one entry a line, got %q", text)
		}
		switch {
		case strings.HasPrefix(text, "name:"):
			name := strings.TrimPrefix(text, "name:")
			if err := ValidName(name); err != nil {
				return nil, bad("%v", err)
			}
			set.names[name] = true
		case strings.HasPrefix(text, "serial:"):
			serial, ok := parseSerial(strings.TrimPrefix(text, "serial:"))
			if !ok {
				return nil, bad("%q is not a hexadecimal serial number", text)
			}
			set.serials[serial] = true
		default:
			serial, isSerial := parseSerial(text)
			isName := ValidName(text) == nil
			if !isSerial && !isName {
				return nil, bad("%q is neither a certificate name nor a hexadecimal serial number", text)
			}
			if isSerial {
				set.serials[serial] = true
			}
			if isName {
				set.names[text] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w: %w", source, line+1, ErrInvalid, err)
	}
	return set, nil
}

// parseSerial normalises a hexadecimal serial: "0x" prefix and ':' separators removed, no
// leading zeros, lower case.
func parseSerial(s string) (string, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if strings.Contains(s, ":") {
		for _, part := range strings.Split(s, ":") {
			if len(part) != 2 {
				return "", false
			}
		}
		s = strings.ReplaceAll(s, ":", "")
	}
	if s == "" || len(s) > 64 {
		return "", false
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return "", false
	}
	return n.Text(16), true
}

// DenyList is a deny list file that can be re-read while the coordinator runs. Revoked is
// safe for concurrent use with Reload and Watch.
type DenyList struct {
	path string
	set  atomic.Pointer[DenySet]

	mu   sync.Mutex // serialises reloads
	last []byte
}

// LoadDenyList reads the deny list at path. An empty path gives an empty list that never
// changes.
func LoadDenyList(path string) (*DenyList, error) {
	d := &DenyList{path: path}
	d.set.Store(&DenySet{})
	if path == "" {
		return d, nil
	}
	if _, err := d.Reload(); err != nil {
		return nil, err
	}
	return d, nil
}

// Path is the file the list is read from ("" for none).
func (d *DenyList) Path() string { return d.path }

// Revoked reports whether id is on the list as last read.
func (d *DenyList) Revoked(id Identity) bool { return d.set.Load().Revoked(id) }

// Len is the number of entries as last read.
func (d *DenyList) Len() int { return d.set.Load().Len() }

// Reload re-reads the file. It reports whether the content changed. When the file cannot be
// read or parsed the previous list stays in force and the error says why.
func (d *DenyList) Reload() (changed bool, err error) {
	if d.path == "" {
		return false, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	data, err := readLimited(d.path, maxDenyListBytes)
	if err != nil {
		return false, fmt.Errorf("deny list: %w", err)
	}
	if d.last != nil && bytes.Equal(data, d.last) {
		return false, nil
	}
	set, err := ParseDenyList(data, d.path)
	if err != nil {
		return false, fmt.Errorf("deny list: %w", err)
	}
	d.set.Store(set)
	d.last = data
	return true, nil
}

// Watch re-reads the file every interval (DefaultDenyListPoll when not positive) until ctx
// ends, so that an edited deny list takes effect without a restart. Changes and errors are
// logged; after an error the previous list stays in force.
func (d *DenyList) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	d.Refresh(ctx, interval, nil, log)
}

// ReloadAndLog reloads the list and logs the outcome, as Watch and a SIGHUP handler do.
func (d *DenyList) ReloadAndLog(ctx context.Context, log *slog.Logger) {
	changed, err := d.Reload()
	switch {
	case err != nil:
		log.ErrorContext(ctx, "deny list not reloaded; the previous list stays in force", "file", d.path, "err", err)
	case changed:
		log.InfoContext(ctx, "deny list reloaded", "file", d.path, "entries", d.Len())
	}
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- the deny list is the operator's configuration
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrInvalid, limit)
	}
	return data, nil
}
