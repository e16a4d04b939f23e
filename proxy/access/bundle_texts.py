"""The two texts every evidence bundle carries: VERIFY.txt and declaration-template.txt.

Rules this module keeps:
1. Plain ASCII, lines under 80 columns: the examiner may open them in any editor.
2. VERIFY.txt says what verify.py checks and, as plainly, what it cannot: that the
   originals are what the sealed entries decrypt to rests on the custodian's declaration,
   and that verify.py is unmodified can only be checked against a copy from outside.
   It explains the proofs/ folder and the witnesses in plain words, for a lawyer: what
   a cosignature vouches for, what "not yet witnessed" means, where the keys come from.
3. The declaration has exactly four fields the exporter fills with `str.format`
   (`{manifest_sha256}`, `{verifier_key}`, `{item_count}`, `{created_at}`) and blanks the
   custodian fills by hand. It names the manifest's hash, so it is written after the
   manifest and is not listed in it.
"""

from __future__ import annotations

VERIFY_NAME = "VERIFY.txt"
DECLARATION_NAME = "declaration-template.txt"

VERIFY_TEXT = """\
HOW TO VERIFY THIS EVIDENCE BUNDLE
==================================

What this bundle is
-------------------
This bundle was exported from a nocontact archive. nocontact is a program
that holds the messages (email, text messages, voicemail) sent by people its
user has cut off, or written about them, and seals each one when it arrives:
the message as received, byte for byte, is encrypted and appended to a log that
can only grow. The log is a Merkle tree (RFC 6962, RFC 9162) whose state is
signed at regular intervals ("checkpoints") with the archive's Ed25519 key.
Only the trusted contacts named in the archive can decrypt its entries; the
custodian who exported this bundle is one of them.

The bundle contains:

  originals/      each held item's original: an email's .eml file, byte for
                  byte as received; for a text message or a call, the
                  parameters the telephone service sent (a .json file) and the
                  media or voicemail recording, taken from what was captured
  sealed/         each item's sealed archive entry, exactly as stored in the
                  log (encrypted; the signed tree was computed from it), and
                  those of the custody records (custody-NNNNNN.age)
  proofs/         one proof file per item and per custody record
                  (NC-000001.tlog-proof, ...): see "Witnesses" below
  manifest.json   every file with its SHA-256 and size; each item's details,
                  its position in the log ("leaf_index") and its inclusion
                  proof; the signed checkpoint the proofs lead to; the archive
                  key
  manifest.sig    the exporting contact's signature (their custody key) of
                  the SHA-256 of manifest.json
  custody.json    the custody log: who opened, viewed and exported items, when
                  and why, each entry signed by that contact; this export's
                  own entry is the last
  report.pdf      a readable rendering of the items and the pattern of contact
  verify.py       the verification program described below
  VERIFY.txt      this file
  declaration-template.txt
                  the custodian's certification of these records

Items are numbered NC-000001, NC-000002, ... (Bates numbers). The same number
names an item's files in originals/ and sealed/, its entry in manifest.json and
its place in report.pdf.

Witnesses and the proofs/ folder
--------------------------------
The archive's own signature shows that the server signed its log; it cannot
show that the server never signed a different, rewritten one. Witnesses are
independent programs, run by someone other than the archive's owner (a
lawyer's office, an advocacy organisation), that keep the latest state of
the log they saw and add their own signature (a "cosignature") only to a
new state that extends the old one without changing or removing anything.

Each file in proofs/ is a standard "transparency log proof" (the published
format c2sp.org/tlog-proof). In plain words it says: "entry number N of this
archive's log is part of the log as signed at this moment; here is the
arithmetic that shows it; and here are the signatures of the archive and of
each witness that vouched for that moment". It holds the entry's position,
a short list of hashes, and the signed state of the log with the witnesses'
cosignatures. Each proof uses the signed state with the most cosignatures
that already contains the entry.

An item is "not yet witnessed" when no witness had cosigned a state of the
log containing it when the bundle was made (for example, a message that
arrived minutes before the export, or an archive with no witness set up).
Its proof then rests on the archive's own signature only. manifest.json
lists such items ("not_witnessed") and verify.py prints them. The custody
record of this export itself is written after the last signed state, so it
has no proof in this bundle; a later export will carry one.

The witnesses' keys are listed in manifest.json. When the exporter had them
(from the archive's configuration or given by hand), verify.py checks each
cosignature with them. When it did not, each witness is listed by name as
"unverified: key not given" and its cosignatures are counted, not checked.

How to run the check
--------------------
You need Python 3.8 or later and OpenSSL 3 (the "openssl" command). Nothing
else: no network access, no password, no secret key.

  1. Unzip the bundle into an empty folder.
  2. In that folder, run:       python3 verify.py
     or, from anywhere else:    python3 verify.py PATH/TO/FOLDER
  3. To require a particular archive key, one you obtained independently:
                                python3 verify.py --key 'KEY'
     and the exporting contact's custody key, obtained from them directly:
                                python3 verify.py --contact-key 'ed25519:...'
     and a witness's key, obtained from the witness's operator (repeat the
     option for each witness; only the keys you give are then used):
                                python3 verify.py --witness-key 'KEY'

verify.py prints the SHA-256 of manifest.json, who exported the bundle, their
custody key and its fingerprint (compare it with the one the contact gives
you), the archive key (and its key id), the selection and what was left out,
then one line for each problem it finds, and ends with either

  bundle OK: N items verified against checkpoint of size S, root R, key K; ...

(exit status 0), or "bundle FAILED: n problems" (exit status 1).

What verify.py checks
---------------------
  - manifest.sig is a valid signature by the exporting contact's custody key
    named in manifest.json, of a statement naming the SHA-256 of manifest.json
    exactly as it is in this folder. Any change to manifest.json is detected.
  - The checkpoint in manifest.json is signed by the archive key, and names
    the archive.
  - For each item, the file in sealed/ is hashed together with its position
    in the log, as the archive does, and must give the leaf hash in the
    manifest: SHA-256 of 0x00, 0x01, the position as 8 bytes, then the
    file's own SHA-256 (archive format version 3, printed as "archive
    format"), or then the file itself (versions 1 and 2, archives made
    before version 3). The inclusion proof must lead from that leaf to the
    root hash in the signed checkpoint. This shows the sealed entry was in
    the archive's log, at that position, when the checkpoint was signed, and
    has not changed since.
  - For each item and each custody record with a proof in proofs/, the proof
    names the entry's position; the signed state of the log in it verifies
    under the archive key; its hashes lead from the entry (recomputed from
    its file in sealed/) to that state; and each cosignature by a witness
    whose key is known verifies. A cosignature by an unknown key is shown as
    unverified, never as checked. Items whose proof has no cosignature are
    printed as "not yet witnessed", and must be the ones the manifest names.
  - Every file the manifest lists (originals, sealed entries, custody.json,
    report.pdf, ...) is present, with the SHA-256 and size the manifest states.
  - The items and the entries the manifest says were left out (with why:
    sealed only to other contacts, outside the dates, custody records,
    checkpoints) name every entry of the signed tree exactly once.
  - Every signed entry in custody.json verifies under its contact's custody
    key, and this export's own entry is there, by the exporting contact,
    naming exactly the items in the bundle. Entries from older versions are
    unsigned; they are counted, not checked.
  - The folder holds no file the manifest does not list, other than
    manifest.json, manifest.sig, verify.py, VERIFY.txt and
    declaration-template.txt.

What verify.py cannot check
---------------------------
  - That the archive key and the contact's custody key are the right ones.
    Anyone can make a key and sign a bundle with it. Compare the custody key's
    fingerprint with the one the contact gives you, or run with --contact-key.
    Compare the archive key verify.py prints with the key in the custodian's
    declaration and with a copy kept outside this bundle (the trusted
    contacts keep the archive's signing.pub), or run verify.py with --key.
  - That the witness keys are the witnesses' own. The keys listed in the
    bundle come from the exporter. Ask each witness's operator for its key
    and run verify.py with --witness-key, or compare the keys it prints.
  - That each original is the content of its sealed entry. The sealed entries
    are encrypted to the trusted contacts; the originals were obtained by
    decrypting them. That link rests on the custodian's decryption and
    declaration. Anyone holding a contact's key can repeat it: decrypt the file
    in sealed/ with the "age" tool; it begins with a line of metadata that
    records the SHA-256 of the original as captured ("original_sha256" in the
    manifest). For an email that is the SHA-256 of its .eml file; a text
    message's or call's files are taken out of the captured original, so
    their hashes differ from it.
  - Times. Receipt and checkpoint times come from the archive server's clock.
    The proofs show order and that nothing changed after signing, not the
    correctness of that clock.
  - That verify.py itself is unmodified. A program inside the bundle cannot
    vouch for itself: compare verify.py with the published copy (nocontact's
    source, file proxy/access/verify_bundle.py, at the version named as
    "software" in manifest.json), or run the published copy on this folder.
  - Who wrote a message. The bundle shows what was received, from which
    address or number, under which rule it was held, and when.
"""

DECLARATION_TEMPLATE = """\
DECLARATION OF CUSTODIAN CERTIFYING ELECTRONIC RECORDS

(Template. Adapt it to the court and the rules that apply, for example
Federal Rules of Evidence 902(11), 902(13) and 902(14) with 28 U.S.C. section
1746 in United States federal courts. Fill every blank; strike what does not
apply.)

Case: ____________________________________  Court: ___________________________

I, ________________________________ (full name), declare as follows:

1. Qualification. I am ______________________________ (role, for example:
   attorney for / trusted contact of ______________________). I was designated
   as a trusted contact of the nocontact archive described below and I hold the
   private key that opens its sealed records. I have personal knowledge of the
   export described in paragraph 5 and knowledge of the system from its
   documentation and use.

2. The system. nocontact is software that runs on ______________________'s own
   server, between that person and their email and telephone (text message and
   voice) accounts. For each incoming message it applies rules set in advance.
   A message from a listed person, or about one, is not delivered: it is held.
   Holding is automatic; no person selects, reads or edits a message before it
   is held.

3. How the records were captured and sealed. At the time each held message was
   received, the system recorded, in the regular course of its operation:
   the message exactly as received (for email, the complete message as
   received from the sending server or mailbox; for text messages, the
   parameters sent by the telephone service and any attached media; for calls,
   the voicemail recording), the time of receipt, the sender's addresses,
   names and numbers, and the rule under which it was held. It encrypted that
   record (age, X25519) to the trusted contacts' keys and appended it to an
   append-only log. Each log entry is a leaf of a Merkle tree (RFC 6962,
   RFC 9162). At regular intervals the system signs the state of the tree (a
   "checkpoint") with the archive's Ed25519 signing key. A change to, removal
   of, insertion into or reordering of entries changes the tree and is
   detected on verification.

4. Hash algorithm. Records are identified by their SHA-256 hash values
   (FIPS 180-4).

5. The bundle. On {created_at} I exported an evidence bundle of {item_count}
   held items. Its manifest (manifest.json) has the SHA-256 hash value

       {manifest_sha256}

   and is signed with my own custody key (its fingerprint is printed by
   verify.py); the checkpoints of the archive are signed by the archive key

       {verifier_key}

   For each item the bundle contains: the sealed entry exactly as stored in the
   archive (sealed/); its proof of inclusion in the log under a checkpoint
   signed by that key (manifest.json); and the original files, obtained by
   decrypting that entry with my key (originals/): for an email, the message
   exactly as received; for a text message or call, the parameters sent by
   the telephone service and the media or recording, taken unaltered from
   the captured original.

6. Accuracy of the copies. The files in originals/ are true, accurate and
   complete copies of the records as received and sealed by the system. Their
   SHA-256 hash values are listed in the manifest; on decryption, each sealed
   entry's recorded hash of the original matched the original it contained.

7. Verification. On ______________ (date) I ran the program verify.py on the
   bundle, which reported: "bundle OK" for {item_count} items, and the archive
   key shown in paragraph 5. ______________________________________________
   (other steps taken, e.g. comparison with an independently kept copy of the
   archive key).

8. Custody. Every opening, viewing and export of the archive's records by a
   trusted contact is itself recorded in the same log, signed with that
   contact's custody key and dated by the archive; the records of these
   accesses, this export's included, are in the bundle as custody.json.

I declare under penalty of perjury under the laws of _________________________
that the foregoing is true and correct.

Executed on ______________ (date) at ______________________________ (place).


Signature: ________________________________

Name:      ________________________________

Role:      ________________________________

Address / contact: ________________________
"""


def fill_declaration(
    *, manifest_sha256: str, verifier_key: str, item_count: int, created_at: str
) -> str:
    """The declaration with the bundle's facts filled in; blanks stay for the custodian."""
    return DECLARATION_TEMPLATE.format(
        manifest_sha256=manifest_sha256,
        verifier_key=verifier_key,
        item_count=item_count,
        created_at=created_at,
    )
