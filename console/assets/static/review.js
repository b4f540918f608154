// The review form: sign the decision with the session's delegated key before it is sent. The
// signed bytes are exactly those fedprop's Go code hashes for a decision (pki.PreImage of
// audit.DecisionStatement): the domain, then the action, the subject, the content hash and the
// reason, each length-prefixed. WebCrypto hashes them with SHA-256 and returns r||s.
"use strict";
(function () {
  const form = document.getElementById("review-form");
  if (!form) { return; }
  const status = document.getElementById("sign-status");
  const enc = new TextEncoder();
  const SEPARATOR = "\n\nFairness override: ";

  function preImage(domain, parts) {
    const d = enc.encode(domain);
    const bytes = parts.map(function (p) { return enc.encode(p); });
    let n = 4 + d.length;
    bytes.forEach(function (b) { n += 8 + b.length; });
    const out = new Uint8Array(n), view = new DataView(out.buffer);
    view.setUint32(0, d.length);
    out.set(d, 4);
    let off = 4 + d.length;
    bytes.forEach(function (b) {
      view.setUint32(off, 0); view.setUint32(off + 4, b.length);
      out.set(b, off + 8);
      off += 8 + b.length;
    });
    return out;
  }

  function base64(buf) {
    const b = new Uint8Array(buf);
    let s = "";
    for (let i = 0; i < b.length; i++) { s += String.fromCharCode(b[i]); }
    return btoa(s);
  }

  window.fedpropKeys.load().then(function (key) {
    form.setAttribute("data-key", key ? "ready" : "none");
    if (!key && status) { status.textContent = "This browser holds no signing key for this session: the decision will be sent unsigned and refused unless you are an approver signed in with fedprop console login."; }
  });

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const checked = form.querySelector('input[name="action"]:checked');
    if (!checked) { if (status) { status.textContent = "Choose approve or reject."; } return; }
    let action = checked.value;
    let reason = form.elements.reason.value;
    const override = form.elements.override;
    // The server refuses each of these too; saying so here spares the approver a signature
    // over a decision that would not be recorded.
    const refuse = function (msg) { if (status) { status.textContent = msg; status.classList.add("refused"); } };
    if (reason.trim() === "") { refuse("A decision needs a reason."); return; }
    if (override && override.checked) {
      if (action !== "model.approve") { refuse("Only an approval overrides the fairness policy."); return; }
      if (form.elements.override_reason.value.trim() === "") {
        refuse("Not recorded: a fairness override needs its own reason. Say why approving this flagged version is justified despite the policy.");
        form.elements.override_reason.focus();
        return;
      }
      action = "model.override";
      reason = reason + SEPARATOR + form.elements.override_reason.value;
    } else if (override && action === "model.approve") {
      refuse("Not recorded: the fairness policy flagged this version. To approve it anyway, tick the fairness override and give the override its own reason.");
      return;
    }
    if (status) { status.classList.remove("refused"); }
    if (status) { status.textContent = "Signing…"; }
    window.fedpropKeys.load().then(function (key) {
      if (!key) { form.elements.signature.value = ""; form.submit(); return; }
      const msg = preImage(form.dataset.domain, [action, form.dataset.subject, form.dataset.digest, reason]);
      return crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, msg).then(function (sig) {
        form.elements.signature.value = base64(sig);
        form.submit();
      });
    }).catch(function (err) {
      if (status) { status.textContent = "Signing failed: " + err; }
    });
  });
})();
