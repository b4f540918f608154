package console_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// get fetches path with c and returns the status and body.
func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn opens a login link with c and returns the session's CSRF token.
func signIn(t *testing.T, c *http.Client, link string) string {
	t.Helper()
	resp, body := get(t, c, strings.SplitN(link, "#", 2)[0])
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	m := csrfField.FindStringSubmatch(body)
	require.NotNil(t, m, "the page carries the session's CSRF token")
	return m[1]
}

// TestConsoleRefusesWhatTheAPIRefuses: a form without its CSRF token, an expired login link, a
// reused login link, a client-role certificate, a revoked certificate's session and a role
// beyond its pages are each refused; every answer carries the security headers.
func TestConsoleRefusesWhatTheAPIRefuses(t *testing.T) {
	b := startBench(t, 2)
	owner, approver := b.kit(pki.RoleOwner, "model-owner"), b.kit(pki.RoleApprover, "risk-officer")

	t.Run("client-role certificate", func(t *testing.T) {
		_, err := b.login(b.kit(pki.RoleClient, "branch-x"))
		require.Error(t, err)
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "the edge's policy refuses a client's sign-in: %v", err)
	})
	t.Run("coordinator-role certificate", func(t *testing.T) {
		_, err := b.login(b.kit(pki.RoleCoordinator, "other-coordinator"))
		assert.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	})
	t.Run("reused login link", func(t *testing.T) {
		link, err := b.login(owner)
		require.NoError(t, err)
		signIn(t, b.browser(), link)
		resp, body := get(t, b.browser(), strings.SplitN(link, "#", 2)[0])
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Contains(t, body, "already used")
		assert.Empty(t, resp.Cookies()[0].Value, "no session cookie")
	})
	t.Run("expired login link", func(t *testing.T) {
		link, err := b.login(owner)
		require.NoError(t, err)
		b.now.advance(console5Minutes)
		defer b.now.advance(-console5Minutes)
		resp, body := get(t, b.browser(), strings.SplitN(link, "#", 2)[0])
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.Contains(t, body, "expired")
	})
	t.Run("form without its CSRF token", func(t *testing.T) {
		c := b.browser()
		token := signIn(t, c, must(b.login(approver)))
		for _, form := range []url.Values{{}, {"csrf": {"forged"}}} {
			resp, body := post(t, c, b.url+"/versions/1/review", url.Values{"action": {"model.approve"}, "reason": {"fine"}, "csrf": form["csrf"]})
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Contains(t, body, "CSRF token")
		}
		resp, _ := post(t, c, b.url+"/logout", url.Values{})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "sign-out is a form too")
		resp, _ = post(t, c, b.url+"/logout", url.Values{"csrf": {token}})
		assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
		resp, _ = get(t, c, b.url+"/runs")
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "signed out")
	})
	t.Run("roles and revocation", func(t *testing.T) {
		c := b.browser()
		signIn(t, c, must(b.login(owner)))
		resp, _ := get(t, c, b.url+"/runs")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		resp, body := get(t, c, b.url+"/federation")
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "an owner does not see the federation")
		assert.Contains(t, body, "administrators do")
		f, err := os.OpenFile(b.denyPath, os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteString("model-owner\n")
		require.NoError(t, err)
		require.NoError(t, f.Close())
		_, err = b.deny.Reload()
		require.NoError(t, err)
		resp, body = get(t, c, b.url+"/runs")
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a revoked certificate's session ends on its next request")
		assert.Contains(t, body, "revoked")
		_, err = b.login(owner)
		assert.Equal(t, codes.Unauthenticated, status.Code(err), "and it cannot sign in again: %v", err)
	})
	t.Run("security headers", func(t *testing.T) {
		c := b.browser()
		resp, _ := get(t, c, strings.SplitN(must(b.login(approver)), "#", 2)[0])
		require.Equal(t, http.StatusOK, resp.StatusCode)
		ck := resp.Cookies()[0]
		assert.True(t, ck.HttpOnly && ck.Secure && ck.SameSite == http.SameSiteStrictMode, "cookie %+v", ck)
		for _, path := range []string{"/runs", "/audit", "/", "/assets/console.css"} {
			resp, _ := get(t, c, b.url+path)
			h := resp.Header
			assert.Equal(t, "no-store", h.Get("Cache-Control"), path)
			csp := h.Get("Content-Security-Policy")
			assert.Contains(t, csp, "script-src 'self'", path)
			assert.NotContains(t, csp, "unsafe-inline", path)
			assert.Equal(t, "no-referrer", h.Get("Referrer-Policy"), path)
		}
		_, body := get(t, c, b.url+"/runs")
		assert.NotRegexp(t, `<script>|<script [^>]*>[^<]`, body, "no inline script")
	})
}

// console5Minutes is past a login token's lifetime (console.DefaultLoginTTL).
const console5Minutes = 5*time.Minute + time.Second

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// TestConsoleDecisionsAreSignedByTheDelegatedKey drives the console without a browser: an
// owner reads the run, is refused a decision; an approver's decision, signed by the session
// key the approver's certificate delegated to, is honoured by the gate, released to model
// owners, recorded with its delegation and verified by fedprop audit verify's check.
func TestConsoleDecisionsAreSignedByTheDelegatedKey(t *testing.T) {
	b := startBench(t, 2)
	b.startClients()
	b.waitCompleted(90 * time.Second)
	ownerKit, approverKit := b.kit(pki.RoleOwner, "model-owner"), b.kit(pki.RoleApprover, "risk-officer")

	owner := b.browser()
	ownerCSRF := signIn(t, owner, must(b.login(ownerKit)))
	for _, path := range []string{"/runs", "/runs/retail-q3", "/versions/2", "/versions/2/review", "/audit"} {
		resp, body := get(t, owner, b.url+path)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, body)
	}
	_, body := get(t, owner, b.url+"/runs/retail-q3")
	assert.Contains(t, body, `<svg`, "the run's charts")
	assert.Contains(t, body, `id="round-metrics"`, "and their figures in a table")
	resp, body := post(t, owner, b.url+"/versions/2/review", url.Values{"csrf": {ownerCSRF}, "action": {"model.approve"}, "reason": {"fine"}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, body, "only approvers decide")

	link := must(b.login(approverKit))
	approver := b.browser()
	csrf := signIn(t, approver, link)
	keyDER, err := base64.RawURLEncoding.DecodeString(strings.SplitN(link, "#key=", 2)[1])
	require.NoError(t, err)
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	require.NoError(t, err)
	session := k.(*ecdsa.PrivateKey)
	subject, err := b.srv.ReviewSubject(context.Background(), 2)
	require.NoError(t, err)
	reason := "Validated on the Q3 holdout.\nCalibration within tolerance."
	sign := func(key *ecdsa.PrivateKey, action audit.Action, reason string) string {
		sum := sha256.Sum256(audit.DecisionPreImage(action, audit.VersionSubject(2), subject.ContentHash, reason))
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		require.NoError(t, err)
		raw := make([]byte, 64)
		r.FillBytes(raw[:32])
		s.FillBytes(raw[32:])
		return base64.StdEncoding.EncodeToString(raw)
	}
	form := func(sig string) url.Values {
		return url.Values{"csrf": {csrf}, "action": {"model.approve"}, "reason": {strings.ReplaceAll(reason, "\n", "\r\n")},
			"content_hash": {subject.ContentHash}, "signature": {sig}}
	}
	other, err := ecdsa.GenerateKey(session.Curve, rand.Reader)
	require.NoError(t, err)
	for name, sig := range map[string]string{"unsigned": "", "another key": sign(other, audit.ActionApprove, reason),
		"signed as a rejection": sign(session, audit.ActionReject, reason)} {
		resp, body := post(t, approver, b.url+"/versions/2/review", form(sig))
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "%s: %s", name, body)
	}
	resp, body = post(t, approver, b.url+"/versions/2/review", form(sign(session, audit.ActionApprove, reason)))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, "Decision recorded")

	pulled, _, err := grpctransport.NewModelClient(dialed(t, b, ownerKit)).Pull(context.Background(), 0, false)
	require.NoError(t, err, "the approved version is released to model owners")
	assert.Equal(t, uint64(2), pulled.Version)

	_, body = get(t, owner, b.url+"/audit")
	assert.Contains(t, body, "✓ verified")
	assert.Contains(t, body, "the one decision carries a valid approver signature")
	assert.Contains(t, body, "delegated to a console session")

	entries, head, err := b.srv.Store().AuditLog(context.Background())
	require.NoError(t, err)
	last := entries[len(entries)-1]
	assert.Equal(t, audit.ActionApprove, last.Action)
	assert.Equal(t, "risk-officer", last.Actor)
	assert.Equal(t, reason, last.Reason, "the reason as signed: line breaks as the script signs them")
	require.NotNil(t, last.Delegation, "the entry carries the delegation")
	require.NotNil(t, last.Signature)
	as, ok := b.srv.Store().Store.(store.AuditedStore)
	require.True(t, ok)
	sum, err := coordinator.VerifyAudit(context.Background(), as, pki.NewVerifier(b.ca.Certificate()))
	require.NoError(t, err)
	assert.Equal(t, head, sum.Head)
	assert.Equal(t, 1, sum.Decisions)
}

// dialed is a gRPC connection with files' kit, closed when the test ends.
func dialed(t *testing.T, b *bench, files pki.TLSFiles) *grpc.ClientConn {
	t.Helper()
	conn, err := grpctransport.DialTLS(b.addr, files)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}
