"""Telling the trusted contacts, never the survivor (issue 23): how urgent a held item is
(`tiers`, `threats`), and the alerts and digests that say so without a word of it.

Rules this package keeps:
1. The pure core (`tiers`, `lexicon`, `threats`) reads text and returns an `Assessment`: a tier and
   the reasons for it. It does no IO and reads no clock.
2. No alert, digest, log line or file carries held content: a tier and a link, never a
   name, number, subject or a word of the message.
"""
