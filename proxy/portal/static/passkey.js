// nocontact portal: passkeys (WebAuthn) as an optional second factor.
//
// Progressive enhancement only (passkey_pages.py rule 1): every form on the login and
// account pages works without this file. It is served by the portal itself (the CSP
// allows no other script and no inline script), fetches nothing from anywhere else, and
// keeps nothing: each ceremony asks the portal for a fresh challenge, hands the browser's
// answer to an ordinary form field, and submits the form. The portal may be served under
// a path prefix (web.py rule 9): every URL here starts with the one on <body data-base>.
"use strict";

(function () {
  const base = document.body.dataset.base || "";

  function toBuffer(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toText(buffer) {
    let binary = "";
    for (const byte of new Uint8Array(buffer)) {
      binary += String.fromCharCode(byte);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBuffers(descriptors) {
    return (descriptors || []).map((d) => Object.assign({}, d, { id: toBuffer(d.id) }));
  }

  async function options(path, fields) {
    const response = await fetch(path, {
      method: "POST",
      body: new URLSearchParams(fields),
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !type.startsWith("application/json")) {
      throw new Error("the portal did not answer: reload the page");
    }
    return response.json();
  }

  function answer(credential) {
    const r = credential.response;
    const response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) {
        response.userHandle = toText(r.userHandle);
      }
    }
    const json = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults(),
    };
    if (credential.authenticatorAttachment) {
      json.authenticatorAttachment = credential.authenticatorAttachment;
    }
    return JSON.stringify(json);
  }

  function say(text) {
    const status = document.getElementById("passkey-status");
    if (status) {
      status.textContent = text;
    }
  }

  function loginPage(form) {
    const box = document.getElementById("passkey-login");
    const button = document.getElementById("passkey-login-button");
    box.hidden = false;
    button.addEventListener("click", async () => {
      const fields = form.elements;
      if (!fields.email.reportValidity() || !fields.passphrase.reportValidity()) {
        return;
      }
      button.disabled = true;
      say("Use your passkey now.");
      try {
        const publicKey = await options(base + "/login/passkey", {
          login_token: fields.login_token.value,
        });
        publicKey.challenge = toBuffer(publicKey.challenge);
        publicKey.allowCredentials = withBuffers(publicKey.allowCredentials);
        const credential = await navigator.credentials.get({ publicKey: publicKey });
        fields.passkey.value = answer(credential);
        fields.code.required = false;
        say("Logging in…");
        form.submit();
      } catch (error) {
        say("No passkey was used (" + error.name + "). Try again, or enter the code " +
            "from your authenticator app.");
        button.disabled = false;
      }
    });
  }

  function accountPage(form) {
    document.getElementById("passkey-needs-script").hidden = true;
    form.hidden = false;
    form.addEventListener("submit", async (event) => {
      const fields = form.elements;
      if (fields.credential.value) {
        return; // the browser's answer is in: send the form
      }
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      say("Use your passkey now.");
      try {
        const publicKey = await options(base + "/account/passkeys/options", {
          csrf: fields.csrf.value,
        });
        publicKey.challenge = toBuffer(publicKey.challenge);
        publicKey.user.id = toBuffer(publicKey.user.id);
        publicKey.excludeCredentials = withBuffers(publicKey.excludeCredentials);
        const credential = await navigator.credentials.create({ publicKey: publicKey });
        fields.credential.value = answer(credential);
        say("Adding the passkey…");
        form.submit();
      } catch (error) {
        say("No passkey was added (" + error.name + "). Try again.");
        button.disabled = false;
      }
    });
  }

  const supported = window.PublicKeyCredential && navigator.credentials;
  const login = document.getElementById("login-form");
  const add = document.getElementById("passkey-add");
  if (!supported) {
    const note = document.getElementById("passkey-needs-script");
    if (note) {
      note.textContent = "This browser cannot make passkeys.";
    }
    return;
  }
  if (login) {
    loginPage(login);
  }
  if (add) {
    accountPage(add);
  }
})();
