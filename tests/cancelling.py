"""Cancelling a coroutine at a chosen point: after a number of event-loop steps, once or again and
again, as a task group, a timeout or a person pressing a key would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

T = TypeVar("T")

# Loop steps to try before giving up on a write transaction ever finishing; it takes a few hundred.
MAX_STEPS = 5_000


async def cancel_after(steps: int, coroutine: Awaitable[T], *, repeatedly: bool) -> T | None:
    """Run `coroutine` for `steps` loop steps, then cancel it (on every later step too, if `repeatedly`).

    Returns its result when it finished before the first cancel; otherwise checks that the caller
    got the cancellation, not another error, and returns None.
    """
    task = asyncio.ensure_future(coroutine)
    for _ in range(steps):
        await asyncio.sleep(0)
    if task.done():
        return task.result()
    task.cancel()
    while repeatedly and not task.done():
        await asyncio.sleep(0)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return None
