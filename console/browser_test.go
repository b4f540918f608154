package console_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fedprop/fedprop/pki"
	"github.com/fedprop/fedprop/release/audit"
	grpctransport "github.com/fedprop/fedprop/transport/grpc"
)

// chromiumPath is Debian's headless-capable Chromium, skipping tb without it (failing under
// CI=true, where .ci/run installs it), as internal/sharedtest does for missing data.
func chromiumPath(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{os.Getenv("FEDPROP_CHROMIUM"), "/usr/bin/chromium"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("Chromium is required under CI (/usr/bin/chromium): .ci/run installs it with apt-get install chromium")
	}
	tb.Skip("skipping: Chromium not found (/usr/bin/chromium); install it with apt-get install chromium")
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

// TestOversightConsoleInChromium is issue 17's done-when: after a short 3-client run over
// gRPC, an owner signs in with a one-time link and sees the run and its charts, and is refused a
// decision; an approver signs in, opens the diff against the approved version and approves with
// a reason, the browser signing the decision with the session key the approver's certificate
// delegated to; the model owner then pulls that version over gRPC, and the audit page shows the
// entry and "verified". Each page is saved as a screenshot.
func TestOversightConsoleInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	shots := screenshotDir(t)
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

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The test CA is not one Chromium trusts; a deployment gives the console a certificate
		// its browsers do (console.cert).
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	browser, cancelTimeout := context.WithTimeout(browser, 2*time.Minute)
	defer cancelTimeout()

	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(browser, steps...))
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err)
		return s
	}
	attr := func(sel, name string) string {
		t.Helper()
		a, err := chromedp.Run(browser, chromedp.AttributeValue(chromedp.CSS(sel), name))
		require.NoError(t, err)
		return a.Value
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name), buf, 0o600)
		}
	}
	signIn := func(files pki.TLSFiles) chromedp.Action[chromedp.Void] {
		link := must(b.login(files))
		return chromedp.Steps(chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`body[data-key]`)))
	}

	// The owner: the runs, the run's charts; a decision refused.
	do(signIn(ownerKit))
	loc, err := chromedp.Run(browser, chromedp.Location())
	require.NoError(t, err)
	assert.Equal(t, b.url+"/login", loc, "the token and the key are cleared from the address bar")
	assert.Equal(t, "none", attr("body", "data-key"), "an owner's session stores no signing key")
	do(chromedp.Click(chromedp.ID("continue")),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/runs/retail-q3"]`)),
		shot("01-runs-owner.png"),
		chromedp.Click(chromedp.CSS(`a[href="/runs/retail-q3"]`)),
		chromedp.WaitVisible(chromedp.ID("round-metrics")),
		shot("02-run-owner.png"))
	series, err := chromedp.Run(browser, chromedp.Evaluate[int](`document.querySelectorAll("svg polyline.series").length`))
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
	pdf, err := chromedp.Run(browser, chromedp.PrintToPDF())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(shots, "09-version-3-card.pdf"), pdf, 0o600))
	do(signIn(adminKit), chromedp.Navigate(b.url+"/federation"), chromedp.WaitVisible(chromedp.CSS(`table.data`)),
		shot("08-federation-admin.png"))

	entriesInLog, _, err := b.srv.Store().AuditLog(ctx)
	require.NoError(t, err)
	last := entriesInLog[len(entriesInLog)-1]
	assert.Equal(t, reason, last.Reason)
	assert.NotNil(t, last.Delegation)
	t.Logf("screenshots in %s", shots)
	names, _ := os.ReadDir(shots)
	for _, n := range names {
		if strings.HasSuffix(n.Name(), ".png") || strings.HasSuffix(n.Name(), ".pdf") {
			t.Logf("  %s", n.Name())
		}
	}
}
