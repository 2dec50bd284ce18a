"""Fetching from a pull consumer so that no event waits for a batch to fill.

nats-py's `fetch(batch, timeout)` first asks for what is there without waiting, and returns that at
once. Only when nothing is there does it leave a pull request waiting on the server, and then it
collects until the batch is full or the timeout is over: at a few hundred events a second a batch of
100 holds its first event 200 ms, and a trickle holds it for the whole timeout. So a listener waits
for one event, then takes, without waiting, whatever else is there, up to the batch.
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

# How long the second request may take. The server answers a request that does not wait within a
# fraction of a millisecond; what comes after this goes to the next fetch, not lost.
TOP_UP_S = 0.002


async def fetch_promptly(sub: JetStreamContext.PullSubscription, batch: int, timeout: float) -> list[Msg]:
    """Up to `batch` messages, returned as soon as there is one; TimeoutError after `timeout` with none."""
    first = await sub.fetch(1, timeout=timeout)
    if batch == 1:
        return first
    try:
        rest = await sub.fetch(batch - 1, timeout=TOP_UP_S)
    except asyncio.TimeoutError:
        rest = []
    return first + rest
