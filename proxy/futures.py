"""Handing a worker thread's outcome back to asyncio futures (on the loop, through
`call_soon_threadsafe`). A future already done (its waiter gave up) is left as it is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def resolve(futures: Sequence[asyncio.Future[T]], results: Sequence[T]) -> None:
    """Each future gets its own result (same order, same length)."""
    for future, result in zip(futures, results, strict=True):
        if not future.done():
            future.set_result(result)


def fail(futures: Iterable[asyncio.Future[Any]], error: BaseException) -> None:
    """Every future fails with `error`."""
    for future in futures:
        if not future.done():
            future.set_exception(error)


def settle(futures: Iterable[asyncio.Future[None]], error: BaseException | None) -> None:
    """Every future is done: with `error` if there is one."""
    if error is not None:
        fail(futures, error)
        return
    for future in futures:
        if not future.done():
            future.set_result(None)
