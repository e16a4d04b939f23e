"""Telling the trusted contacts, never the survivor (issue 23): how urgent a held item is
(`tiers`, `threats`), and the alerts and digests that say so without a word of it.

Modules, each with one job: `held` (what the pipeline tells of a held item), `burst` (the
Poisson test), `history` (each person's history: bursts, new channels and identities),
`schedule` (digest times, quiet hours), `text` (what an alert says), `outbox` (the state
as values: letters, open urgent alerts, digest counts), `vault` (that state sealed on
disk), `send` (apprise), `acks` (acknowledgements over a socket), `service` (the
orchestrator the daemon runs), `commands` (`nocontact alerts ack`), `logistics`,
`order_mark`, `card` and `deadlines` (child logistics under a court order, and the
automatic card to her when no relay comes in time, issue 25).

Rules this package keeps:
1. The pure core (`tiers`, `lexicon`, `threats`, `logistics`, `order_mark`) reads text and
   returns an `Assessment`: a tier and the reasons for it (and, under a court order, an
   `OrderMark`). It does no IO and reads no clock: a received time is an argument.
2. No alert, digest, log line or file carries held content: a tier and a link, never a
   name, number, subject or a word of the message. The automatic card (card.py) is the
   one thing sent to her about an item, and it carries no word of his either: names from
   the config, fixed labels, dates and times written out, in the sealed state till sent.
"""
