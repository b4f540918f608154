package console_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/console"
	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	"github.com/fedprop/fedprop/store"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// chromiumDefault is where Debian's chromium package puts the browser.
const chromiumDefault = "/usr/bin/chromium"

// chromiumHint is what a run without Chromium is told: how to get it, and how to point the
// tests at another build.
const chromiumHint = "Chromium not found: the console's browser tests need it (Debian: apt-get install chromium, " +
	"which gives " + chromiumDefault + "; or set FEDPROP_CHROMIUM to a Chromium binary)"

// findChromium decides what a browser test does about Chromium: run it at path, or, when it
// cannot be found, fail under CI (fail true: .ci/run installs it, so its absence there is a
// broken CI machine, not a reason to pass without the tests) and skip elsewhere, with msg
// saying how to install it. FEDPROP_CHROMIUM, when set, is the only place looked at, so a
// setting that names nothing is reported rather than silently replaced by another build; it is
// also the seam through which tests simulate a machine without Chromium.
func findChromium(getenv func(string) string, exists func(string) bool, lookPath func(string) (string, error)) (path string, fail bool, msg string) {
	if p := getenv("FEDPROP_CHROMIUM"); p != "" {
		if exists(p) {
			return p, false, ""
		}
		msg = fmt.Sprintf("FEDPROP_CHROMIUM=%s names no file; %s", p, chromiumHint)
	} else {
		if exists(chromiumDefault) {
			return chromiumDefault, false, ""
		}
		if p, err := lookPath("chromium"); err == nil {
			return p, false, ""
		}
		msg = chromiumHint
	}
	if getenv("CI") == "true" {
		return "", true, "CI=true and " + msg
	}
	return "", false, "skipping: " + msg
}

// chromiumPath is the Chromium the browser tests drive; without one it fails tb under
// CI=true and skips it elsewhere (see findChromium), as internal/sharedtest does for missing
// data.
func chromiumPath(tb testing.TB) string {
	tb.Helper()
	path, fail, msg := findChromium(os.Getenv, func(p string) bool {
		info, err := os.Stat(p)
		return err == nil && !info.IsDir()
	}, exec.LookPath)
	switch {
	case path != "":
		return path
	case fail:
		tb.Fatal(msg)
	default:
		tb.Skip(msg)
	}
	return ""
}

// screenshotDir is where the browser test writes its screenshots: $FEDPROP_SCREENSHOTS when
// set, else the test's own temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("FEDPROP_SCREENSHOTS"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o750))
		return d
	}
	return t.TempDir()
}

// chrome is one headless Chromium driven over the bench's console, with the few steps the
// browser tests share.
type chrome struct {
	t     *testing.T
	b     *bench
	ctx   context.Context
	shots string
}

// openChromium starts Chromium for the test; it is closed when the test ends, and every step
// has two minutes in all.
func openChromium(t *testing.T, b *bench) *chrome {
	t.Helper()
	path := chromiumPath(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The test CA is not one Chromium trusts; a deployment gives the console a certificate
		// its browsers do (console.cert).
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000),
	)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	browser, cancelTimeout := context.WithTimeout(browser, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelBrowser(); cancelAlloc() })
	return &chrome{t: t, b: b, ctx: browser, shots: screenshotDir(t)}
}

func (c *chrome) do(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	require.NoError(c.t, chromedp.Do(c.ctx, steps...))
}

func (c *chrome) text(sel string) string {
	c.t.Helper()
	s, err := chromedp.Run(c.ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(c.t, err)
	return s
}

func (c *chrome) attr(sel, name string) string {
	c.t.Helper()
	a, err := chromedp.Run(c.ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	require.NoError(c.t, err)
	return a.Value
}

// shot saves the whole page as name in the screenshot folder.
func (c *chrome) shot(name string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		buf, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return chromedp.Void{}, err
		}
		return chromedp.Void{}, os.WriteFile(filepath.Join(c.shots, name), buf, 0o600)
	}
}

// printPDF prints the page as a person's "Print" does (the print stylesheet) to name.
func (c *chrome) printPDF(name string) {
	c.t.Helper()
	pdf, err := chromedp.Run(c.ctx, chromedp.PrintToPDF())
	require.NoError(c.t, err)
	require.NoError(c.t, os.WriteFile(filepath.Join(c.shots, name), pdf, 0o600))
}

// signIn opens a fresh login link for files' certificate and waits for the page's script to
// have stored (or declined) the session key.
func (c *chrome) signIn(files pki.TLSFiles) chromedp.Action[chromedp.Void] {
	link := must(c.b.login(files))
	return chromedp.Steps(chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`body[data-key]`)))
}

// listShots logs what the test wrote to the screenshot folder.
func (c *chrome) listShots() {
	c.t.Logf("screenshots in %s", c.shots)
	names, _ := os.ReadDir(c.shots)
	for _, n := range names {
		if strings.HasSuffix(n.Name(), ".png") || strings.HasSuffix(n.Name(), ".pdf") {
			c.t.Logf("  %s", n.Name())
		}
	}
}

// TestOversightConsoleInChromium is issue 17's done-when: after a short 3-client run over
// gRPC, an owner signs in with a one-time link and sees the run and its charts, and is refused a
// decision; an approver signs in, opens the diff against the approved version and approves with
// a reason, the browser signing the decision with the session key the approver's certificate
// delegated to; the model owner then pulls that version over gRPC, and the audit page shows the
// entry and "verified". Each page is saved as a screenshot.
func TestOversightConsoleInChromium(t *testing.T) {
	chromiumPath(t) // skip (or fail under CI) before the run, not after it
	b := startBench(t, 3)
	b.startClients()
	b.waitCompleted(90 * time.Second)
	ctx := context.Background()
	ownerKit, approverKit, adminKit := b.kit(pki.RoleOwner, "model-owner"), b.kit(pki.RoleApprover, "risk-officer"), b.kit(pki.RoleAdmin, "ops-admin")

	// Version 1 was approved earlier from the command line, as `fedprop model approve` does:
	// the diff compares version 3 with it.
	approverKey, err := pki.LoadSigner(approverKit)
	require.NoError(t, err)
	_, err = grpctransport.NewOversightClient(dialed(t, b, approverKit)).Decide(ctx, approverKey, audit.ActionApprove, 1,
		"Baseline approved by the model risk committee, minute 2024-117.")
	require.NoError(t, err)

	c := openChromium(t, b)
	do, text, attr, shot, signIn := c.do, c.text, c.attr, c.shot, c.signIn

	// The owner: the runs, the run's charts; a decision refused.
	do(signIn(ownerKit))
	loc, err := chromedp.Run(c.ctx, chromedp.Location())
	require.NoError(t, err)
	assert.Equal(t, b.url+"/login", loc, "the token and the key are cleared from the address bar")
	assert.Equal(t, "none", attr("body", "data-key"), "an owner's session stores no signing key")
	do(chromedp.Click(chromedp.ID("continue")),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/runs/retail-q3"]`)),
		shot("01-runs-owner.png"),
		chromedp.Click(chromedp.CSS(`a[href="/runs/retail-q3"]`)),
		chromedp.WaitVisible(chromedp.ID("round-metrics")),
		shot("02-run-owner.png"))
	series, err := chromedp.Run(c.ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg polyline.series").length`))
	require.NoError(t, err)
	assert.Equal(t, 3, series, "AUC, log loss and calibration error per round")
	do(chromedp.Navigate(b.url+"/versions/3/review"),
		chromedp.WaitVisible(chromedp.CSS(`#review-form[data-key]`)),
		chromedp.Click(chromedp.CSS(`input[value="model.approve"]`)),
		chromedp.SendKeys(chromedp.ID("reason"), "Looks good to me."),
		chromedp.Click(chromedp.ID("decide-button")),
		chromedp.WaitVisible(chromedp.ID("error")),
		shot("03-owner-refused.png"))
	assert.Contains(t, text("#error"), "only approvers decide")
	do(chromedp.Click(chromedp.CSS(`button.link`)), chromedp.WaitVisible(chromedp.CSS(`pre code`))) // sign out

	// The approver: the version and its diff against the approved version 1; the decision.
	reason := "Approved for the Q3 retail campaign: AUC up on version 1, calibration within tolerance, fairness gaps within policy."
	do(signIn(approverKit))
	assert.Equal(t, "stored", attr("body", "data-key"), "the approver's session key is in the browser")
	do(chromedp.Navigate(b.url+"/versions/3"),
		chromedp.WaitVisible(chromedp.ID("diff-metrics")),
		shot("04-version-diff-approver.png"))
	assert.Contains(t, text("#diff-section"), "version 1")
	do(chromedp.Click(chromedp.CSS(`a[href="/versions/3/review"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#review-form[data-key="ready"]`)),
		chromedp.Click(chromedp.CSS(`input[value="model.approve"]`)),
		chromedp.SendKeys(chromedp.ID("reason"), reason),
		shot("05-review-approver.png"),
		chromedp.Click(chromedp.ID("decide-button")),
		chromedp.WaitVisible(chromedp.ID("decided")),
		shot("06-decision-recorded.png"))
	assert.Contains(t, text("#decided"), "approved")

	// The released version is the one approved in the browser.
	doc, _, err := grpctransport.NewModelClient(dialed(t, b, ownerKit)).Pull(ctx, 0, false)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), doc.Version)

	do(chromedp.Navigate(b.url+"/audit"), chromedp.WaitVisible(chromedp.ID("verify-status")), shot("07-audit.png"))
	verified, entries := text("#verify-status"), text("table.audit")
	assert.Contains(t, verified, "verified")
	assert.NotContains(t, verified, "does not verify")
	assert.Contains(t, entries, reason)
	assert.Contains(t, entries, "delegated to a console session")
	do(chromedp.Navigate(b.url+"/versions/3"), chromedp.WaitVisible(chromedp.ID("card-title")))
	c.printPDF("09-version-3-card.pdf")
	do(signIn(adminKit), chromedp.Navigate(b.url+"/federation"), chromedp.WaitVisible(chromedp.CSS(`table.data`)),
		shot("08-federation-admin.png"))

	entriesInLog, _, err := b.srv.Store().AuditLog(ctx)
	require.NoError(t, err)
	last := entriesInLog[len(entriesInLog)-1]
	assert.Equal(t, reason, last.Reason)
	assert.NotNil(t, last.Delegation)
	c.listShots()
}

// TestFairnessOverrideInChromium is the other half of issue 17's review: a version the
// fairness policy flags is approved only with the override and its own reason. The release
// gate refuses a plain approval and the console an override without its reason, both before
// anything is recorded, each with a message that says what to do; in the browser the form
// says so before it signs anything. With the reason, the decision is recorded as an override
// (audit kind model.override), signed in the browser by the session key the approver's
// certificate delegated to, and the audit log still verifies against the CA.
func TestFairnessOverrideInChromium(t *testing.T) {
	chromiumPath(t) // skip (or fail under CI) before the run, not after it
	b := startBenchWithPolicy(t, 2, strictPolicy)
	b.startClients()
	b.waitCompleted(90 * time.Second)
	ctx := context.Background()
	approverKit := b.kit(pki.RoleApprover, "risk-officer")
	subject, err := b.srv.ReviewSubject(ctx, 2)
	require.NoError(t, err)
	require.True(t, subject.Flagged, "the strict policy flags version 2")
	auditLen := func() int {
		entries, _, err := b.srv.Store().AuditLog(ctx)
		require.NoError(t, err)
		return len(entries)
	}
	before := auditLen()

	// Without the browser's script, the server refuses both: its checks do not rely on the page.
	link := must(b.login(approverKit))
	web := b.browser()
	csrf := signIn(t, web, link)
	session := sessionKey(t, link)
	plain := "Campaign deadline; the gaps are small in absolute terms."
	tests := []struct {
		name string
		form url.Values
		code int
		want string
	}{
		{name: "an approval without the override", code: http.StatusConflict, want: "The fairness policy flagged this version",
			form: url.Values{"action": {"model.approve"}, "reason": {plain},
				"signature": {signDecision(t, session, audit.ActionApprove, 2, subject.ContentHash, plain)}}},
		{name: "an override without its reason", code: http.StatusBadRequest, want: "A fairness override needs its own reason",
			form: url.Values{"action": {"model.approve"}, "reason": {plain}, "override": {"yes"}, "override_reason": {"  "},
				"signature": {signDecision(t, session, audit.ActionOverride, 2, subject.ContentHash, plain+console.OverrideSeparator+"  ")}}},
		{name: "an override of a rejection", code: http.StatusBadRequest, want: "Only an approval overrides",
			form: url.Values{"action": {"model.reject"}, "reason": {plain}, "override": {"yes"}, "override_reason": {"because"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.form.Set("csrf", csrf)
			tt.form.Set("content_hash", subject.ContentHash)
			resp, body := post(t, web, b.url+"/versions/2/review", tt.form)
			assert.Equal(t, tt.code, resp.StatusCode, body)
			assert.Contains(t, body, tt.want)
		})
	}
	require.Equal(t, before, auditLen(), "nothing refused is recorded")

	// In the browser: the form refuses both before signing, then records the override.
	c := openChromium(t, b)
	reason := "Approved for the Q3 retail campaign: AUC and calibration within tolerance."
	overrideReason := "The gaps are below one percentage point of positive-prediction rate between age bands; " +
		"the committee accepts them for a three-month campaign with monthly monitoring (minute 2024-131)."
	statusSays := func(want string) {
		t.Helper()
		_, err := chromedp.Run(c.ctx, chromedp.Poll[bool](`document.getElementById("sign-status").textContent.includes(`+jsString(want)+`)`,
			chromedp.WithPollingTimeout(10*time.Second)))
		require.NoError(t, err, "the form says %q", want)
	}
	c.do(c.signIn(approverKit),
		chromedp.Navigate(b.url+"/versions/2/review"),
		chromedp.WaitVisible(chromedp.CSS(`#review-form[data-key="ready"]`)),
		chromedp.WaitVisible(chromedp.ID("override_reason")))
	assert.Contains(t, c.text(".alert-fail"), "The fairness policy flagged this version.")
	who := c.text("#who-may-decide")
	for _, w := range []string{"approver", "issued by this coordinator's CA", "not on the coordinator's deny list"} {
		assert.Contains(t, who, w, "the page says which certificates may decide")
	}
	c.do(chromedp.Click(chromedp.CSS(`input[value="model.approve"]`)),
		chromedp.SendKeys(chromedp.ID("reason"), reason),
		chromedp.Click(chromedp.ID("decide-button")))
	statusSays("the fairness policy flagged this version")
	c.do(c.shot("10-flagged-approve-refused.png"),
		chromedp.Click(chromedp.ID("override")),
		chromedp.Click(chromedp.ID("decide-button")))
	statusSays("a fairness override needs its own reason")
	c.do(c.shot("11-flagged-override-without-reason.png"))
	require.Equal(t, before, auditLen(), "nothing refused is recorded")

	c.do(chromedp.SendKeys(chromedp.ID("override_reason"), overrideReason),
		c.shot("12-flagged-override-filled.png"),
		chromedp.Click(chromedp.ID("decide-button")),
		chromedp.WaitVisible(chromedp.ID("decided")),
		c.shot("13-override-recorded.png"))
	assert.Contains(t, c.text("#decided"), "approved")

	entries, head, err := b.srv.Store().AuditLog(ctx)
	require.NoError(t, err)
	require.Len(t, entries, before+1, "one entry: the override")
	last := entries[len(entries)-1]
	assert.Equal(t, audit.ActionOverride, last.Action)
	assert.Equal(t, "risk-officer", last.Actor)
	assert.Equal(t, reason+console.OverrideSeparator+overrideReason, last.Reason, "both reasons, as signed")
	require.NotNil(t, last.Delegation, "signed through the delegated session key")
	as, ok := b.srv.Store().Store.(store.AuditedStore)
	require.True(t, ok)
	sum, err := coordinator.VerifyAudit(ctx, as, pki.NewVerifier(b.ca.Certificate()))
	require.NoError(t, err, "the override verifies against the CA")
	assert.Equal(t, head, sum.Head)
	assert.Equal(t, 1, sum.Decisions)

	doc, _, err := grpctransport.NewModelClient(dialed(t, b, b.kit(pki.RoleOwner, "model-owner"))).Pull(ctx, 0, false)
	require.NoError(t, err, "the overridden version is released")
	assert.Equal(t, uint64(2), doc.Version)

	c.do(chromedp.Navigate(b.url+"/audit"), chromedp.WaitVisible(chromedp.ID("verify-status")), c.shot("14-audit-override.png"))
	assert.Contains(t, c.text("#verify-status"), "verified")
	assert.NotContains(t, c.text("#verify-status"), "does not verify")
	assert.Contains(t, c.text("table.audit"), "model.override")
	c.do(chromedp.Navigate(b.url+"/versions/2"), chromedp.WaitVisible(chromedp.ID("card-title")))
	assert.Contains(t, c.text("#appr"+" ~ table"), "fairness override")
	c.printPDF("15-version-2-card-override.pdf")
	c.listShots()
}

// sessionKey is the session's private key from a login link's fragment.
func sessionKey(t *testing.T, link string) *ecdsa.PrivateKey {
	t.Helper()
	der, err := base64.RawURLEncoding.DecodeString(strings.SplitN(link, "#key=", 2)[1])
	require.NoError(t, err)
	k, err := x509.ParsePKCS8PrivateKey(der)
	require.NoError(t, err)
	return k.(*ecdsa.PrivateKey)
}

// signDecision signs a decision as the review page's script does: WebCrypto's r||s, base64.
func signDecision(t *testing.T, key *ecdsa.PrivateKey, a audit.Action, version uint64, hash, reason string) string {
	t.Helper()
	sum := sha256.Sum256(audit.DecisionPreImage(a, audit.VersionSubject(version), hash, reason))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	require.NoError(t, err)
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	s.FillBytes(raw[32:])
	return base64.StdEncoding.EncodeToString(raw)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
