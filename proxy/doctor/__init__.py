"""`nocontact doctor` and `nocontact health`: is this home server set up, and is it up?

Modules, one kind of check each, every one a function from the config (and the clock, a
timeout) to `Finding`s: `findings` (the value and its one line), `files` (key and secret
files and their modes), `store` (the archive verifies, the clock, free disk), `hops` (the
next hop answers), `mailboxes` (each IMAP account logs in), `provider` (the Twilio
credentials work), `certificates` (the portal's URL and certificate), `transports` (alert
URLs), `health` (the running daemon, from outside); and `reasons` (why a conversation
failed, in a few words), `checkup` (doctor's checks in order), `commands` (the two
commands).

Rules this package keeps:
1. One line per finding, `ok   WHAT` or `FAIL WHAT: WHY`, each WHY one line; doctor exits
   0 when every line is ok, else 1; health prints `healthy` (exit 0) or `unhealthy: WHY`
   (exit 1). Neither ever prints a traceback: a check that breaks is its own FAIL line.
2. Nothing printed says anything about held items: of the archive only "verifies" or not
   (no entry, index, count, size or time), no name of a file under the log or a state
   directory, no free-space figure unless it is too low. The output is the same for an
   archive with held items as for one without.
3. Every check that talks to another host has a timeout (doctor 10 s, health 5 s): a dead
   host is one FAIL line, never a hang.
4. Nothing is changed and nothing sent, except the one content-free test alert
   ("nocontact test alert") that `doctor --send-test-alert` sends.
"""
