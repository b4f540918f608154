package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/fedprop/fedprop/pki"
)

// assets are the console's stylesheets, scripts and templates, inside the binary: the
// console works offline and ships with the coordinator.
//
//go:embed assets
var assets embed.FS

// pages are the parsed templates, one set per page, each with the layout.
type pages struct {
	set    map[string]*template.Template
	static http.Handler
}

// pageNames are the templates under assets/templates that are pages.
var pageNames = []string{"signin", "login", "error", "runs", "run", "version", "review", "decided", "audit", "federation"}

var funcs = template.FuncMap{
	"short":   shortHash,
	"fmtTime": fmtTime,
	"f3":      func(x float64) string { return fmtNum(x, 3) },
	"g":       func(x float64) string { return strconv.FormatFloat(x, 'g', 4, 64) },
	"num0":    func(x float64) string { return fmtNum(x, 0) },
}

func loadPages() (*pages, error) {
	p := &pages{set: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "assets/templates/layout.html", "assets/templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		p.set[name] = t
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, err
	}
	p.static = http.FileServerFS(static)
	return p, nil
}

// view is what the layout renders around a page.
type view struct {
	Title    string
	Nav      string
	Session  *sessionView
	Scripts  []string
	Version  string
	Rendered string
	Data     any
}

// sessionView is a session as pages show it: never its id.
type sessionView struct {
	Name, Role, Expires, CSRF, Handle string
	Approver, Admin                   bool
}

func viewOf(s *session) *sessionView {
	if s == nil {
		return nil
	}
	return &sessionView{Name: s.identity.Name, Role: string(s.identity.Role), Expires: fmtTime(s.expires), CSRF: s.csrf, Handle: s.handle,
		Approver: s.identity.Role == pki.RoleApprover, Admin: s.identity.Role == pki.RoleAdmin}
}

// render writes a page, or a plain error when the template fails (nothing half-written).
func (c *Console) render(w http.ResponseWriter, code int, name string, v view) {
	if v.Rendered == "" {
		v.Rendered = fmtTime(c.cfg.Now())
	}
	if v.Version == "" {
		v.Version = c.cfg.Version
	}
	var buf bytes.Buffer
	if err := c.pages.set[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		c.cfg.Logger.Error("console page failed", "page", name, "err", err)
		http.Error(w, "the console could not render this page; the coordinator's log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// errorData is the error page's.
type errorData struct {
	Message, Detail, Back string
}

func (c *Console) fail(w http.ResponseWriter, s *session, code int, title, msg, detail string) {
	back := "/runs"
	if s == nil {
		back = "/"
	}
	c.render(w, code, "error", view{Title: title, Session: viewOf(s), Data: errorData{Message: msg, Detail: detail, Back: back}})
}

func shortHash(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// fmtNum formats a figure, "n/a" when it is undefined.
func fmtNum(x float64, prec int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}
