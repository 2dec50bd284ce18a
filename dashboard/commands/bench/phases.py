"""The measuring phases of `natslab bench`, in the order they run (see the package's docstring)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from dashboard.commands.bench.figures import numbered, parse_iso, spread, traffic
from dashboard.commands.bench.throughput import PUBLISH_WINDOW
from dashboard.lab.history import read_history
from dashboard.lab.natsserver import SYNC_MODES, EmbeddedServer
from dashboard.lab.probes import HOLD_MS, drained, holder_of, wait_listeners_ready
from dashboard.lab.waits import close_quietly, connect_with_retry, wait_until
from publisher.events import AccountEvent
from publisher.jetstream import ensure_stream

if TYPE_CHECKING:
    from dashboard.commands.bench.run import Bench

# Publishes made one at a time (each waits for its PubAck) per sync mode: what one event costs.
SYNC_ONE_AT_A_TIME = 300


async def durability(bench: Bench) -> dict[str, Any]:
    """Publishing to the event stream with each sync mode, on a fresh server of its own: the cost of
    an fsync before every PubAck, in a burst (PUBLISH_WINDOW in flight) and one event at a time."""
    config = bench.config
    events = list(numbered(traffic(config.users, config.events, seed=4)))
    one_at_a_time = [AccountEvent.new("deposit", "sync-probe", 100, number) for number in range(1, SYNC_ONE_AT_A_TIME + 1)]
    modes: dict[str, Any] = {}
    for mode in SYNC_MODES:
        folder = bench.data_dir / f"sync-{mode}"
        server = EmbeddedServer(folder / "nats", folder / "nats-server.log", sync=mode)
        await server.start()
        try:
            nc = await connect_with_retry(server.url, f"natslab-bench-sync-{mode}")
            try:
                await ensure_stream(nc)
                js = nc.jetstream()
                started = time.monotonic()
                for offset in range(0, len(events), PUBLISH_WINDOW):
                    futures = [
                        await js.publish_async(event.subject, event.to_json(), headers={"Nats-Msg-Id": event.id}, wait_stall=5.0)
                        for event in events[offset : offset + PUBLISH_WINDOW]
                    ]
                    await asyncio.gather(*futures)
                rate = len(events) / (time.monotonic() - started)
                waits = []
                for event in one_at_a_time:
                    sent = time.monotonic()
                    await js.publish(event.subject, event.to_json(), headers={"Nats-Msg-Id": event.id})
                    waits.append(time.monotonic() - sent)
            finally:
                await close_quietly(nc)
        finally:
            await server.stop()
        modes[mode] = {"publishPerSecond": round(rate), "pubAck": spread(waits)}
        figures = modes[mode]["pubAck"]
        bench.progress(f"    sync {mode}: {rate:,.0f} events/s; one at a time p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
    return {"events": len(events), "oneAtATime": len(one_at_a_time), "modes": modes}


async def latency(bench: Bench, rate: int) -> dict[str, Any]:
    """Publish -> applied at a fixed offered `rate`, open loop, for `--latency-seconds`.

    Each request's latency runs from the time it was due, not from when its task got to run: a
    stalled offer loop must show as latency, not thin out the requests it measures. It ends when the
    listener reported the event committed and acknowledged. An event whose report was crowded out
    has no such time: it is left out and counted (`coverage`), never given its batch's start.
    """
    config = bench.config
    await bench.ensure_listeners("nak")
    count = max(1, round(rate * config.latency_s))
    requests = traffic(config.users, count, seed=3)
    mark = await bench.reader.mark()
    assert bench.lab.nc is not None
    first_seq = (await bench.lab.stream_info()).state.last_seq + 1
    started = time.monotonic()
    asked = await bench.offer_at_rate(requests, rate)
    offered = count / (time.monotonic() - started)
    await bench.reader.wait_count(mark, count, 120, "the latency events to be applied")
    await wait_until(lambda: drained(bench.lab, ("guarded",)), 30, "the guarded group to drain", interval=0.1)
    rows = await bench.reader.rows_since(mark)
    stored = {
        stored.event.id: parse_iso(stored.stored_at)
        for stored in await read_history(bench.lab.nc, start_seq=first_seq)
        if stored.event is not None
    }
    # Where the time goes: due -> createdAt (waiting for the outbox transaction) -> stored in the
    # stream (commit, relay, PubAck) -> the listener's batch begins -> committed and acked.
    stages: dict[str, list[float]] = {"outbox": [], "relay": [], "delivery": [], "apply": []}
    total: list[float] = []
    settled_at = bench.deliveries.settled
    for row in rows:
        settled = settled_at.get(row.event_id)
        if settled is None:
            continue
        due, created = asked[row.event_id]
        total.append(settled - due)
        if row.event_id in stored:
            stages["outbox"].append(created - due)
            stages["relay"].append(stored[row.event_id] - created)
            stages["delivery"].append(row.applied_at - stored[row.event_id])
            stages["apply"].append(settled - row.applied_at)
    figures = spread(total)
    missing = len(rows) - len(total)
    bench.progress(
        f"    {offered:,.0f}/s offered: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms"
        f" ({len(total):,} of {len(rows):,} events reported)"
    )
    return {
        "rate": rate,
        "offeredPerSecond": round(offered),
        "events": count,
        "publishToApplied": figures,
        "stages": {name: spread(values) for name, values in stages.items()},
        # The share of events whose commit-and-ack time a listener reported; only those are measured.
        "statusCoverage": round(len(total) / max(1, len(rows)), 4),
        "unreported": missing,
    }


async def latencies(bench: Bench) -> dict[str, Any]:
    """`--repeat` rounds of a latency run at each of `--rates`. One run's p99 is decided by the worst
    hundredth of 10 s, which one slow moment of the disk can fill, so the verdict takes the median
    run's p99, like the throughput's."""
    runs = []
    for index in range(bench.config.repeat):
        for rate in bench.config.rates:
            run = await latency(bench, rate)
            runs.append(run | {"round": index + 1})
    return {"runs": runs}


async def out_of_order(bench: Bench, defer: str) -> dict[str, Any]:
    config = bench.config
    await bench.ensure_listeners(defer)
    assert bench.lab.nc is not None
    js = bench.jetstream()
    tag = "nak" if defer == "nak" else "ackwait"
    users = [f"ooo-{tag}-{index + 1}" for index in range(config.pairs)]
    first = {user: AccountEvent.new("deposit", user, 1000, 1) for user in users}
    early = {user: AccountEvent.new("deposit", user, 500, 2) for user in users}
    mark = await bench.reader.mark()
    published: dict[str, float] = {}

    async def publish(events: list[AccountEvent]) -> None:
        futures = []
        for event in events:
            published[event.id] = time.time()
            futures.append(await js.publish_async(event.subject, event.to_json(), headers={"Nats-Msg-Id": event.id}))
        await asyncio.gather(*futures)

    await publish(list(early.values()))
    early_ids = {event.id for event in early.values()}
    try:
        await wait_until(lambda: early_ids <= bench.deliveries.deferred, 10, "every early event to be deferred")
        unseen = 0
    except TimeoutError:
        unseen = len(early_ids - bench.deliveries.deferred)
    await publish(list(first.values()))
    await bench.reader.wait_count(
        mark, 2 * len(users), config.ack_wait_s * 4 + 60, f"the out-of-order events ({defer}) to be applied"
    )
    rows = {row.event_id: row for row in await bench.reader.rows_since(mark)}

    def applied(event_id: str) -> float:
        return bench.deliveries.settled.get(event_id, rows[event_id].applied_at)

    waits = [applied(early[user].id) - published[early[user].id] for user in users]
    after = [applied(early[user].id) - applied(first[user].id) for user in users]
    figures = spread(waits)
    bench.progress(f"    early event applied after p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
    return {
        "defer": defer,
        "pairs": len(users),
        "earlyPublishToApplied": figures,
        "afterPredecessorApplied": spread(after),
        "maxDeliveriesOfEarly": max(rows[early[user].id].delivery_count for user in users),
        "notSeenDeferred": unseen,
    }

async def recovery(bench: Bench) -> dict[str, Any]:
    await bench.ensure_listeners("nak")
    supervisor = bench.lab.supervisor
    assert supervisor is not None
    names = [entry.name for entry in supervisor.members("guarded") if entry.alive]
    for name in names:
        await bench.lab.control("slow", name, slow_ms=HOLD_MS)
    users = [f"rec-{index + 1}" for index in range(len(names))]
    events = [await bench.publisher.record("deposit", user, 100) for user in users]
    held = events[0]
    await wait_until(
        lambda: holder_of(bench.lab, "guarded", held.user_id, held.number) is not None,
        30,
        "a listener to hold the recovery event",
    )
    holder = holder_of(bench.lab, "guarded", held.user_id, held.number)
    assert holder is not None
    status = bench.lab.statuses.get(holder)
    since = status.in_flight_since if status is not None else None
    mark = await bench.reader.mark()
    killed = time.time()
    await bench.lab.control("kill", holder)
    for name in names:
        if name != holder:
            await bench.lab.control("normal", name)
    if len(names) == 1:  # nobody else to take over: the restarted listener gets it back
        await bench.lab.control("restart", holder)

    async def applied() -> bool:
        return any(row.event_id == held.id for row in await bench.reader.rows_since(mark))

    await wait_until(applied, bench.config.ack_wait_s * 4 + 30, "the held event to be applied elsewhere")
    row = next(row for row in await bench.reader.rows_since(mark) if row.event_id == held.id)
    recovered = bench.deliveries.settled.get(held.id, row.applied_at) - killed
    if not supervisor.get(holder).alive:
        await bench.lab.control("restart", holder)
    await wait_listeners_ready(bench.lab, timeout=30)
    bench.progress(f"    applied by {row.listener} {recovered:.2f} s after the kill (ack wait {bench.config.ack_wait_s:g} s)")
    return {
        "killed": holder,
        "appliedBy": row.listener,
        "killToApplied_s": round(recovered, 3),
        "heldFor_s": round(killed - since, 3) if isinstance(since, (int, float)) else None,
        "ackWait_s": bench.config.ack_wait_s,
        "deliveryCount": row.delivery_count,
    }

