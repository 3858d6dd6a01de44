"use strict";
(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const b64u = {
    decode(s) {
      s = s.replace(/-/g, "+").replace(/_/g, "/");
      while (s.length % 4) s += "=";
      return Uint8Array.from(atob(s), (c) => c.charCodeAt(0)).buffer;
    },
    encode(buf) {
      let bin = "";
      for (const b of new Uint8Array(buf)) bin += String.fromCharCode(b);
      return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    },
  };
  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body || {}),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.detail || data.error_description || ("HTTP " + r.status));
    return data;
  }
  function credentialJSON(c) {
    const r = c.response, out = { id: c.id, rawId: b64u.encode(c.rawId), type: c.type, response: {
      clientDataJSON: b64u.encode(r.clientDataJSON) } };
    if (r.attestationObject) out.response.attestationObject = b64u.encode(r.attestationObject);
    if (r.authenticatorData) out.response.authenticatorData = b64u.encode(r.authenticatorData);
    if (r.signature) out.response.signature = b64u.encode(r.signature);
    if (r.userHandle) out.response.userHandle = b64u.encode(r.userHandle);
    return out;
  }
  function status(msg) { const s = document.getElementById("webauthn-status"); if (s) s.textContent = msg; }
  async function assertion(optionsURL, finishURL, extra) {
    const { publicKey } = await post(optionsURL, extra);
    publicKey.challenge = b64u.decode(publicKey.challenge);
    (publicKey.allowCredentials || []).forEach((c) => { c.id = b64u.decode(c.id); });
    status("Touch your security key…");
    const cred = await navigator.credentials.get({ publicKey });
    const done = await post(finishURL, Object.assign({ credential: credentialJSON(cred) }, extra));
    location.assign(done.redirect || "/");
  }
  async function registration(name) {
    const { publicKey } = await post("/factors/webauthn/options", {});
    publicKey.challenge = b64u.decode(publicKey.challenge);
    publicKey.user.id = b64u.decode(publicKey.user.id);
    (publicKey.excludeCredentials || []).forEach((c) => { c.id = b64u.decode(c.id); });
    status("Touch your security key…");
    const cred = await navigator.credentials.create({ publicKey });
    const done = await post("/factors/webauthn", { name, credential: credentialJSON(cred) });
    location.assign(done.redirect || "/factors");
  }
  function bind(id, run) {
    const el = document.getElementById(id);
    if (!el) return;
    el.addEventListener("click", () => {
      if (!window.PublicKeyCredential) { status("This browser has no WebAuthn."); return; }
      el.disabled = true;
      run(el).catch((e) => { status("Failed: " + e.message); el.disabled = false; });
    });
  }
  document.addEventListener("DOMContentLoaded", () => {
    bind("webauthn-register", () => registration(document.getElementById("key-name").value || "Security key"));
    bind("webauthn-signin", (el) => assertion("/signin/webauthn/options", "/signin/webauthn", { next: el.dataset.next || "/" }));
    bind("webauthn-stepup", (el) => assertion("/stepup/webauthn/options", "/stepup/webauthn", { next: el.dataset.next || "/" }));
    bind("webauthn-approve", (el) => assertion("/approve/" + encodeURIComponent(el.dataset.code) + "/webauthn/options",
      "/approve/" + encodeURIComponent(el.dataset.code) + "/webauthn", {}));
  });
})();
