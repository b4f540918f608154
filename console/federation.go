package console

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/task"
)

// Bounds of the federation ledger: it lives in memory for the coordinator's lifetime.
const (
	maxClients        = 100_000
	maxReasonsPerPeer = 8
	maxDenyListBytes  = 1 << 20
	// expirySoon marks a certificate that expires within a month.
	expirySoon = 30 * 24 * time.Hour
)

// Federation is what the coordinator's edge saw of each client since it started: when it last
// called, the tasks it answered and declined (with reasons), the consent exclusions it
// reported and its certificate. It implements grpctransport.ClientObserver and is safe for
// concurrent use.
type Federation struct {
	now     func() time.Time
	mu      sync.Mutex
	clients map[string]*clientRecord
}

type clientRecord struct {
	lastSeen      time.Time
	done, refused int
	reasons       []string
	excluded      float64
	hasExcluded   bool
	serial        string
	notAfter      time.Time
}

// NewFederation returns an empty ledger; now nil means time.Now.
func NewFederation(now func() time.Time) *Federation {
	if now == nil {
		now = time.Now
	}
	return &Federation{now: now, clients: map[string]*clientRecord{}}
}

func (f *Federation) record(id string) *clientRecord {
	r, ok := f.clients[id]
	if !ok {
		if len(f.clients) >= maxClients {
			return nil
		}
		r = &clientRecord{}
		f.clients[id] = r
	}
	return r
}

// ClientCalled implements grpctransport.ClientObserver.
func (f *Federation) ClientCalled(id string, cert *x509.Certificate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.record(id)
	if r == nil {
		return
	}
	r.lastSeen = f.now()
	if cert != nil {
		if cid, err := pki.IdentityOf(cert); err == nil {
			r.serial = cid.Serial
		}
		r.notAfter = cert.NotAfter
	}
}

// ClientSubmitted implements grpctransport.ClientObserver.
func (f *Federation) ClientSubmitted(id string, kind task.Kind, refusal string, excluded float64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.record(id)
	if r == nil || !ok {
		return
	}
	if refusal != "" {
		r.refused++
		reason := kind.String() + ": " + refusal
		if !slices.Contains(r.reasons, reason) && len(r.reasons) < maxReasonsPerPeer {
			r.reasons = append(r.reasons, reason)
		}
		return
	}
	r.done++
	if excluded >= 0 {
		r.excluded, r.hasExcluded = excluded, true
	}
}

type clientRow struct {
	ID, LastSeen, Excluded, Serial, Expires string
	Done, Refused                           int
	Reasons                                 []string
	Revoked, ExpiresSoon                    bool
}

func (f *Federation) rows(revoked func(pki.Identity) bool, now time.Time) []clientRow {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]clientRow, 0, len(f.clients))
	for id, r := range f.clients {
		row := clientRow{ID: id, LastSeen: r.lastSeen.UTC().Format("2006-01-02 15:04:05"), Done: r.done, Refused: r.refused,
			Reasons: slices.Clone(r.reasons), Serial: r.serial, Excluded: "not visible", Expires: "—"}
		if r.hasExcluded {
			row.Excluded = fmtNum(r.excluded, 0)
		}
		if !r.notAfter.IsZero() {
			row.Expires = fmtTime(r.notAfter)
			row.ExpiresSoon = r.notAfter.Sub(now) < expirySoon
		}
		if revoked != nil {
			row.Revoked = revoked(pki.Identity{Name: id, Role: pki.RoleClient, Serial: r.serial})
		}
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// denyEntries lists the deny list's entries as its file names them.
func denyEntries(path string) []string {
	if path == "" {
		return nil
	}
	f, err := os.Open(path) // #nosec G304 -- the operator's configuration names the deny list
	if err != nil {
		return []string{"(the deny list could not be read: " + err.Error() + ")"}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDenyListBytes))
	if err != nil {
		return []string{"(the deny list could not be read: " + err.Error() + ")"}
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

func (c *Console) federation(w http.ResponseWriter, _ *http.Request, s *session) {
	d := struct {
		Clients  []clientRow
		Revoked  []string
		DenyPath string
	}{c.cfg.Federation.rows(c.cfg.Revoked, c.cfg.Now()), denyEntries(c.cfg.DenyListPath), c.cfg.DenyListPath}
	c.render(w, http.StatusOK, "federation", view{Title: "Federation", Nav: "federation", Session: viewOf(s), Data: d})
}
