// The login page: take the session key out of the link's fragment (which never reached the
// server), store it, and clear the link from the address bar and history.
"use strict";
(function () {
  const fragment = location.hash;
  history.replaceState(null, "", "/login");
  const status = document.getElementById("key-status");
  const done = function (text, state) {
    if (status) { status.textContent = text; }
    document.body.setAttribute("data-key", state);
  };
  // Only an approver signs anything: other roles keep no key, whatever the link carries.
  const section = document.getElementById("login");
  const approver = section && section.getAttribute("data-role") === "approver";
  (approver ? window.fedpropKeys.importFromFragment(fragment) : Promise.resolve(false)).then(function (stored) {
    if (stored) {
      done("Your session's signing key is stored in this browser, for this session only. It cannot be exported.", "stored");
    } else {
      window.fedpropKeys.forget().catch(function () {});
      done(status ? status.textContent : "", "none");
    }
  }, function (err) {
    done("This browser could not store the session's signing key (" + err + "): you can read but not sign decisions.", "failed");
  });
})();
