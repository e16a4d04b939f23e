"""The sealing child process: what it seals opens with the contact's key, and a child that
dies takes nothing with it (its jobs fail as RetryLater, the next seal starts another)."""

from __future__ import annotations

import asyncio
import os
import signal

import pyrage
import pytest

from proxy.archive import ArchiveUnavailable
from proxy.archive.seal import parse_sealed
from proxy.archive.sealer import INLINE_BYTES, Sealer
from proxy.errors import RetryLater

IDENTITY = pyrage.x25519.Identity.generate()
OTHER = pyrage.x25519.Identity.generate()
RECIPIENTS = [str(IDENTITY.to_public()), str(OTHER.to_public())]


def test_what_the_child_seals_opens_with_each_contacts_key() -> None:
    async def main() -> None:
        sealer = Sealer(RECIPIENTS, processes=3, inline_every=None)
        small, large = b"it's me", os.urandom(3 << 20)  # large: sealed as a stream
        try:
            sealed = await asyncio.gather(
                sealer.seal({"kind": "item", "n": 1}, small),
                sealer.seal({"kind": "item", "n": 2}, large),
                *(sealer.seal({"kind": "item", "n": n}, b"x" * n) for n in range(3, 40)),
            )
            assert len(sealer.pids) == 3  # the burst was shared out
        finally:
            await sealer.close()
        for identity in (IDENTITY, OTHER):
            metadata, payload = parse_sealed(pyrage.decrypt(sealed[0], [identity]))
            assert (metadata["n"], payload) == (1, small)
        metadata, payload = parse_sealed(pyrage.decrypt(sealed[1], [IDENTITY]))
        assert (metadata["n"], payload) == (2, large)
        for n, item in enumerate(sealed[2:], 3):
            metadata, payload = parse_sealed(pyrage.decrypt(item, [IDENTITY]))
            assert (metadata["n"], payload) == (n, b"x" * n)

    asyncio.run(main())


def test_a_child_that_dies_fails_its_jobs_as_retry_later_and_is_replaced() -> None:
    async def main() -> None:
        sealer = Sealer(RECIPIENTS, processes=1, inline_every=None)
        try:
            await sealer.seal({"kind": "item"}, b"first")
            [first] = sealer.pids
            os.kill(first, signal.SIGSTOP)  # the job below is sent, never answered
            pending = asyncio.ensure_future(sealer.seal({"kind": "item"}, b"in flight"))
            await asyncio.sleep(0.2)
            assert not pending.done()
            os.kill(first, signal.SIGKILL)
            with pytest.raises(ArchiveUnavailable) as caught:
                await pending
            assert isinstance(caught.value, RetryLater)
            sealed = await sealer.seal({"kind": "item"}, b"after")
            assert len(sealer.pids) == 1
            assert first not in sealer.pids
            assert parse_sealed(pyrage.decrypt(sealed, [IDENTITY]))[1] == b"after"
        finally:
            await sealer.close()

    asyncio.run(main())


def test_when_quiet_a_small_item_is_sealed_here_and_under_load_by_the_child() -> None:
    """One seal per INLINE_EVERY runs on the loop, none while the child has work, none
    for a large item; what either seals opens the same."""

    async def main() -> None:
        sealer = Sealer(RECIPIENTS, inline_every=60.0)
        try:
            quiet = await sealer.seal({"kind": "item", "n": 1}, b"quiet")
            assert sealer.pids == []  # no child was needed
            busy = await asyncio.gather(
                *(sealer.seal({"kind": "item", "n": n}, b"busy") for n in range(2, 6))
            )
            assert len(sealer.pids) == 1
        finally:
            await sealer.close()
        for n, item in enumerate([quiet, *busy], 1):
            metadata, payload = parse_sealed(pyrage.decrypt(item, [IDENTITY]))
            assert (metadata["n"], payload) == (n, b"quiet" if n == 1 else b"busy")
        sealer = Sealer(RECIPIENTS, inline_every=0.0)  # every seal may run here, but
        large = b"x" * (INLINE_BYTES + 1)  # one too large for the loop goes to the child
        try:
            sealed = await sealer.seal({"kind": "item"}, large)
            assert len(sealer.pids) == 1
        finally:
            await sealer.close()
        assert parse_sealed(pyrage.decrypt(sealed, [IDENTITY]))[1] == large

    asyncio.run(main())


@pytest.mark.parametrize("inline_every", [None, 60.0])
def test_a_seal_that_fails_names_only_the_error(inline_every: float | None) -> None:
    """In the child or here, the error's name only: its text could quote the item."""

    async def main() -> None:
        sealer = Sealer(RECIPIENTS, inline_every=inline_every)
        try:
            with pytest.raises(ArchiveUnavailable) as caught:
                await sealer.seal({"kind": "item", "secret": {"CANARY"}}, b"CANARY")  # no JSON
            assert str(caught.value) == "sealing failed (TypeError)"
            assert "CANARY" not in str(caught.value)
            assert await sealer.seal({"kind": "item"}, b"next")  # the child goes on
        finally:
            await sealer.close()
        assert sealer.pids == []
        with pytest.raises(ArchiveUnavailable):
            await sealer.seal({"kind": "item"}, b"after close")

    asyncio.run(main())


def test_a_bad_contact_key_fails_before_any_child_starts() -> None:
    with pytest.raises(pyrage.RecipientError):
        Sealer(["age1notakey"])
