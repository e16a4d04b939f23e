"""Reconciliation: the provider's own logs, read for anything no webhook delivered.

Rules this module keeps:
1. Each pass reads the inbound messages, calls and recordings since the last checkpoint
   (recordings of calls to this number only: an account may have others)
   (less a margin for clock skew and late log entries) and hands every SID the ledger has
   not handled to the pipeline, exactly as a webhook would. The ledger makes overlap
   harmless: a SID is handled once, whichever way it came.
2. Only what is final is taken: a text "received", a call that has ended, a recording
   "completed". Anything still in progress is left for its webhook or the next pass.
3. Cleanup is rebuilt from the provider, never kept in a file: what the archive holds
   (its mark, archive/once.py) and is still at the provider is queued for deletion: a
   held text (deleted ones are not listed; one an older version only blanked is), a held
   voicemail, and (redact_at_provider) a held call that ended more than ten minutes ago
   (time enough for its voicemail to be taken). The first pass after start looks back
   `SWEEP` (400 days, the provider's own retention of message logs), for cleanup only,
   so cleanup cut short by a crash or a long outage is finished whenever it was queued.
4. The checkpoint moves only after a whole pass read the logs; a failed pass (provider
   down) is logged without detail and tried again at the next interval. An item that
   fails on its own holds the checkpoint back to its time, and the rest go on: one
   stubborn message never stops the others, and is itself never given up.
5. One pass at a time: a pass asked for while one runs (the periodic one, a test, a
   manual trigger) starts when it ends, so two never share the stuck mark or race on
   the checkpoint file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy.channels.sms.capture import ArrivalKind
from proxy.channels.sms.line import TwilioArrival, TwilioLine
from proxy.channels.sms.outbox import Task, TaskKind
from proxy.channels.sms.provider import Provider, ProviderRefused
from proxy.disk import replace_file
from proxy.identity import e164
from proxy.logs import get_logger
from proxy.message import Channel
from proxy.pipeline import Pipeline

_log = get_logger("sms.reconcile")
FILE = "reconciled.json"
_MARGIN = timedelta(minutes=10)
_CALL_SETTLES = timedelta(minutes=10)
_CALL_ENDED = {"completed", "busy", "no-answer", "failed", "canceled"}
SWEEP = timedelta(days=400)
_Record = dict[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class Watching:
    number: str
    redact_at_provider: bool


def _moment(record: _Record, *keys: str) -> datetime | None:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value:
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _before(record: _Record, since: datetime, key: str) -> bool:
    """Whether the record is older than `since`: looked at for cleanup only (rule 3)."""
    moment = _moment(record, key, "date_created")
    return moment is not None and moment < since


class Reconciler:
    def __init__(
        self, *, state_dir: str, pipeline: Pipeline, line: TwilioLine, provider: Provider,
        watching: Callable[[], Watching], clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:  # fmt: skip
        self._path = Path(state_dir) / FILE
        self._pipeline, self._line, self._provider = pipeline, line, provider
        self._watching = watching
        self._clock = clock
        self.passes = 0  # passes tried so far, finished or not
        self._stuck: datetime | None = None  # the earliest item this pass could not handle
        self._forwarding: datetime | None = None  # the earliest whose forward is under way
        self._passing = asyncio.Lock()  # rule 5
        self._swept = False  # whether a pass since start looked back SWEEP (rule 3)
        if self._path.exists():
            self.checkpoint = datetime.fromisoformat(json.loads(self._path.read_text())["since"])
        else:  # first start: the provider's history before nocontact is not ours to judge
            self.checkpoint = clock()
            self._save(self.checkpoint)

    def _save(self, moment: datetime) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_file(self._path, json.dumps({"since": moment.isoformat()}).encode())

    async def run(self, every: Callable[[], float]) -> None:
        """A pass now, then one every `every()` seconds, until cancelled."""
        while True:
            await self.pass_once()
            await asyncio.sleep(every())

    async def pass_once(self) -> bool:
        """One pass, after any pass in progress; True if everything in it was handled."""
        async with self._passing:
            return await self._pass()

    async def _pass(self) -> bool:
        started = self._clock()
        self._stuck = self._forwarding = None
        since = self.checkpoint - _MARGIN  # what is handled: before it, only cleaned up
        reach = since if self._swept else min(since, started - SWEEP)
        try:
            await self._texts(since, reach)
            await self._recordings(since, reach)  # before calls: a held call goes after
            await self._calls(started, since, reach)
        except Exception:  # the logs could not be read: the next pass tries again
            _log.warning("reconciliation pass did not finish; the next one will retry")
            return False
        finally:
            self.passes += 1
        # An item that failed (whatever it was) holds the checkpoint back to itself, so the
        # next pass sees it again; the others are handled meanwhile, and the ledger keeps
        # them from being handled twice.
        held_back = [m for m in (started, self._stuck, self._forwarding) if m is not None]
        checkpoint = min(held_back)
        if self._stuck is not None:
            _log.warning("reconciliation left some messages for the next pass")
        await asyncio.to_thread(self._save, checkpoint)
        self.checkpoint, self._swept = checkpoint, True
        return self._stuck is None

    async def _take(self, arrival: TwilioArrival) -> None:
        """Hand one arrival to the pipeline; a failure only marks the pass as stuck there,
        and so does an arrival not yet handled after it (its forward is under way: the
        checkpoint waits for it, so a crash before the forward is done is not lost)."""
        moment = arrival.received_at
        try:
            await self._pipeline.receive_phone(arrival, self._line)
        except Exception:
            self._stuck = moment if self._stuck is None else min(self._stuck, moment)
            return
        if not self._line.ledger.handled(arrival.sid):
            waiting = self._forwarding
            self._forwarding = moment if waiting is None else min(waiting, moment)

    async def _texts(self, since: datetime, reach: datetime) -> None:
        watching, ledger = self._watching(), self._line.ledger
        for record in await self._provider.texts_to(watching.number, reach):
            sid = str(record["sid"])
            if not ledger.handled(sid):
                if record.get("status") != "received" or _before(record, since, "date_sent"):
                    continue
                await self._take(self._text(record))
            elif ledger.held(sid) and watching.redact_at_provider:  # still there: delete it
                media = int(str(record.get("num_media") or 0))
                refs = tuple(await self._provider.media_of(sid)) if media else ()
                await self._again(self._line.cleanup(self._text(record), refs))

    async def _again(self, tasks: list[Task]) -> None:
        """Queue cleanup a crash cut short, unless it is already waiting."""
        outbox = self._line.outbox
        tasks = [task for task in tasks if not outbox.waiting(task)]
        if tasks:
            await outbox.add(tasks)

    def _text(self, record: _Record) -> TwilioArrival:
        return TwilioArrival(
            sid=str(record["sid"]), channel=Channel.SMS, kind=ArrivalKind.TEXT,
            sender=str(record.get("from") or ""), recipient=str(record.get("to") or ""),
            text=str(record.get("body") or ""), record=record, live=False,
            received_at=_moment(record, "date_sent", "date_created") or self._clock(),
        )  # fmt: skip

    async def _calls(self, started: datetime, since: datetime, reach: datetime) -> None:
        watching, ledger = self._watching(), self._line.ledger
        for record in await self._provider.calls_to(watching.number, reach):
            sid = str(record["sid"])
            if record.get("status") not in _CALL_ENDED:
                continue
            if not ledger.handled(sid):
                if _before(record, since, "start_time"):
                    continue
                arrival = TwilioArrival(
                    sid=sid, channel=Channel.VOICE, kind=ArrivalKind.CALL, live=False,
                    sender=str(record.get("from") or ""), recipient=str(record.get("to") or ""),
                    text="", record=record,
                    received_at=_moment(record, "start_time", "date_created") or started,
                )  # fmt: skip
                await self._take(arrival)
            elif ledger.held(sid) and watching.redact_at_provider:
                ended = _moment(record, "end_time", "start_time")
                if ended is not None and started - ended > _CALL_SETTLES:
                    await self._again([Task(kind=TaskKind.DELETE_CALL, sid=sid)])

    async def _recordings(self, since: datetime, reach: datetime) -> None:
        ledger = self._line.ledger
        for record in await self._provider.recordings_since(reach):
            sid, call_sid = str(record["sid"]), str(record.get("call_sid") or "")
            if record.get("status") not in (None, "completed"):
                continue
            if ledger.handled(sid):
                if ledger.held(sid):  # an allowed voicemail stays hers
                    await self._again([Task(kind=TaskKind.DELETE_RECORDING, sid=sid)])
                continue
            if _before(record, since, "date_created"):
                continue
            try:
                call = await self._provider.call(call_sid)
            except ProviderRefused:  # its call is gone: the voicemail is kept all the same
                call = {}
            if call and e164(str(call.get("to") or ""), None) != self._watching().number:
                continue  # another number's voicemail in the same account: not ours to take
            # Its call was put through (and rang unanswered) if the call is handled and
            # the archive does not hold it: then the rules decide the voicemail (pipeline
            # rule 7); a call it never heard of, or held, keeps it held.
            allowed = bool(call_sid) and ledger.handled(call_sid) and not ledger.held(call_sid)
            arrival = TwilioArrival(
                sid=sid, channel=Channel.VOICE, kind=ArrivalKind.VOICEMAIL, voicemail=True,
                call_allowed=allowed,
                sender=str(call.get("from") or ""), recipient=str(call.get("to") or ""),
                text="", record={"recording": record, "call": call}, call_sid=call_sid,
                received_at=_moment(record, "date_created") or self._clock(), live=False,
                media=((sid, "audio/x-wav", f"{record['uri']}".removesuffix(".json") + ".wav"),),
            )  # fmt: skip
            await self._take(arrival)
