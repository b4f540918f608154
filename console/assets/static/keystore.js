// The console's session key store: the session's private key, imported from the login link's
// fragment as a non-extractable WebCrypto key, kept in IndexedDB under the session's public
// handle. Script can sign with it; nothing, not even this script, can read it back out.
"use strict";
window.fedpropKeys = (function () {
  const DB = "fedprop-console", STORE = "keys", SLOT = "session";

  function open() {
    return new Promise(function (resolve, reject) {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = function () { req.result.createObjectStore(STORE); };
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { reject(req.error); };
    });
  }

  function tx(mode, fn) {
    return open().then(function (db) {
      return new Promise(function (resolve, reject) {
        const t = db.transaction(STORE, mode);
        const req = fn(t.objectStore(STORE));
        t.oncomplete = function () { db.close(); resolve(req ? req.result : undefined); };
        t.onerror = function () { db.close(); reject(t.error); };
      });
    });
  }

  function fromBase64url(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    const bin = atob(s), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }

  function handle() {
    const m = document.querySelector('meta[name="fedprop-session"]');
    return m ? m.content : "";
  }

  return {
    handle: handle,
    // importFromFragment imports the PKCS#8 key of "#key=..." and stores it for this session.
    importFromFragment: function (fragment) {
      const m = /(?:^#|&)key=([A-Za-z0-9_-]+)/.exec(fragment || "");
      if (!m) { return Promise.resolve(false); }
      return crypto.subtle.importKey("pkcs8", fromBase64url(m[1]), { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"])
        .then(function (key) {
          return tx("readwrite", function (s) { return s.put({ handle: handle(), key: key }, SLOT); });
        })
        .then(function () { return true; });
    },
    // load returns this session's key, or null when the browser holds none for it.
    load: function () {
      return tx("readonly", function (s) { return s.get(SLOT); }).then(function (rec) {
        return rec && rec.handle === handle() ? rec.key : null;
      }, function () { return null; });
    },
    forget: function () { return tx("readwrite", function (s) { return s.delete(SLOT); }); }
  };
})();
