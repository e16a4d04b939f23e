"""Witnesses: someone other than the server's owner cosigns the archive's checkpoints.

Rules this package keeps:
1. The protocol is C2SP's, unchanged: `tlog-witness` (POST /add-checkpoint) and
   `tlog-cosignature` (cosignature/v1, Ed25519), so a stock witness can cosign our
   checkpoints and our witness can serve any C2SP log.
2. A pure core (`cosignature`, `request`, `decision`) that takes bytes and values and
   returns values; the IO lives apart (`state`, `server`, `client`, `witnessed`,
   `submitter`).
3. A witness learns a log's size and the times it grows: it is run by a contact or an
   advocacy organisation, never on the survivor's own server (docs/witnesses.md).
"""
