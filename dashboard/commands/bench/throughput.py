"""Throughput: the raw transport against the guarded pipeline, in interleaved rounds, and how the
pipeline scales with listeners and users.

One phase of either kind offers events for a fixed time (`--phase-seconds`) as fast as they are
taken, with at most `MAX_BACKLOG` offered and not yet consumed, then waits for the rest. Its rate is
the events it offered over the time from its first offer to its last acknowledgement. A short phase
is decided by whatever else the machine does in those seconds, so the ratio comes from several
rounds, raw and pipeline one after the other (the order alternating from round to round), and the
verdict uses the median round.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from dashboard.commands.bench.figures import endless_requests, numbered
from dashboard.lab.natsserver import die_with_parent
from dashboard.lab.probes import drained
from dashboard.lab.waits import LabError, wait_until
from listeners.groups import GUARDED_GROUP, consumer_config
from publisher.jetstream import stream_config

if TYPE_CHECKING:
    from dashboard.commands.bench.run import Bench

RAW_STREAM = "NATSLAB_BENCH_RAW"
RAW_SUBJECT_PREFIX = "natslab.bench"
RAW_CONSUMER = "bench-raw"
# Like the publisher's relay: this many publishes in flight, then wait for their PubAcks.
PUBLISH_WINDOW = 500
# Callers of the transactions service during a pipeline phase: each makes its next request as soon as
# its last is committed, so there are always requests waiting for the outbox's next group commit.
CALLERS = 2_000
# How often a pipeline phase looks at how far the listeners are behind what was offered (from the
# counters of their status messages: no database is opened for it).
BACKLOG_POLL_S = 0.05
# Offered and not yet consumed: enough to keep every stage busy, few enough that the phase ends
# soon after its offering does (a backlog of a minute would measure the drain, not the pace).
MAX_BACKLOG = 5_000


async def raw_phase(bench: Bench, seconds: float, consumers: int, users: int, seed: int) -> dict[str, Any]:
    """Publish straight to a stream of its own for `seconds` (PUBLISH_WINDOW in flight, PubAcks
    awaited) while `consumers` processes fetch and ack with the listeners' loop; its own stream, so
    each phase starts from nothing."""
    js = bench.jetstream()
    await js.add_stream(dataclasses.replace(stream_config(), name=RAW_STREAM, subjects=[f"{RAW_SUBJECT_PREFIX}.>"]))
    await js.add_consumer(
        RAW_STREAM,
        dataclasses.replace(
            consumer_config(GUARDED_GROUP, bench.config.ack_wait_s), name=RAW_CONSUMER, durable_name=RAW_CONSUMER
        ),
    )
    events = numbered(endless_requests(users, seed), f"raw{seed}-")
    processes = [await _start_raw_consumer(bench) for _ in range(consumers)]

    async def acked() -> int:
        return (await js.consumer_info(RAW_STREAM, RAW_CONSUMER)).ack_floor.stream_seq

    try:
        published = 0
        started = time.time()
        while time.time() - started < seconds:
            futures = []
            for _ in range(PUBLISH_WINDOW):
                event = next(events)
                subject = f"{RAW_SUBJECT_PREFIX}.{event.subject}"
                futures.append(
                    await js.publish_async(subject, event.to_json(), headers={"Nats-Msg-Id": event.id}, wait_stall=5.0)
                )
            published += len(await asyncio.gather(*futures))
            if published - await acked() > MAX_BACKLOG:
                floor = published - MAX_BACKLOG // 2

                async def caught_up() -> bool:
                    return await acked() >= floor

                await wait_until(caught_up, 60, "the raw consumers to catch up", 0.01)
        offered_for = time.time() - started

        async def consumed() -> bool:
            info = await js.consumer_info(RAW_STREAM, RAW_CONSUMER)
            return info.num_pending == 0 and info.num_ack_pending == 0 and info.ack_floor.stream_seq >= published

        await wait_until(consumed, 120, "the raw consumers to ack every event", interval=0.01)
        reports = [await _stop_raw_consumer(process) for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await js.delete_stream(RAW_STREAM)
    finished = max(report["lastAck"] for report in reports if report.get("lastAck"))
    return {
        "events": published,
        "consumers": consumers,
        "eventsPerSecond": round(published / (finished - started)),
        "offeredFor_s": round(offered_for, 3),
        "seconds": round(finished - started, 3),
        # Deliveries acked per consumer; a delivery past the ack wait comes again (counted in both).
        "perConsumer": [report.get("count", 0) for report in reports],
        "redelivered": sum(report.get("redelivered", 0) for report in reports),
    }


async def pipeline_phase(bench: Bench, seconds: float, listeners: int, users: int, seed: int) -> dict[str, Any]:
    """Record through the transactions service for `seconds` (CALLERS callers, each waiting for its
    last request's commit; none while MAX_BACKLOG are not yet applied): its outbox, the relay,
    JetStream, `listeners` guarded listeners."""
    await bench.ensure_listeners("nak", listeners)
    requests = endless_requests(users, seed)
    mark = await bench.reader.mark()
    before = bench.lab.counts.totals(mode="guarded")
    recorded = 0
    flowing = asyncio.Event()
    flowing.set()
    started = time.time()
    deadline = started + seconds

    async def caller() -> None:
        nonlocal recorded
        while time.time() < deadline:
            await flowing.wait()
            await bench.publisher.submit(*next(requests))
            recorded += 1

    def settled_so_far() -> int:
        now = bench.lab.counts.totals(mode="guarded")
        return now.applied + now.rejected - before.applied - before.rejected

    async def bound_backlog() -> None:
        while True:
            behind = recorded - settled_so_far()
            if behind > MAX_BACKLOG:
                flowing.clear()
            elif behind < MAX_BACKLOG // 2:
                flowing.set()
            await asyncio.sleep(BACKLOG_POLL_S)

    bounding = asyncio.create_task(bound_backlog(), name="backlog")
    try:
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
    finally:
        bounding.cancel()
        await asyncio.gather(bounding, return_exceptions=True)
    offered_for = time.time() - started
    await bench.reader.wait_count(mark, recorded, 120 + recorded / 500, "the pipeline to apply every event")
    # Drained, the last status reports are in too.
    await wait_until(lambda: drained(bench.lab, ("guarded",)), 30, "the guarded group to drain", interval=0.05)
    rows = await bench.reader.rows_since(mark)
    # The end is the last acknowledgement a listener reported; applied_at, stamped as a batch's
    # transaction begins, for a batch whose report was crowded out.
    settled = bench.deliveries.settled
    finished = max([row.applied_at for row in rows] + [settled[row.event_id] for row in rows if row.event_id in settled])
    per_listener: dict[str, int] = {}
    for row in rows:
        per_listener[row.listener] = per_listener.get(row.listener, 0) + 1
    return {
        "events": recorded,
        "listeners": listeners,
        "users": users,
        "eventsPerSecond": round(recorded / (finished - started)),
        "offeredFor_s": round(offered_for, 3),
        "seconds": round(finished - started, 3),
        "deferrals": bench.lab.counts.total("deferred", mode="guarded") - before.deferred,
        "redeliveries": bench.lab.counts.total("redelivered", mode="guarded") - before.redelivered,
        "perListener": dict(sorted(per_listener.items())),
    }


def summary(values: list[float]) -> dict[str, Any]:
    """Median, lowest and highest of a figure over the rounds."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


async def rounds(bench: Bench) -> dict[str, Any]:
    """`--repeat` rounds of a raw phase and a pipeline phase, in alternating order; the ratio of each
    round, and the median and spread of the rates and the ratios."""
    config = bench.config
    done: list[dict[str, Any]] = []
    for index in range(config.repeat):
        order = ("raw", "pipeline") if index % 2 == 0 else ("pipeline", "raw")
        round_: dict[str, Any] = {"order": list(order)}
        for kind in order:
            seed = 100 + index
            if kind == "raw":
                round_["raw"] = await raw_phase(bench, config.phase_s, config.listeners, config.users, seed)
            else:
                round_["pipeline"] = await pipeline_phase(bench, config.phase_s, config.listeners, config.users, seed)
        round_["ratio"] = round(round_["pipeline"]["eventsPerSecond"] / round_["raw"]["eventsPerSecond"], 3)
        bench.progress(
            f"    round {index + 1}/{config.repeat}: raw {round_['raw']['eventsPerSecond']:,}/s,"
            f" pipeline {round_['pipeline']['eventsPerSecond']:,}/s ({round_['ratio']:.0%});"
            f" {round_['raw']['seconds']:.1f} s and {round_['pipeline']['seconds']:.1f} s"
        )
        done.append(round_)
    return {
        "rounds": done,
        "raw": summary([r["raw"]["eventsPerSecond"] for r in done]),
        "pipeline": summary([r["pipeline"]["eventsPerSecond"] for r in done]),
        "ratio": summary([r["ratio"] for r in done]),
    }


async def scaling(bench: Bench) -> dict[str, Any]:
    """One pipeline phase per listener count, and one with many users; the configuration of the
    rounds is not run again: its row is the rounds' median."""
    config = bench.config
    shapes = [(listeners, config.users) for listeners in config.scale_listeners]
    shapes += [(config.listeners, users) for users in config.scale_users]
    rows = []
    for index, (listeners, users) in enumerate(shapes):
        if (listeners, users) == (config.listeners, config.users):
            continue
        phase = await pipeline_phase(bench, config.phase_s, listeners, users, seed=200 + index)
        bench.progress(
            f"    {listeners} listeners, {users:,} users: {phase['eventsPerSecond']:,} events/s"
            f" ({phase['deferrals']:,} deferrals)"
        )
        rows.append(phase)
    await bench.ensure_listeners("nak")
    return {"runs": rows}


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
