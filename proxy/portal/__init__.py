"""The contacts' web portal: the accounts core (enrollment, login) the web layer calls.

Rules this package keeps:
1. No web code here: values in, values out. The web layer (aiohttp, later) moves requests
   to `proxy.portal.accounts.Accounts` and its answers back to pages.
2. One job per module: `store` (the state directory on disk), `invites` (one-time enrollment
   tokens), `totp` (codes from an authenticator app), `passphrases` (strength and argon2id),
   `throttle` (slowing and locking failed logins), `wrapping` (the contact's age identity,
   wrapped with their passphrase), `passkeys` (WebAuthn as an optional second factor,
   py_webauthn made total), `challenges` (WebAuthn challenges, single use, in memory),
   `forwarded` (the client's address behind a trusted reverse proxy, for the throttle),
   `accounts` (the facade that puts them together).
3. Nothing here logs, prints or puts in an exception message a passphrase, code, token,
   TOTP secret or identity.
"""
