"""The raw transport's consumer process: fetch and ack with the listeners' loop, doing nothing else."""

from __future__ import annotations

import asyncio
import json
import signal
import time

from dashboard.lab.waits import connect_with_retry
from listeners.fetching import fetch_promptly
from publisher.events import utc_now_iso


async def raw_consume(url: str, stream: str, durable: str, batch: int) -> None:
    """Fetch and ack with the listeners' loop, doing nothing else; on SIGTERM print what was acked."""
    nc = await connect_with_retry(url, "natslab-bench-raw")
    sub = await nc.jetstream().pull_subscribe_bind(durable=durable, stream=stream)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    count, redelivered, first, last = 0, 0, None, None
    print("ready", flush=True)
    fetching: asyncio.Task | None = None
    stopping = asyncio.ensure_future(stop.wait())
    while not stop.is_set():
        fetching = asyncio.ensure_future(fetch_promptly(sub, batch, timeout=1.0))
        await asyncio.wait([fetching, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not fetching.done():
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)
            break
        try:
            msgs = fetching.result()
        except asyncio.TimeoutError:
            continue
        for msg in msgs:
            await msg.ack()
        count += len(msgs)
        redelivered += sum(1 for msg in msgs if msg.metadata.num_delivered > 1)
        last = time.time()
        first = first or last
    await nc.flush(timeout=5)
    await nc.close()
    report = {"count": count, "redelivered": redelivered, "firstAck": first, "lastAck": last, "at": utc_now_iso()}
    print(json.dumps(report), flush=True)
