"""The measuring phases of `natslab bench`, in the order they run (see the package's docstring)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from dashboard.commands.bench.figures import AppliedRow, numbered, parse_iso, spread, traffic
from dashboard.lab.history import read_history
from dashboard.lab.natsserver import SYNC_MODES, EmbeddedServer, die_with_parent
from dashboard.lab.probes import HOLD_MS, drained, holder_of, wait_listeners_ready
from dashboard.lab.waits import LabError, close_quietly, connect_with_retry, wait_until
from listeners.groups import GUARDED_GROUP, consumer_config
from publisher.events import AccountEvent
from publisher.jetstream import ensure_stream, stream_config

if TYPE_CHECKING:
    from dashboard.commands.bench.run import Bench

RAW_STREAM = "NATSLAB_BENCH_RAW"
RAW_SUBJECT_PREFIX = "natslab.bench"
RAW_CONSUMER = "bench-raw"
# Like the publisher's relay: this many publishes in flight, then wait for their PubAcks.
PUBLISH_WINDOW = 500
# Publishes made one at a time (each waits for its PubAck) per sync mode: what one event costs.
SYNC_ONE_AT_A_TIME = 300


async def raw_transport(bench: Bench) -> dict[str, Any]:
    config = bench.config
    assert bench.lab.nc is not None
    js = bench.lab.nc.jetstream()
    await js.add_stream(
        dataclasses.replace(stream_config(), name=RAW_STREAM, subjects=[f"{RAW_SUBJECT_PREFIX}.>"])
    )
    await js.add_consumer(
        RAW_STREAM,
        dataclasses.replace(
            consumer_config(GUARDED_GROUP, config.ack_wait_s), name=RAW_CONSUMER, durable_name=RAW_CONSUMER
        ),
    )
    events = numbered(traffic(config.users, config.events, seed=1))
    consumers = [await _start_raw_consumer(bench) for _ in range(config.listeners)]
    try:
        started = time.time()
        acks = 0
        for offset in range(0, len(events), PUBLISH_WINDOW):
            futures = [
                await js.publish_async(
                    f"{RAW_SUBJECT_PREFIX}.{event.subject}",
                    event.to_json(),
                    headers={"Nats-Msg-Id": event.id},
                    wait_stall=5.0,
                )
                for event in events[offset : offset + PUBLISH_WINDOW]
            ]
            acks += len(await asyncio.gather(*futures))
        published = time.time()

        async def consumed() -> bool:
            info = await js.consumer_info(RAW_STREAM, RAW_CONSUMER)
            return info.num_pending == 0 and info.num_ack_pending == 0 and info.ack_floor.stream_seq >= acks

        await wait_until(consumed, 120, "the raw consumers to ack every event", interval=0.05)
        reports = [await _stop_raw_consumer(process) for process in consumers]
    finally:
        for process in consumers:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await js.delete_stream(RAW_STREAM)
    finished = max(report["lastAck"] for report in reports if report.get("lastAck"))
    rate = len(events) / (finished - started)
    bench.progress(f"    {rate:,.0f} events/s end to end; publish alone {len(events) / (published - started):,.0f}/s")
    return {
        "events": len(events),
        "consumers": len(consumers),
        "eventsPerSecond": round(rate),
        "publishPerSecond": round(len(events) / (published - started)),
        "seconds": round(finished - started, 3),
        # Deliveries acked per consumer; a delivery past the ack wait comes again (counted in both).
        "perConsumer": [report.get("count", 0) for report in reports],
        "redelivered": sum(report.get("redelivered", 0) for report in reports),
    }

async def durability(bench: Bench) -> dict[str, Any]:
    """Publishing to the event stream with each sync mode, on a fresh server of its own: the cost of
    an fsync before every PubAck, in a burst (PUBLISH_WINDOW in flight) and one event at a time."""
    config = bench.config
    events = numbered(traffic(config.users, config.events, seed=4))
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


async def _start_raw_consumer(bench: Bench) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dashboard.commands.bench", "raw-consumer",
        bench.lab.url, RAW_STREAM, RAW_CONSUMER, str(bench.config.batch),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        preexec_fn=lambda: die_with_parent(signal.SIGKILL),
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    if line.strip() != b"ready":
        raise LabError(f"the raw consumer did not start: {line!r}")
    return process

async def _stop_raw_consumer(process: asyncio.subprocess.Process) -> dict[str, Any]:
    process.send_signal(signal.SIGTERM)
    assert process.stdout is not None
    out = await asyncio.wait_for(process.stdout.read(), timeout=30)
    await asyncio.wait_for(process.wait(), timeout=30)
    return json.loads(out.decode().strip().splitlines()[-1])

async def guarded_pipeline(bench: Bench) -> dict[str, Any]:
    config = bench.config
    await bench.ensure_listeners("nak")
    requests = traffic(config.users, config.events, seed=2)
    mark = await bench.reader.mark()
    before = bench.lab.counts.totals(mode="guarded")
    assert bench.lab.supervisor is not None
    pids = {f"listener-{e.name}": e.pid for e in bench.lab.supervisor.members("guarded") if e.pid is not None}
    profilers = await bench.profile({"bench": os.getpid(), **pids})
    started = time.time()
    await bench.offer(requests)
    recorded = time.time()
    await bench.reader.wait_count(mark, len(requests), 120 + config.events / 500, "the pipeline to apply every event")
    await bench.stop_profile(profilers)
    # Drained, the last status reports are in too.
    await wait_until(lambda: drained(bench.lab, ("guarded",)), 30, "the guarded group to drain", interval=0.1)
    rows = await bench.reader.rows_since(mark)
    # The end is the last commit: applied_at is stamped as a batch's transaction begins, the
    # listeners' reports after its commit and acks (when a report is not crowded out).
    settled = bench.deliveries.settled
    finished = max([row.applied_at for row in rows] + [settled[row.event_id] for row in rows if row.event_id in settled])
    rate = len(requests) / (finished - started)
    bench.progress(f"    {rate:,.0f} events/s end to end; outbox writes {len(requests) / (recorded - started):,.0f}/s")
    return {
        "events": len(requests),
        "listeners": config.listeners,
        "eventsPerSecond": round(rate),
        "outboxPerSecond": round(len(requests) / (recorded - started)),
        "seconds": round(finished - started, 3),
        "deferrals": bench.lab.counts.total("deferred", mode="guarded") - before.deferred,
        "redeliveries": bench.lab.counts.total("redelivered", mode="guarded") - before.redelivered,
        "perListener": _per_listener(rows),
    }

async def latency(bench: Bench) -> dict[str, Any]:
    config = bench.config
    await bench.ensure_listeners("nak")
    count = max(1, round(config.rate * config.latency_s))
    requests = traffic(config.users, count, seed=3)
    mark = await bench.reader.mark()
    assert bench.lab.nc is not None
    first_seq = (await bench.lab.stream_info()).state.last_seq + 1
    started = time.monotonic()
    asked = await bench.offer_at_rate(requests, config.rate)
    offered = count / (time.monotonic() - started)
    await bench.reader.wait_count(mark, count, 120, "the latency events to be applied")
    await wait_until(lambda: drained(bench.lab, ("guarded",)), 30, "the guarded group to drain", interval=0.1)
    rows = await bench.reader.rows_since(mark)
    stored = {
        stored.event.id: parse_iso(stored.stored_at)
        for stored in await read_history(bench.lab.nc, start_seq=first_seq)
        if stored.event is not None
    }
    # Where the time goes: request -> createdAt (waiting for the outbox transaction) -> stored in the
    # stream (commit, relay, PubAck) -> the listener's batch begins -> committed and acked.
    stages: dict[str, list[float]] = {"outbox": [], "relay": [], "delivery": [], "apply": []}
    total: list[float] = []
    for row in rows:
        at, created = asked[row.event_id]
        settled = bench.deliveries.settled.get(row.event_id, row.applied_at)
        total.append(settled - at)
        if row.event_id in stored:
            stages["outbox"].append(created - at)
            stages["relay"].append(stored[row.event_id] - created)
            stages["delivery"].append(row.applied_at - stored[row.event_id])
            stages["apply"].append(settled - row.applied_at)
    coverage = sum(1 for row in rows if row.event_id in bench.deliveries.settled) / max(1, len(rows))
    figures = spread(total)
    bench.progress(f"    p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms at {offered:,.0f} events/s")
    return {
        "offeredPerSecond": round(offered),
        "events": count,
        "publishToApplied": figures,
        "stages": {name: spread(values) for name, values in stages.items()},
        # The share of events whose commit-and-ack time the listeners reported; the rest use applied_at.
        "statusCoverage": round(coverage, 4),
    }

async def out_of_order(bench: Bench, defer: str) -> dict[str, Any]:
    config = bench.config
    await bench.ensure_listeners(defer)
    assert bench.lab.nc is not None
    js = bench.lab.nc.jetstream()
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


def _per_listener(rows: list[AppliedRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.listener] = counts.get(row.listener, 0) + 1
    return dict(sorted(counts.items()))
