"""`nocontact run`: every configured channel in one asyncio process.

Rules this module keeps:
1. Start-up order: config valid -> archive open (the single-writer lock) -> next hop ->
   listen. Anything that fails stops the start with one line; nothing listens half-ready.
2. SIGTERM / SIGINT: stop accepting connections, let every message already in DATA
   finish (sealed or delivered, then answered), close the next hop's pooled connections
   and the archive (its tail signed), exit 0.
3. SIGHUP: reload the config. New rules and next hop apply to the next message (the old
   next hop's pooled connections are closed), and no connection is dropped. A changed set
   of contacts too: every item sealed after the reload is sealed to the new set, and the
   change is recorded in the archive's log (`Archive.replace_recipients`). An invalid
   new config changes nothing; the reason is logged (one problem per log line, no
   content of any message). Changes to the listen address or the archive need a
   restart, and the log says so. Each contact whose key a reload adds, changes or
   removes is logged as a fixed event with their name (`proxy.contact_keys` rule 4),
   once the archive seals to the new set.
4. The archive's custody socket is open while the daemon runs, so a contact's tools can
   record their access in the log the daemon holds. It stores only records signed by
   a contact's configured `custody_key` (a demo contact's is derived from its key, a
   portal contact's is the one enrollment wrote), and the keys are published beside the
   archive; a reload replaces them.
5. A demo contact (config `demo: true`) gets a throwaway key pair on first start, and a
   loud warning at every start: its private key is on this machine.
6. The event loop is uvloop's (libuv): the same asyncio interface, with sockets, timers and
   callbacks in C. Measured on held texts (bench/sms.py, 64 clients, median of 3): 0.46
   -> 0.40 ms of CPU per webhook.
7. At start the soft limit on open files is raised to the hard limit: every SMTP session
   and next-hop connection is a descriptor (`max_connections` is 500 by default, and
   many systems start a process with a soft limit of 1024).
8. Email is read by `proxy.readers`: its reading processes start with the daemon (before
   it listens, as do the sealing ones: a process first seen at the first held item would
   date it), take new rules on reload, and stop after the last message is answered.
9. The interpreter hands the GIL between threads every `SWITCH_INTERVAL` (1 ms, not the
   default 5): a thread that holds it in C (pyrage sealing a large item on a worker
   thread) then lets the event loop in every millisecond. At 5 ms a small message's few
   wake-ups each waited up to 5 ms behind a 10 MB seal (bench/hostile.py's probe: p99
   29 ms during the 10 MB held message).
10. No line is logged per message (it would date every held one); `proxy.traffic` logs
    coarse totals of all messages once an hour.
11. No core dumps, here or in a child (a core holds messages and secrets), and children
    get only the environment Python needs (`proxy.processes`).
12. With portal contacts configured, the daemon watches their key files
    (`proxy.contact_keys`): when enrollment writes one (or one is removed: that rule 5),
    it runs rule 3's reload by itself, no SIGHUP needed, within seconds. A garbage key
    file, or a config made invalid meanwhile, is refused as at SIGHUP: one line, the old
    contacts stay. No portal contact, no watch.
13. With an `alerts:` section, the alerts service (proxy.alerts.service) starts with the
    archive, before anything listens, and stops after the last message is answered; a
    reload gives it the new contacts, transports and schedule. Adding or removing the
    section needs a restart, and the log says so. It hears of each custody record the
    socket stores (rule 4), so a relay ends an urgent item's wait for one.
14. Under systemd (`proxy.systemd`): the listening sockets it passed (`smtp`, `webhooks`)
    are claimed right after the config is read, before the archive opens, and used
    instead of binding (`proxy.listeners`); a socket with another name, or for a
    channel not configured, stops the start with one line. READY=1 is sent once the
    archive is open and every channel listens (IMAP watching), and starts the watchdog's
    pings from the event loop.
    SIGHUP sends RELOADING=1, runs rule 3's reload, and sends READY=1 once it is done
    (the change of contacts it made recorded, or refused); SIGTERM sends STOPPING=1 as
    rule 2's stop begins. Without systemd none of this does anything.
15. Each court order's profile is logged, with its order file's SHA-256, when first
    loaded and when a reload changes it (`proxy.order_files`).
16. With `witnesses:` configured, a task of its own offers each checkpoint the archive
    signs to every witness (`proxy.witness.submitter`) once the daemon is ready, and is
    cancelled first when it stops; a witness down never delays a channel. A reload that
    changes `witnesses:` cancels that task and starts one for the new list (what a witness
    acknowledged is kept on disk: witnessed.py rule 2).
17. The archive signs on the config's `archive.checkpoint_every` cadence (writer.py rule
    3: fixed, whatever arrives); a restart changes it, as any other archive setting.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyrage
import uvloop

from proxy.access.keys import custody_public_key
from proxy.alerts.service import AlertService, start_alerts
from proxy.archive import Archive, ArchiveLocked
from proxy.archive.seal import fingerprint
from proxy.channels.imap.runner import ImapRunner
from proxy.channels.sms.runner import SmsRunner
from proxy.channels.smtp import SmtpHandler
from proxy.config import Config, load_config
from proxy.config.model import SmtpChannel
from proxy.contact_keys import KeyChange, key_changes, key_files, watch
from proxy.custody import serve_custody
from proxy.deliver.address import parse_destination
from proxy.deliver.hops import Answer, DeliveryDeferred, NextHop, open_next_hop
from proxy.disk import create_private
from proxy.errors import ConfigError, NocontactError
from proxy.listeners import claim_sockets, listen_sms, listen_smtp
from proxy.logs import get_logger
from proxy.order_files import OrderFiles
from proxy.pipeline import Pipeline
from proxy.processes import no_core_dumps
from proxy.progress import ProgressBar
from proxy.readers import Readers
from proxy.rules import compile_rules
from proxy.systemd.manager import ServiceManager
from proxy.witness.cosignature import WitnessKey
from proxy.witness.submitter import WitnessTarget, witness_forever

_log = get_logger("daemon")
_DRAIN_SECONDS = 60.0
_SMS_LIVE = ("forward_to", "voicemail_greeting", "redact_at_provider", "reconcile_every")


class StartError(NocontactError):
    """The daemon cannot start; the message says why in one line."""


def demo_recipients(config: Config) -> list[str]:
    """Every contact's recipient, making demo key pairs where they are missing; a portal
    contact who has not enrolled yet has none (the reload after enrollment adds it)."""
    recipients = []
    for contact in config.contacts:
        if contact.age_recipient is not None:
            recipients.append(contact.age_recipient)
            continue
        if not contact.demo:
            continue  # a portal contact not enrolled yet: sealed to the others until then
        assert contact.age_recipient_file is not None  # the model guarantees one of the two
        public = Path(contact.age_recipient_file)
        private = public.with_suffix(".key")
        identity = pyrage.x25519.Identity.generate()
        public.parent.mkdir(parents=True, exist_ok=True)
        private.unlink(missing_ok=True)  # a half-made pair: made again, whole
        with os.fdopen(create_private(private), "w") as file:  # 0600 from its creation
            file.write(f"# nocontact DEMO key: not for real use\n{identity}\n")
        public.write_text(f"{identity.to_public()}\n")
        recipients.append(str(identity.to_public()))
    for contact in config.contacts:
        if contact.demo:
            private = Path(contact.age_recipient_file or "").with_suffix(".key")
            message = (
                f"DEMO CONTACT '{contact.name}': held items are sealed to a throwaway key whose "
                f"private half is on this machine ({private}). Anyone here can open them. "
                "Replace the demo contact before real use."
            )
            print(f"nocontact: WARNING: {message}", file=sys.stderr)
            _log.warning("demo contact key in use: not for real use")
    return recipients


def custody_keys(config: Config, recipients: Sequence[str]) -> dict[str, str]:
    """Each contact's custody key by their fingerprint (rule 4); `recipients` as
    `demo_recipients` returned them: in the contacts' order, without the portal contacts
    who have not enrolled (a portal contact's custody key is in the config once they
    have, config/meaning.py rule 8)."""
    keys = {}
    sealed_to = iter(recipients)
    for contact in config.contacts:
        if contact.age_recipient is None and not contact.demo:
            continue  # not enrolled yet: not among `recipients`
        recipient = next(sealed_to)
        key = contact.custody_key
        if key is None and contact.demo and contact.age_recipient_file is not None:
            private = Path(contact.age_recipient_file).with_suffix(".key").read_text()
            secret = next(line for line in private.split() if line.startswith("AGE-SECRET"))
            key = custody_public_key(pyrage.x25519.Identity.from_str(secret))
        if key is not None:
            keys[fingerprint(recipient)] = key
    return keys


def _read_config(path: str) -> tuple[Config, int]:
    """The config, and when (time.time_ns) its reading began: the watch on contacts' key
    files looks for any written since (contact_keys.py rule 2)."""
    read_at = time.time_ns()
    return load_config(path), read_at


def _reply_after(settings: SmtpChannel | None) -> float:
    """Seconds before a reply to DATA (`channels.smtp.reply_after_ms`)."""
    return settings.reply_after_ms / 1000 if settings is not None else 0.0


def _channels(config: Config) -> tuple[str, ...]:
    """The names of the configured channels, for the traffic totals (rule 10)."""
    configured = config.channels
    named = (("smtp", configured.smtp), ("imap", configured.imap), ("sms", configured.sms))
    return tuple(name for name, settings in named if settings is not None)


class _NoNextHop:
    """The next hop of a daemon with no SMTP channel: nothing is ever delivered through it."""

    async def deliver(
        self, data: bytes, sender: str, recipients: Sequence[str], options: Sequence[str],
        *, trace: bytes = b"",
    ) -> None:  # fmt: skip
        raise DeliveryDeferred("no next hop is configured")

    async def verify(self, recipient: str) -> Answer | None:
        return None

    async def aclose(self) -> None:
        """Nothing is kept open."""


NO_NEXT_HOP = _NoNextHop()


def _next_hop(settings: SmtpChannel) -> NextHop:
    return open_next_hop(parse_destination(settings.deliver), hostname=settings.hostname)


async def _custody_socket(
    archive: Archive, alerts: AlertService | None
) -> asyncio.AbstractServer | None:
    """The socket contacts' tools record their access through (never stops the start); the
    alerts hear of each record stored (a relay ends an urgent item's wait)."""
    try:
        return await serve_custody(archive, alerts.recorded if alerts is not None else None)
    except OSError:
        _log.warning("custody socket unavailable: contacts' tools can record "
                     "access only while the daemon is stopped")  # fmt: skip
        return None


def _witnessing(config: Config, archive: Archive) -> asyncio.Task[None] | None:
    """The task that has the archive's checkpoints cosigned (rule 16), if any witness."""
    if not config.witnesses:
        return None
    targets = [WitnessTarget(url=w.url, key=WitnessKey.decode(w.key)) for w in config.witnesses]
    root = Path(config.archive.path)
    return asyncio.get_running_loop().create_task(witness_forever(targets, archive, root))


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (rule 7); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft


class Daemon:
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self.stop = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()  # replaced next hops, closing
        self._recipients: list[str] = []  # the contacts' keys items are sealed to now
        self._applied: Config | None = None  # the config in force (the last one reloaded)
        self._read_at = 0  # when (time.time_ns) that config was read, for the watch
        self._watch: asyncio.Task[None] | None = None  # on portal contacts' keys (rule 12)
        self._reload_now: Callable[[], None] = lambda: None  # what SIGHUP runs, once running
        self._applying = asyncio.Lock()  # one change of contacts at a time, in reload order
        self._alerts: AlertService | None = None  # rule 13
        self.manager = ServiceManager.from_environment()  # rule 14
        self._orders = OrderFiles()  # rule 15
        self._witnessing: asyncio.Task[None] | None = None  # rule 16
        self._witnesses_ready = False  # whether `_ready` has started witnessing
        self._retired: set[asyncio.Task[None]] = set()  # witnessing tasks a reload cancelled

    async def run(self) -> int:
        config, self._read_at = _read_config(self.config_path)
        raise_open_files_limit()
        settings, imap, sms = config.channels.smtp, config.channels.imap, config.channels.sms
        if settings is None and imap is None and sms is None:
            raise StartError(
                "no channel is configured (add channels.smtp, channels.imap or channels.sms)"
            )
        passed = claim_sockets(config)  # rule 14, before anything is opened
        archive = await self._open_archive(config)
        loop = asyncio.get_running_loop()
        readers = Readers(config)
        try:
            await asyncio.gather(readers.start(), archive.start_sealing())  # rule 8
            pipeline = Pipeline(
                rules=compile_rules(config), archive=archive,
                next_hop=_next_hop(settings) if settings else NO_NEXT_HOP,
                hostname=settings.hostname if settings else "nocontact.local",
                default_region=config.default_region, readers=readers,
            )  # fmt: skip
            self._alerts = await start_alerts(config, archive, pipeline)  # rule 13
            handler = SmtpHandler(pipeline, reply_after=_reply_after(settings))
            custody = await _custody_socket(archive, self._alerts)
            servers = await listen_smtp(settings, handler, passed.get("smtp", []))
            phone = await listen_sms(config, pipeline, archive, passed.get("webhooks", ()))
            watchers = ImapRunner(imap, pipeline, loop) if imap is not None else None
            if watchers is not None:
                watchers.start()
                _log.info("imap watching", archive=config.archive.path)
            self._take_signals(config, pipeline, archive, phone)
            self._ready(config, archive)  # rules 14 and 16
            totals = loop.create_task(pipeline.traffic.log_every(_channels(config)))
            # Everything made at start (rules, config, imports) lives as long as the daemon:
            # moved out of the collector's reach, a full collection takes ~6 ms, not ~40.
            gc.collect()
            gc.freeze()
            await self.stop.wait()
            self.manager.stopping()
            for task in (totals, self._watch, self._witnessing):
                if task is not None:
                    task.cancel()
            _log.info("stopping: finishing messages in flight")
            for listening in (*servers, custody):
                if listening is not None:
                    listening.close()
            if phone is not None:
                await phone.close()
            if watchers is not None:
                await asyncio.to_thread(watchers.stop)
            try:
                await asyncio.wait_for(handler.idle.wait(), _DRAIN_SECONDS)
            except TimeoutError:
                _log.warning("stopping with messages still in flight; their senders will retry")
            await pipeline.next_hop.aclose()  # its pooled connections
            await asyncio.gather(*self._closing)
        finally:
            self.manager.close()
            await self._stop_alerts()
            await readers.close()
            await archive.close()
        _log.info("stopped")
        return 0

    def _ready(self, config: Config, archive: Archive) -> None:
        """The archive is open and every channel listens: tell systemd (rule 14), and start
        offering checkpoints to the witnesses (rule 16)."""
        self.manager.ready()
        self._witnessing = _witnessing(self._applied or config, archive)
        self._witnesses_ready = True

    def _rewitness(self, config: Config, archive: Archive) -> None:
        """Rule 16: a reload changed the witnesses; the old task goes, a new one starts."""
        if not self._witnesses_ready:
            return  # `_ready` starts it with the config applied by then
        old, self._witnessing = self._witnessing, _witnessing(config, archive)
        if old is not None:
            old.cancel()  # kept until done: a pending task must not be dropped
            self._retired.add(old)
            old.add_done_callback(self._retired.discard)
        _log.info("witnesses changed")

    async def _stop_alerts(self) -> None:
        """After the last message is answered, before the archive closes (rule 13)."""
        if self._alerts is not None:
            await self._alerts.close()

    def _take_signals(
        self, config: Config, pipeline: Pipeline, archive: Archive, phone: SmsRunner | None
    ) -> None:
        """SIGTERM and SIGINT stop (rule 2); SIGHUP, or a portal contact's key file written,
        reloads (rules 3 and 12)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        self._applied = config
        self._orders.note(config)  # rule 15: the config in force, its orders logged
        self._reload_now = functools.partial(self._reload, config, pipeline, archive, phone)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        self._keep_watching()

    def _hangup(self) -> None:
        """SIGHUP: rule 3's reload, between RELOADING=1 and READY=1 (rule 14)."""
        self.manager.reloading()
        self._reload_now()
        reloaded = asyncio.get_running_loop().create_task(self._reloaded())
        self._closing.add(reloaded)
        reloaded.add_done_callback(self._closing.discard)

    async def _reloaded(self) -> None:
        """READY=1 once the change of contacts the reload queued is recorded (the lock
        is first come, first served: it is ours after that change's)."""
        async with self._applying:
            self.manager.ready()

    def _reload(
        self, running: Config, pipeline: Pipeline, archive: Archive, phone: SmsRunner | None
    ) -> None:
        try:
            config, read_at = _read_config(self.config_path)
        except ConfigError as error:
            _log.error("reload refused: the new config is invalid; the old one stays",
                       problems=[str(p) for p in error.problems])  # fmt: skip
            return
        settings = config.channels.smtp
        if (settings is None) != (running.channels.smtp is None):
            _log.error("reload refused: the smtp channel cannot be added or removed while running")
            return
        try:
            next_hop = _next_hop(settings) if settings is not None else NO_NEXT_HOP
        except ValueError:
            _log.error("reload refused: the new next hop is invalid")
            return
        if (config.channels.sms is None) != (running.channels.sms is None):
            _log.error("reload refused: the sms channel cannot be added or removed while running")
            return
        replaced = pipeline.next_hop
        pipeline.replace(rules=compile_rules(config), next_hop=next_hop,
                         default_region=config.default_region)  # fmt: skip
        if pipeline.readers is not None:
            pipeline.readers.replace(config)
        closing = asyncio.get_running_loop().create_task(replaced.aclose())
        self._closing.add(closing)  # messages still on its connections close them when done
        closing.add_done_callback(self._closing.discard)
        if phone is not None and config.channels.sms is not None:
            phone.replace(config.channels.sms, config.default_region)
        if self._alerts is not None:
            self._alerts.replace(config)
        if (config.alerts is None) != (running.alerts is None):
            _log.warning("alerts added or removed: restart to apply")
        previous, self._applied, self._read_at = self._applied or running, config, read_at
        self._new_contacts(config, archive, key_changes(previous, config))
        if config.witnesses != previous.witnesses:
            self._rewitness(config, archive)
        live = {"smtp": {"deliver"}, "sms": set(_SMS_LIVE)}
        if (
            config.channels.model_dump(exclude=live) != running.channels.model_dump(exclude=live)
            or config.archive != running.archive
        ):
            _log.warning("channel or archive settings changed: restart to apply those")
        _log.info("config reloaded")
        self._orders.note(config)
        self._keep_watching()

    def _keep_watching(self) -> None:
        """Watch the portal contacts' key files, if there are any and no watch yet (rule 12)."""
        if self._applied is None or not key_files(self._applied):
            return
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(
                watch(
                    lambda: key_files(self._applied) if self._applied else (),
                    self._reload_now,
                    since=self._read_at,
                )
            )

    async def _open_archive(self, config: Config) -> Archive:
        self._recipients = demo_recipients(config)
        keys = custody_keys(config, self._recipients)
        return await Archive.open(
            config.archive.path, recipients=self._recipients, custody_keys=keys,
            checkpoint_every=float(config.archive.checkpoint_every),
        )  # fmt: skip

    def _new_contacts(self, config: Config, archive: Archive, changes: list[KeyChange]) -> None:
        """Seal to the new set of contacts from now on, if it changed, and check custody
        records against their keys (rule 3); then log each contact's change."""
        recipients = demo_recipients(config)
        keys = custody_keys(config, recipients)
        changed = sorted(recipients) != sorted(self._recipients)
        if changed:
            self._recipients = recipients
        applying = asyncio.get_running_loop().create_task(
            self._apply_contacts(archive, keys, recipients if changed else None, changes)
        )
        self._closing.add(applying)
        applying.add_done_callback(self._closing.discard)

    async def _apply_contacts(
        self, archive: Archive, keys: dict[str, str], recipients: list[str] | None,
        changes: list[KeyChange],
    ) -> None:  # fmt: skip
        """Give the archive the contacts' custody keys and, if they changed, their keys;
        two reloads close together apply in the order they were made."""
        async with self._applying:
            try:
                await archive.replace_custody_keys(keys)
                if recipients is not None:
                    await archive.replace_recipients(recipients)
            except Exception as error:  # any failure: one line, and the operator restarts
                _log.error("the change of contacts could not be recorded in the archive; "
                           "restart", error=type(error).__name__)  # fmt: skip
                return
        if recipients is not None:
            _log.info("contacts changed: new items are sealed to the new set, and the log says so")
        for change in changes:
            _log.info(change.event, contact=change.contact)


async def _sweep(config_path: str) -> int:
    config = load_config(config_path)
    imap = config.channels.imap
    if imap is None:
        raise StartError("no IMAP account is configured (channels.imap)")
    try:
        archive = await Archive.open(config.archive.path, recipients=demo_recipients(config))
    except ArchiveLocked as error:
        raise StartError(
            "the daemon is running: it sweeps every folder when it starts and watches them "
            "since; stop it to sweep by hand"
        ) from error
    readers = Readers(config)
    try:
        pipeline = Pipeline(
            rules=compile_rules(config), archive=archive, next_hop=NO_NEXT_HOP,
            hostname="nocontact.local", default_region=config.default_region, readers=readers,
        )  # fmt: skip
        runner = ImapRunner(imap, pipeline, asyncio.get_running_loop())
        await asyncio.to_thread(runner.sweep, ProgressBar)
    finally:
        await readers.close()
        await archive.close()
    return 0


def sweep(config_path: str) -> int:
    """`nocontact imap sweep`: one pass over every watched folder, with a progress bar."""
    return asyncio.run(_sweep(config_path))


SWITCH_INTERVAL = 0.001


def run(config_path: str) -> int:
    """Run the daemon until SIGTERM; the exit code."""
    sys.setswitchinterval(SWITCH_INTERVAL)  # rule 9
    no_core_dumps()  # rule 11
    return uvloop.run(Daemon(config_path).run())
