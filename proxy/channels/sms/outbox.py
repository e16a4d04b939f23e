"""The durable outbox: what nocontact still has to ask of the provider, until it is done.

Rules this module keeps:
1. Tasks are kept in memory only: the journal holds nothing that says what became of
   an arrival. Nothing is lost by a crash, because the provider keeps what they are
   about: an allowed text whose forward did not finish is not yet handled (the group's
   `then` records it handled only once every task of the group is done), so
   reconciliation finds it at the provider and forwards it again; cleanup of held items
   is rebuilt from the provider (reconcile.py rule 3). A forward is repeated only if the
   crash came between the provider's answer and the handled line.
   (Task lines an older version journaled are still done, and marked done; a line of
   a kind this version does not know is skipped, and left out when the journal is
   rewritten.) A line names its kind by the `TaskKind`'s string value.
2. Two kinds of work: forwarding an allowed text to the survivor's phone, and cleaning a
   held item out of the provider's logs (delete a text, its media, a recording, a call).
   Who the forward goes to is read at sending time, so fixing `forward_to` (and SIGHUP)
   delivers what was waiting.
3. Forwards go first. Cleanup waits for a quiet moment (no webhook for `QUIET` seconds)
   unless it has waited `CLEANUP_WITHIN` already: answering the provider is what keeps
   messages safe, tidying its logs can wait seconds. Up to `PARALLEL` requests at once.
4. An outage (ProviderUnavailable) pauses the whole outbox with backoff (1 s doubling to
   5 min). A refusal (4xx) backs off that task alone (up to an hour) and keeps it.
5. Silence: no log line names a task, its kind or its number. Only forwards are ever
   logged, because the survivor must learn that her texts are not reaching her, and a
   forward says nothing held: an outage met by a forward (once when it starts, once when
   it ends), and a refused forward. Cleanup exists only for held items, so its failures
   are never logged at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import assert_never

from proxy.channels.sms.journal import Entry, Journal
from proxy.channels.sms.provider import Provider, ProviderRefused, ProviderUnavailable
from proxy.logs import get_logger

_log = get_logger("sms.outbox")
_FIRST_BACKOFF = 1.0
_OUTAGE_BACKOFF = 300.0
_REFUSED_BACKOFF = 3600.0
QUIET = 0.5
CLEANUP_WITHIN = 30.0
PARALLEL = 8
_FIELDS = ("kind", "sid", "media_sid", "body", "media_urls")


class TaskKind(enum.StrEnum):
    """What a task asks of the provider; its value is what the journal line says."""

    FORWARD = "forward"  # send an allowed text (or a voicemail's link) to her phone
    DELETE_TEXT = "delete_text"
    BLANK_TEXT = "blank_text"  # queued by an older version only: still done
    DELETE_MEDIA = "delete_media"
    DELETE_RECORDING = "delete_recording"
    DELETE_CALL = "delete_call"


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One request to make of the provider."""

    kind: TaskKind
    sid: str = ""
    media_sid: str = ""
    body: str = ""
    media_urls: tuple[str, ...] = ()

    @classmethod
    def from_entry(cls, entry: Entry) -> Task:
        # A kind this version does not know raises ValueError: the line is skipped.
        return cls(kind=TaskKind(entry["kind"]), sid=str(entry.get("sid", "")),
                   media_sid=str(entry.get("media_sid", "")), body=str(entry.get("body", "")),
                   media_urls=tuple(entry.get("media_urls", ())))  # fmt: skip

    def entry(self, name: str) -> Entry:
        found: Entry = {"task": name, "kind": self.kind.value}
        for key in _FIELDS[1:]:
            value = getattr(self, key)
            if value:
                found[key] = list(value) if isinstance(value, tuple) else value
        return found


@dataclass(slots=True)
class _Group:
    """Tasks added together, and what to do once all of them are done (rule 1)."""

    left: int
    then: Callable[[], Awaitable[None]]


@dataclass(slots=True)
class _Waiting:
    task: Task
    since: float
    group: _Group | None = None
    due: float = 0.0
    backoff: float = field(default=_FIRST_BACKOFF)


@dataclass(frozen=True, slots=True, kw_only=True)
class Addresses:
    """Who a forward is from (the public number) and to (the survivor's phone)."""

    number: str
    forward_to: str


class Outbox:
    def __init__(
        self, journal: Journal, entries: Iterable[Entry], provider: Provider,
        addresses: Callable[[], Addresses],
    ) -> None:  # fmt: skip
        self._journal = journal
        self._provider = provider
        self._addresses = addresses
        self._last_arrival = 0.0
        # Two queues in arrival order: a burst of held texts never delays a forward, and
        # deferring cleanup costs nothing per webhook (no scan of what waits).
        self._forwards: dict[str, _Waiting] = {}
        self._cleanup: dict[str, _Waiting] = {}
        now = time.monotonic()
        self._journaled: set[str] = set()  # names of the tasks with a line in the journal
        for entry in entries:
            if "task" in entry:
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    task = Task.from_entry(entry)
                    self._queue(task)[str(entry["task"])] = _Waiting(task, now)
                    self._journaled.add(str(entry["task"]))
            elif "done" in entry:
                self._forwards.pop(str(entry["done"]), None)
                self._cleanup.pop(str(entry["done"]), None)
        self._names = itertools.count()
        self._prefix = f"{time.time_ns():x}-"
        self._wake = asyncio.Event()
        self._outage = False
        self._pause_until = 0.0
        self._outage_backoff = _FIRST_BACKOFF

    def arrival(self) -> None:
        """A webhook arrived: cleanup waits for a quiet moment."""
        self._last_arrival = time.monotonic()

    def _queue(self, task: Task) -> dict[str, _Waiting]:
        return self._forwards if task.kind is TaskKind.FORWARD else self._cleanup

    def __len__(self) -> int:
        return len(self._forwards) + len(self._cleanup)

    def lines(self) -> list[Entry]:
        """The journaled tasks still waiting, as journal lines (the rewrite at start)."""
        both = [*self._forwards.items(), *self._cleanup.items()]
        return [w.task.entry(name) for name, w in both if name in self._journaled]

    def waiting(self, task: Task) -> bool:
        return any(w.task == task for w in self._queue(task).values())

    async def add(
        self, tasks: Sequence[Task], *, then: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Queue `tasks` (in memory, rule 1); `then` runs once every one of them is done,
        at once if there are none. They are sent in the background."""
        if not tasks:
            if then is not None:
                await then()
            return
        group = _Group(left=len(tasks), then=then) if then is not None else None
        now, wake = time.monotonic(), False
        for task in tasks:
            queue = self._queue(task)
            wake = wake or task.kind is TaskKind.FORWARD or not queue  # else the timer is set
            queue[f"{self._prefix}{next(self._names)}"] = _Waiting(task, now, group)
        if wake:
            self._wake.set()

    async def run(self) -> None:
        """Send waiting tasks until cancelled."""
        while True:
            self._wake.clear()
            delay = await self._round(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _cleanup_from(self) -> float:
        """When cleanup may run: after a quiet moment, or once the oldest has waited long."""
        oldest = next(iter(self._cleanup.values()))
        return min(self._last_arrival + QUIET, oldest.since + CLEANUP_WITHIN)

    def _ready(self, now: float) -> list[str]:
        ready = [name for name, w in self._forwards.items() if w.due <= now]
        if self._cleanup and self._cleanup_from() <= now:
            ready += [name for name, w in self._cleanup.items() if w.due <= now]
        return ready

    async def _round(self, now: float) -> float | None:
        """Send what is ready; the seconds until something may be ready (None: nothing)."""
        if now >= self._pause_until:
            ready = self._ready(now)
            for start in range(0, len(ready), PARALLEL):
                chunk = ready[start : start + PARALLEL]
                results = await asyncio.gather(*(self._attempt(n, now) for n in chunk))
                if not all(results):
                    break
        now = time.monotonic()
        times = [w.due for w in self._forwards.values()]
        if self._cleanup:
            moment = self._cleanup_from()
            if moment <= now:  # cleanup may run now: what is left waits for its backoff
                moment = max(moment, min(w.due for w in self._cleanup.values()))
            times.append(moment)
        if not times:
            return None
        return max(0.01, max(min(times), self._pause_until) - now)

    async def _attempt(self, name: str, now: float) -> bool:
        """One task; False if the provider is unreachable (the round stops)."""
        queue = self._forwards if name in self._forwards else self._cleanup
        waiting = queue.get(name)
        if waiting is None:
            return True
        try:
            await self._send(waiting.task)
        except ProviderUnavailable:
            # Only a forward may say so: cleanup exists only for held items.
            if not self._outage and waiting.task.kind is TaskKind.FORWARD:
                _log.warning("the provider is unreachable; the outbox will retry")
                self._outage = True
            self._pause_until = time.monotonic() + self._outage_backoff
            self._outage_backoff = min(self._outage_backoff * 2, _OUTAGE_BACKOFF)
            return False
        except ProviderRefused as error:
            if waiting.task.kind is TaskKind.FORWARD:
                _log.error("the provider refused to forward a text; it is kept and retried",
                           status=error.status, code=error.code)  # fmt: skip
            waiting.due = now + waiting.backoff
            waiting.backoff = min(waiting.backoff * 2, _REFUSED_BACKOFF)
            return True
        if self._outage and waiting.task.kind is TaskKind.FORWARD:
            _log.info("the provider is reachable again")
            self._outage = False
        self._outage_backoff = _FIRST_BACKOFF
        del queue[name]
        if name in self._journaled:
            self._journaled.discard(name)
            await self._journal.append([{"done": name}], durable=False)
        group = waiting.group
        if group is not None:
            group.left -= 1
            if group.left == 0:
                await group.then()
        return True

    async def _send(self, task: Task) -> None:
        provider = self._provider
        match task.kind:
            case TaskKind.FORWARD:
                addresses = self._addresses()
                await provider.send_text(to=addresses.forward_to, sender=addresses.number,
                                         body=task.body, media_urls=task.media_urls)  # fmt: skip
            case TaskKind.DELETE_TEXT:
                await provider.delete_text(task.sid)
            case TaskKind.BLANK_TEXT:
                await provider.blank_text(task.sid)
            case TaskKind.DELETE_MEDIA:
                await provider.delete_media(task.sid, task.media_sid)
            case TaskKind.DELETE_RECORDING:
                await provider.delete_recording(task.sid)
            case TaskKind.DELETE_CALL:
                await provider.delete_call(task.sid)
            case _:
                assert_never(task.kind)
