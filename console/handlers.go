package console

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/fedprop/fedprop/pki"
)

// maxFormBytes bounds a form: a reason of a few kilobytes and a few short fields.
const maxFormBytes = 32 << 10

// Who may see what: as over gRPC, owners read models, approvers decide (and read what they
// decide on), admins run the coordinator and see its federation.
var (
	readers   = []pki.Role{pki.RoleOwner, pki.RoleApprover, pki.RoleAdmin}
	modelRead = []pki.Role{pki.RoleOwner, pki.RoleApprover}
	deciders  = []pki.Role{pki.RoleApprover}
	admins    = []pki.Role{pki.RoleAdmin}
)

// Handler is the console's HTTP handler: every answer carries the security headers (see
// secure), every page but sign-in needs a live session of a role allowed to see it, and every
// form a CSRF token.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", c.pages.static))
	mux.HandleFunc("GET /{$}", c.home)
	mux.HandleFunc("GET /login", c.login)
	mux.HandleFunc("POST /logout", c.withSession(readers, c.logout))
	mux.HandleFunc("GET /runs", c.withSession(readers, c.runs))
	mux.HandleFunc("GET /runs/{id}", c.withSession(readers, c.run))
	mux.HandleFunc("GET /versions/{n}", c.withSession(modelRead, c.version))
	mux.HandleFunc("GET /versions/{n}/review", c.withSession(modelRead, c.review))
	mux.HandleFunc("POST /versions/{n}/review", c.withSession(modelRead, c.decide))
	mux.HandleFunc("GET /audit", c.withSession(readers, c.audit))
	mux.HandleFunc("GET /federation", c.withSession(admins, c.federation))
	return secure(http.MaxBytesHandler(mux, maxFormBytes))
}

type sessionHandler func(w http.ResponseWriter, r *http.Request, s *session)

// withSession admits a request with a live session of one of roles; a POST must also carry
// the session's CSRF token.
func (c *Console) withSession(roles []pki.Role, h sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.current(r)
		if err != nil {
			clearCookie(w)
			problem := ""
			if !errors.Is(err, errNoCookie) {
				problem = err.Error()
			}
			c.render(w, http.StatusUnauthorized, "signin", view{Title: "Sign in", Data: struct{ Problem string }{problem}})
			return
		}
		if !s.may(roles...) {
			c.cfg.Logger.Warn("console request refused: role", "identity", s.identity.String(), "path", r.URL.Path)
			c.fail(w, s, http.StatusForbidden, "Not allowed", "Your role, "+string(s.identity.Role)+", may not "+whatFor(roles)+".",
				"The console grants what the coordinator's API grants: owners read models, approvers decide, administrators see the federation.")
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				c.fail(w, s, http.StatusBadRequest, "Bad request", "The form could not be read.", err.Error())
				return
			}
			if !checkCSRF(r, s) {
				c.cfg.Logger.Warn("console form refused: no valid CSRF token", "identity", s.identity.String(), "path", r.URL.Path)
				c.fail(w, s, http.StatusForbidden, "Form refused", "The form did not carry this session's CSRF token.",
					"Reload the page and submit the form again.")
				return
			}
		}
		h(w, r, s)
	}
}

func whatFor(roles []pki.Role) string {
	switch {
	case len(roles) == 1 && roles[0] == pki.RoleApprover:
		return "decide on a version (approvers decide)"
	case len(roles) == 1 && roles[0] == pki.RoleAdmin:
		return "see the federation (administrators do)"
	}
	return "open this page"
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if _, err := c.current(r); err == nil {
		http.Redirect(w, r, "/runs", http.StatusSeeOther)
		return
	}
	c.render(w, http.StatusOK, "signin", view{Title: "Sign in", Data: struct{ Problem string }{}})
}

// login redeems a login token: once, in time, and starts the session. The page's script
// stores the session's key from the link's fragment, which never reached the server.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	s, err := c.redeem(r.URL.Query().Get("token"))
	if err != nil {
		c.cfg.Logger.Warn("console login refused", "err", err)
		clearCookie(w)
		c.render(w, http.StatusUnauthorized, "signin", view{Title: "Sign-in link refused",
			Data: struct{ Problem string }{err.Error() + ": run fedprop console login again for a new link."}})
		return
	}
	c.cfg.Logger.Info("console session started", "identity", s.identity.String(), "serial", s.identity.Serial, "until", fmtTime(s.expires))
	setCookie(w, s)
	c.render(w, http.StatusOK, "login", view{Title: "Signed in", Session: viewOf(s), Scripts: []string{"keystore.js", "login.js"}})
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.end(s)
	clearCookie(w)
	c.cfg.Logger.Info("console session ended", "identity", s.identity.String())
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// versionParam reads {n}: a version number.
func versionParam(r *http.Request) (uint64, bool) {
	n, err := strconv.ParseUint(r.PathValue("n"), 10, 64)
	return n, err == nil && n > 0
}
