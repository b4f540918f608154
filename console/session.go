package console

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/fedprop/fedprop/pki"
)

// cookieName is the session cookie. The __Host- prefix makes browsers accept it only when
// Secure, for this host alone and for every path.
const cookieName = "__Host-fedprop-console"

// errNoCookie: a request that names no session at all, which the sign-in page does not call a
// problem.
var errNoCookie = fmt.Errorf("%w: not signed in", ErrNoSession)

// session is a signed-in person: the certificate's identity, and the delegation that lets
// their browser's session key sign decisions.
type session struct {
	id         string
	identity   pki.Identity
	cert       *x509.Certificate
	delegation pki.Delegation
	key        *ecdsa.PublicKey
	// handle names the session's key in the browser's store: public, unlike id, so pages
	// carry it and the script uses only the key of this session.
	handle  string
	csrf    string
	expires time.Time
}

// may reports whether the session's role may do what needs one of roles.
func (s *session) may(roles ...pki.Role) bool {
	for _, r := range roles {
		if s.identity.Role == r {
			return true
		}
	}
	return false
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("console: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// redeem consumes a login token: once, before it expires, and starts the session it opens.
func (c *Console) redeem(token string) (*session, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	tk, ok := c.tickets[token]
	if !ok {
		return nil, ErrBadToken
	}
	delete(c.tickets, token) // single use, whatever happens next
	if !now.Before(tk.expires) {
		return nil, ErrBadToken
	}
	if !now.Before(tk.sessionEnd) {
		return nil, fmt.Errorf("%w: the delegation has already ended", ErrBadToken)
	}
	s := &session{identity: tk.id, cert: tk.cert, delegation: tk.delegation, key: tk.key, expires: tk.sessionEnd}
	var err error
	for _, p := range []*string{&s.id, &s.handle, &s.csrf} {
		if *p, err = randomToken(); err != nil {
			return nil, err
		}
	}
	c.sweepLocked(now)
	if len(c.sessions) >= maxSessions {
		return nil, fmt.Errorf("%w: too many console sessions", ErrBadToken)
	}
	c.sessions[s.id] = s
	return s, nil
}

// current is the request's live session: the cookie names one that has not expired, and whose
// certificate is not revoked (asked on every request, so revoking a certificate ends its
// sessions at once) and still valid.
func (c *Console) current(r *http.Request) (*session, error) {
	ck, err := r.Cookie(cookieName)
	if err != nil || ck.Value == "" {
		return nil, errNoCookie
	}
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[ck.Value]
	if !ok {
		return nil, fmt.Errorf("%w: the session has ended or was never started here (a coordinator restart ends every session)", ErrNoSession)
	}
	switch {
	case !now.Before(s.expires):
		delete(c.sessions, s.id)
		return nil, fmt.Errorf("%w: the session ended at %s", ErrNoSession, s.expires.UTC().Format(time.RFC3339))
	case c.cfg.Revoked != nil && c.cfg.Revoked(s.identity):
		delete(c.sessions, s.id)
		c.cfg.Logger.Warn("console session of a revoked certificate ended", "identity", s.identity.String(), "serial", s.identity.Serial)
		return nil, fmt.Errorf("%w: %w", ErrNoSession, pki.ErrRevoked)
	}
	return s, nil
}

// end forgets a session (sign-out).
func (c *Console) end(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, s.id)
}

// setCookie starts the browser's side of a session.
func setCookie(w http.ResponseWriter, s *session) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.id, Path: "/", Expires: s.expires, HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode})
}

// clearCookie ends the browser's side of a session.
func clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode})
}

// checkCSRF refuses a form without the session's token.
func checkCSRF(r *http.Request, s *session) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// contentSecurityPolicy allows the console's own scripts, styles and images only: no inline
// script, no other origin, no framing, forms posting only back to the console.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secure sets the headers every answer carries: nothing is cached (a signed-out browser shows
// nothing of a session), the policy above, no referrer (a login link's token must not leak).
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("Cache-Control", "no-store")
		hd.Set("Pragma", "no-cache")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		h.ServeHTTP(w, r)
	})
}
