"""Reading an email beside the event loop: child processes, each message within a budget.

Rules this module keeps:
1. `read_email` is the whole reading of one email: his mail is decided from its header
   block alone (its body is then read within the same caps only to assess how urgent it
   is, `proxy.alerts.threats`: the message sealed is the header block's reading); other
   mail is read closely within the caps of `proxy.normalize.limits`, and past them scanned
   linearly (`proxy.rules.scan`); a held one is assessed on the text read. Pure: bytes,
   rules and the time in; the message (without its bytes) and the decision (with its
   assessment) out. A message read by the scan alone is assessed on its header block.
2. A message of at most `INLINE_BYTES` is read on the event loop: the caps bound its cost
   to a few milliseconds. Anything larger is read by a child process
   (`python -m proxy.readers`), so no message, however crafted, stalls another session,
   the webhooks or IMAP: the event loop only moves its bytes.
3. Each child reads one message at a time, with a budget of CPU time: `BUDGET_BASE`
   seconds plus `BUDGET_PER_MIB` per MiB, enforced by the kernel (the child sets its own
   RLIMIT_CPU before each message: past it, SIGXCPU ends it). CPU time, not wall-clock
   time: a child starved by a busy machine is not a message too costly to read. The wall
   clock only catches a child that hangs: `WALL_FACTOR` times the budget, never more than
   `WALL_MOST` (well inside the sender's 10 minutes for the reply to DATA, RFC 5321
   4.5.3.2). A read cancelled half-way, as when the sender hangs up, kills the child: its
   pipe holds half a frame. A child over budget is killed, and the message is decided by
   the linear scan alone (its header block read closely, all of its bytes scanned) in a
   fresh child. If even that fails, the message is held as unreadable (passive: a contact
   can release it): never left undecided, never a 4xx for its content.
4. Children are given the config, compile the rules themselves, and are replaced (lazily,
   between messages) when the rules change. They hold no key; they write nothing but
   answers, and their stderr is discarded (a traceback is no place for a message). They
   get only the environment Python needs and dump no core (`proxy.processes`).
5. The parent unpickles only what its own child wrote: values normalize and decide made.
6. Children run at the lowest CPU priority (nice 19): reading is background work, and
   on a small machine the event loop, which answers every session, must not queue behind
   it. At nice 10 the probe of bench/hostile.py (a small message every 50 ms while 10 MB
   messages are read) had a p99 of 27 ms; at 19, 16 ms. Rule 3's CPU budget is what
   makes this safe: a starved child is slow, never over budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import math
import os
import pickle
import resource
import struct
import sys
from datetime import datetime
from typing import Any

from proxy.config.model import Config
from proxy.errors import RetryLater
from proxy.message import Action, Decision, InboundMessage, Kind
from proxy.normalize import normalize_email
from proxy.normalize.email import EmailReading
from proxy.processes import child_environment, no_core_dumps
from proxy.rules import Rulebook, assessed, compile_rules, decide_direct, decide_not_direct

INLINE_BYTES = 32 << 10
BUDGET_BASE = 2.0
BUDGET_PER_MIB = 1.0
WALL_FACTOR = 10.0
WALL_MOST = 300.0
PROCESSES = 2  # one slow message never queues the next behind it
_FRAME = struct.Struct("!Q")
_CHUNK = 1 << 20
_NICENESS = 19

UNREADABLE = Decision(
    action=Action.HOLD, kind=Kind.PASSIVE, rule_id="limits.unreadable",
    reason="the message could not be read within its budget",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Postmark:
    """What the channel knows of an email besides its bytes: its envelope and arrival."""

    sender: str
    recipients: tuple[str, ...]
    received_at: datetime
    default_region: str | None


def read_email(
    raw: bytes, postmark: Postmark, rules: Rulebook, *, scan_only: bool = False
) -> tuple[InboundMessage, Decision]:
    """Read and decide one email (rule 1); with `scan_only`, the linear scan decides."""
    reading = EmailReading(
        raw, envelope_sender=postmark.sender, recipients=postmark.recipients,
        received_at=postmark.received_at, default_region=postmark.default_region,
    )  # fmt: skip
    message = reading.headers()
    decision = decide_direct(message, rules)
    if decision is not None:  # his: sealed as read from the header block, assessed whole
        return message, assessed(decision, message if scan_only else reading.whole(), rules)
    message = dataclasses.replace(message, complete=False) if scan_only else reading.whole()
    return message, assessed(decide_not_direct(message, rules), message, rules)


def budget(size: int) -> float:
    """Seconds of CPU a child may spend reading a message of `size` bytes (rule 3)."""
    return BUDGET_BASE + BUDGET_PER_MIB * size / (1 << 20)


def wall_limit(cpu_budget: float) -> float:
    """Seconds a read may last by the clock before the child is taken to hang (rule 3)."""
    return min(WALL_MOST, WALL_FACTOR * cpu_budget)


class ReadersUnavailable(RetryLater):
    """No reading process can be started (a system fault, never a message's content)."""


class _OverBudget(Exception):
    """A child did not answer in time, or died."""


class _Child:
    """One reading process: started on first use, replaced when stale or broken."""

    def __init__(self, config: Config, generation: int) -> None:
        self.generation = generation
        self._config = config
        self._process: asyncio.subprocess.Process | None = None

    async def _start(self) -> asyncio.subprocess.Process:
        environment = child_environment()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy.readers", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                env=environment, limit=1 << 20,
            )  # fmt: skip
        except OSError as error:
            raise ReadersUnavailable(f"cannot start a reading process: {error.strerror}") from None
        assert process.stdin is not None
        _write(process.stdin, pickle.dumps(self._config, protocol=pickle.HIGHEST_PROTOCOL))
        self._process = process
        return process

    async def ensure_started(self) -> asyncio.subprocess.Process:
        process = self._process
        if process is None or process.returncode is not None:
            process = await self._start()
        return process

    async def read(self, raw: bytes, postmark: Postmark, *, scan_only: bool) -> Any:
        process = await self.ensure_started()
        assert process.stdin is not None
        assert process.stdout is not None
        cpu = budget(len(raw))
        request = pickle.dumps((postmark, scan_only, cpu), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            async with asyncio.timeout(wall_limit(cpu)):
                _write(process.stdin, request)
                process.stdin.write(_FRAME.pack(len(raw)))
                view = memoryview(raw)
                for start in range(0, len(raw), _CHUNK):  # a copy of one chunk at most
                    process.stdin.write(view[start : start + _CHUNK])
                    await process.stdin.drain()
                (length,) = _FRAME.unpack(await process.stdout.readexactly(_FRAME.size))
                answer = await process.stdout.readexactly(length)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError):
            await self.kill()
            raise _OverBudget from None
        except BaseException:  # cancelled mid-exchange (the sender left): the pipe is torn
            self._abandon()
            raise
        return pickle.loads(answer)  # noqa: S301 (rule 5: our own child's values)

    def _abandon(self) -> None:
        """Kill the child without waiting (asyncio reaps it); the next read starts anew."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    async def kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class Readers:
    """Reads emails inline or in child processes, by size; see the module rules."""

    def __init__(self, config: Config, *, processes: int = PROCESSES) -> None:
        self._config = config
        self._generation = 0
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        for _ in range(max(1, processes)):
            self._idle.put_nowait(_Child(config, 0))

    async def start(self) -> None:
        """Start the children now, so the first large message does not wait for one."""
        children = [self._idle.get_nowait() for _ in range(self._idle.qsize())]
        try:
            await asyncio.gather(*(child.ensure_started() for child in children))
        finally:
            for child in children:
                self._idle.put_nowait(child)

    def replace(self, config: Config) -> None:
        """New rules: children made for the old ones are replaced between messages."""
        self._config, self._generation = config, self._generation + 1

    async def read(
        self, raw: bytes, postmark: Postmark, rules: Rulebook
    ) -> tuple[InboundMessage, Decision]:
        """The message (with its bytes) and the decision on it; never raises for content."""
        if len(raw) <= INLINE_BYTES:
            return read_email(raw, postmark, rules)
        try:
            message, decision = await self._in_child(raw, postmark, scan_only=False)
        except _OverBudget:
            try:
                message, decision = await self._in_child(raw, postmark, scan_only=True)
            except _OverBudget:
                message, decision = _unread(raw, postmark), UNREADABLE
        return dataclasses.replace(message, raw=raw), decision

    async def _in_child(self, raw: bytes, postmark: Postmark, *, scan_only: bool) -> Any:
        child = await self._idle.get()
        try:
            if child.generation != self._generation:
                await child.close()
                child = _Child(self._config, self._generation)
            return await child.read(raw, postmark, scan_only=scan_only)
        finally:
            self._idle.put_nowait(child)

    async def close(self) -> None:
        """Stop every child (waits for those reading to finish)."""
        children = [await self._idle.get() for _ in range(self._idle.qsize())]
        await asyncio.gather(*(child.close() for child in children))


def _unread(raw: bytes, postmark: Postmark) -> InboundMessage:
    """The bare message of an email no child could read: its postmark, nothing else."""
    return normalize_email(
        b"", envelope_sender=postmark.sender, recipients=postmark.recipients,
        received_at=postmark.received_at, default_region=postmark.default_region,
    )  # fmt: skip


def _write(stream: asyncio.StreamWriter, data: bytes) -> None:
    stream.write(_FRAME.pack(len(data)))
    stream.write(data)


# -- the child ---------------------------------------------------------------------------


def _frame(source: Any) -> bytes | None:
    head = source.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (length,) = _FRAME.unpack(head)
    data: bytes = source.read(length)
    return data if len(data) == length else None


def main() -> int:
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)  # rule 6: the event loop wins the CPU over reading
    no_core_dumps()  # rule 4
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    first = _frame(source)
    if first is None:
        return 0
    config: Config = pickle.loads(first)  # noqa: S301 (only the parent writes here)
    rules = compile_rules(config)
    while (request := _frame(source)) is not None and (raw := _frame(source)) is not None:
        postmark, scan_only, cpu = pickle.loads(request)  # noqa: S301 (only the parent writes here)
        _limit_cpu(cpu)
        message, decision = read_email(raw, postmark, rules, scan_only=scan_only)
        slim = dataclasses.replace(message, raw=b"", text="", search_text="")
        answer = pickle.dumps((slim, decision), protocol=pickle.HIGHEST_PROTOCOL)
        sink.write(_FRAME.pack(len(answer)) + answer)
        sink.flush()
        del message, raw
        _give_back_memory()
    return 0


def _limit_cpu(seconds: float) -> None:
    """Let the kernel end this process once it has spent `seconds` more of CPU (rule 3).
    RLIMIT_CPU counts whole seconds of the process's life: the limit is what it has used
    so far plus the budget, rounded up."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _give_back_memory() -> None:
    """Hand the memory of the message just read back to the system: glibc keeps freed
    heap for reuse, so each child would otherwise hold its largest message's worth
    (measured: +26 MiB after a 10 MB letter; none after this). Elsewhere, nothing."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):  # not glibc
            libc.malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
