"""`fetch_promptly` against a real server: an event is handed over as soon as it is there, not when a
batch has filled, and nothing is lost or handed over twice between the two requests it makes."""

from __future__ import annotations

import asyncio

from dashboard.lab.waits import wait_until
from listeners.fetching import fetch_promptly
from listeners.groups import GUARDED_GROUP, consumer_config
from publisher.events import STREAM_NAME
from publisher.jetstream import ensure_stream


async def bound_consumer(nc):
    await ensure_stream(nc)
    js = nc.jetstream()
    await js.add_consumer(STREAM_NAME, consumer_config(GUARDED_GROUP, 30.0))
    return js, await js.pull_subscribe_bind(durable=GUARDED_GROUP.name, stream=STREAM_NAME)


async def test_one_event_comes_back_at_once_from_a_fetch_that_asked_for_a_hundred(nc) -> None:
    js, sub = await bound_consumer(nc)
    # Nothing there yet: the fetch waits on the server; nats-py's own fetch(100) would then hold the
    # first event until 100 came or the 60 s were over.
    fetching = asyncio.ensure_future(fetch_promptly(sub, 100, timeout=60))

    async def waiting() -> bool:
        return (await js.consumer_info(STREAM_NAME, GUARDED_GROUP.name)).num_waiting > 0

    await wait_until(waiting, 10, "the fetch to wait on the server")
    await js.publish("account.deposit.jim", b"{}")
    msgs = await asyncio.wait_for(fetching, timeout=10)
    assert [msg.subject for msg in msgs] == ["account.deposit.jim"]


async def test_what_is_there_comes_in_batches_each_event_once(nc) -> None:
    js, sub = await bound_consumer(nc)
    for n in range(250):
        await js.publish(f"account.deposit.user{n}", b"{}")
    seen: list[int] = []
    sizes = []
    while len(seen) < 250:
        msgs = await asyncio.wait_for(fetch_promptly(sub, 100, timeout=5), timeout=10)
        assert len(msgs) <= 100
        sizes.append(len(msgs))
        for msg in msgs:
            seen.append(msg.metadata.sequence.stream)
            await msg.ack()
    assert sorted(seen) == list(range(1, 251))
    # More than one event per fetch: the second request took what was there.
    assert len(sizes) < 250
