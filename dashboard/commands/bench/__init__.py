"""`natslab bench`: what the transport gives, what the guard costs, and whether the lab keeps up.

One run, on a fresh embedded server in a temporary data dir, phase by phase:

1. raw transport: the same events published with `publish_async` to a stream of their own and
   consumed by L processes through a pull consumer configured like the guarded group, acked, no work;
2. guarded pipeline: the publisher with its outbox, JetStream, L guarded listeners, `accounts.db`;
3. publish-to-applied latency at a fixed offered rate, open loop (each request at its time, whether
   or not earlier ones are done): from the request to the time its listener reported it committed
   and acknowledged, with where the time went (outbox, relay, delivery, apply);
4. out-of-order resolution with `--defer nak`: early events (#2 before #1) published straight to the
   subjects, their predecessors once every early event has been deferred;
5. recovery: SIGKILL of a listener holding an event, until another listener applied it;
6. the same out-of-order round with `--defer ack-wait`;
7. the dashboard's cost, measured from outside: it runs as its own process in a private tmux server
   (this module never imports Textual), watching this run's server and data dir; CPU and RSS come
   from /proc, the screen from `capture-pane` (first full frame; `?` and Esc while events flow).

It ends with the checker: a fast run that loses events is no result. Progress goes to stderr, the
table (or `--json`) to stdout. Timings are wall-clock figures on a shared machine; they belong here,
never in timed test assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from dashboard.lab.checker import CheckReport
from dashboard.lab.history import read_history
from dashboard.lab.lab import Lab, LabError, connect_with_retry, wait_until
from dashboard.lab.natsserver import die_with_parent
from dashboard.lab.scenarios import HOLD_MS, holder_of, wait_listeners_ready
from dashboard.lab.settings import Settings, UsageError
from listeners.accounts import ACCOUNTS_DB
from dashboard.commands.listener import ack_wait_seconds, positive_int, seconds
from listeners.groups import GUARDED_GROUP, consumer_config
from publisher.events import AccountEvent, utc_now_iso
from publisher.jetstream import stream_config
from publisher.service import Publisher

RAW_STREAM = "NATSLAB_BENCH_RAW"
RAW_SUBJECT_PREFIX = "natslab.bench"
RAW_CONSUMER = "bench-raw"
# Like the publisher's relay: this many publishes in flight, then wait for their PubAcks.
PUBLISH_WINDOW = 500
# Requests in flight at once when the benchmark offers as much as the publisher takes.
OFFER_WINDOW = 2_000

DEFAULT_EVENTS = 20_000
DEFAULT_USERS = 1_000
DEFAULT_LISTENERS = 2
DEFAULT_RATE = 1_000
DEFAULT_LATENCY_S = 5.0
DEFAULT_PAIRS = 50
DEFAULT_DASHBOARD_EVENTS = 100_000
DEFAULT_DASHBOARD_CPU_S = 10.0

TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_NAK_P99_MS = 250.0
TARGET_DASHBOARD_CPU = 25.0
TARGET_DASHBOARD_RSS_MB = 200.0
TARGET_FIRST_FRAME_S = 2.0

# What the dashboard shows once its first full frame is up, and what `?` opens.
FRAME_MARKERS = ("Channels", "Queue groups", "Account database", "Delivery timeline", "quit")
HELP_MARKER = "natslab keys"
TERMINAL_SIZE = (160, 48)

Progress = Callable[[str], None]


# -- figures -----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float]) -> dict[str, Any]:
    """p50 / p99 / max / n of durations in seconds, as milliseconds."""
    figures: dict[str, Any] = {"n": len(values)}
    for name, q in (("p50", 50), ("p99", 99), ("max", 100)):
        value = percentile(values, q)
        figures[f"{name}_ms"] = None if value is None else round(value * 1000, 1)
    return figures


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(slots=True)
class BenchConfig:
    events: int = DEFAULT_EVENTS
    users: int = DEFAULT_USERS
    listeners: int = DEFAULT_LISTENERS
    batch: int = 100
    rate: int = DEFAULT_RATE
    latency_s: float = DEFAULT_LATENCY_S
    pairs: int = DEFAULT_PAIRS
    dashboard: bool = True
    dashboard_events: int = DEFAULT_DASHBOARD_EVENTS
    dashboard_cpu_s: float = DEFAULT_DASHBOARD_CPU_S
    ack_wait_s: float = 5.0
    profile_dir: Path | None = None


@dataclass(slots=True)
class Target:
    name: str
    goal: str
    met: bool | None  # None: not measured
    figure: str

    def verdict(self) -> str:
        return "n/a" if self.met is None else ("met" if self.met else "MISSED")


@dataclass(slots=True)
class BenchResult:
    config: BenchConfig
    machine: dict[str, Any]
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    check: CheckReport | None = None
    check_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.check is not None and self.check.ok

    def to_json(self) -> dict[str, Any]:
        check: dict[str, Any] | None = None
        if self.check is not None:
            check = {
                "ok": self.check.ok,
                "verdict": self.check.verdict_line(),
                "problems": self.check.problems,
                "streamEvents": self.check.stream_events,
                "users": len(self.check.users),
                "guarded": dataclasses.asdict(self.check.guarded),
                "seconds": round(self.check_seconds, 1),
            }
        return {
            "config": dataclasses.asdict(self.config),
            "machine": self.machine,
            "phases": self.phases,
            "targets": [dataclasses.asdict(t) | {"verdict": t.verdict()} for t in self.targets],
            "check": check,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
        }


def machine_info() -> dict[str, Any]:
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = []
    return {"cpus": os.cpu_count(), "loadavg": load, "python": sys.version.split()[0]}


# -- traffic -----------------------------------------------------------------------------------------


def traffic(users: int, count: int, seed: int) -> list[tuple[str, str, int]]:
    """`count` (kind, user, cents) requests over `users` users, mostly deposits, like `publish --random`.

    Every phase draws from the same users (`user-1` ...), so the checker has few users to go through.
    """
    rng = random.Random(seed)
    names = [f"user-{index + 1}" for index in range(users)]
    return [
        ("deposit" if rng.random() < 0.6 else "withdraw", rng.choice(names), rng.randint(1, 200) * 100)
        for _ in range(count)
    ]


def numbered(requests: Iterable[tuple[str, str, int]]) -> list[AccountEvent]:
    """The events the transactions service would make of `requests`: each user numbered 1, 2, 3, ..."""
    last: dict[str, int] = {}
    events = []
    for kind, user, cents in requests:
        last[user] = last.get(user, 0) + 1
        events.append(AccountEvent.new(kind, user, cents, last[user]))
    return events


# -- what the listeners report -----------------------------------------------------------------------


class Deliveries:
    """Outcomes the listeners report in their status messages, by event id (the time is after the ack)."""

    def __init__(self) -> None:
        self.settled: dict[str, float] = {}
        self.deferred: set[str] = set()
        self.deferrals = 0
        self.redelivered = 0

    def on_status(self, status: dict[str, Any]) -> None:
        for delivery in status.get("deliveries") or ():
            event_id = delivery.get("id")
            outcome = delivery.get("outcome")
            if not isinstance(event_id, str):
                continue
            if delivery.get("deliveryCount", 1) > 1:
                self.redelivered += 1
            if outcome == "deferred":
                self.deferred.add(event_id)
                self.deferrals += 1
            elif outcome in ("applied", "rejected"):
                try:
                    self.settled.setdefault(event_id, parse_iso(delivery["at"]))
                except (KeyError, TypeError, ValueError):
                    pass


@dataclass(frozen=True, slots=True)
class AppliedRow:
    event_id: str
    user_id: str
    number: int
    listener: str
    delivery_count: int
    applied_at: float


class AccountsReader:
    """Read-only look at `accounts.db` while the listeners write it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not self.path.exists():
            return []
        async with aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30) as db:
            try:
                async with db.execute(sql, params) as cursor:
                    return list(await cursor.fetchall())
            except aiosqlite.OperationalError:  # created, schema not yet written
                return []

    async def mark(self) -> int:
        rows = await self._query("SELECT COALESCE(MAX(rowid), 0) FROM applied_events")
        return int(rows[0][0]) if rows else 0

    async def count_since(self, mark: int) -> int:
        rows = await self._query("SELECT COUNT(*) FROM applied_events WHERE rowid > ?", (mark,))
        return int(rows[0][0]) if rows else 0

    async def rows_since(self, mark: int) -> list[AppliedRow]:
        rows = await self._query(
            "SELECT event_id, user_id, number, listener, delivery_count, applied_at FROM applied_events"
            " WHERE rowid > ? ORDER BY rowid",
            (mark,),
        )
        return [AppliedRow(r[0], r[1], r[2], r[3], r[4], parse_iso(r[5])) for r in rows]

    async def wait_count(self, mark: int, expected: int, timeout: float, what: str) -> None:
        async def done() -> bool:
            return await self.count_since(mark) >= expected

        await wait_until(done, timeout, what, interval=0.05)


# -- the run -----------------------------------------------------------------------------------------


class Bench:
    """One benchmark run: a lab on a fresh embedded server, the phases, the check."""

    def __init__(self, config: BenchConfig, data_dir: Path, progress: Progress) -> None:
        self.config = config
        self.data_dir = data_dir
        self.progress = progress
        self.settings = Settings(
            data_dir=data_dir,
            nats_url=None,
            ack_wait_s=config.ack_wait_s,
            listeners=config.listeners,
            naive=0,
            defer="nak",
            batch=config.batch,
        )
        self.lab = Lab(self.settings)
        self.deliveries = Deliveries()
        self.reader = AccountsReader(data_dir / ACCOUNTS_DB)
        self.result = BenchResult(config, machine_info())

    @property
    def publisher(self) -> Publisher:
        assert self.lab.publisher is not None
        return self.lab.publisher

    async def run(self) -> BenchResult:
        started = time.monotonic()
        self.progress(f"starting an embedded nats-server in {self.data_dir}")
        await self.lab.start(listeners=0, naive=0)
        self.lab.status_callbacks.append(self.deliveries.on_status)
        try:
            phases = [
                ("raw", "raw transport", self.raw_transport),
                ("pipeline", "guarded pipeline", self.guarded_pipeline),
                ("latency", "publish-to-applied latency", self.latency),
                ("nak", "out-of-order resolution, --defer nak", lambda: self.out_of_order("nak")),
                ("recovery", "recovery after SIGKILL", self.recovery),
                ("ackWait", "out-of-order resolution, --defer ack-wait", lambda: self.out_of_order("ack-wait")),
                ("dashboard", "the dashboard's cost", self.dashboard_cost),
            ]
            for index, (key, title, phase) in enumerate(phases, 1):
                self.progress(f"[{index}/{len(phases) + 1}] {title}")
                phase_started = time.monotonic()
                self.result.phases[key] = await phase()
                self.result.phases[key]["phaseSeconds"] = round(time.monotonic() - phase_started, 1)
            self.progress(f"[{len(phases) + 1}/{len(phases) + 1}] checking the databases")
            phase_started = time.monotonic()
            await self.lab.wait_drained(timeout=self.config.ack_wait_s * 4 + 60, modes=("guarded",))
            self.result.check = await self.lab.check()
            self.result.check_seconds = time.monotonic() - phase_started
            self.progress(f"    {self.result.check.verdict_line()} ({self.result.check_seconds:.1f} s)")
        finally:
            await self.lab.stop()
        self.result.seconds = time.monotonic() - started
        self.result.machine = machine_info()
        self.result.targets = targets(self.result)
        return self.result

    async def ensure_listeners(self, defer: str) -> None:
        """L guarded listeners running with `defer`, each fetching."""
        supervisor = self.lab.supervisor
        assert supervisor is not None
        if supervisor.defer != defer or len([e for e in supervisor.members("guarded") if e.alive]) != self.config.listeners:
            await supervisor.stop_all()
            supervisor.defer = defer
            names = [chr(ord("A") + index) for index in range(self.config.listeners)]
            for name in names:
                supervisor.spawn("guarded", name)
        await wait_listeners_ready(self.lab, timeout=30)

    # -- 1. raw transport ------------------------------------------------------------------------------

    async def raw_transport(self) -> dict[str, Any]:
        config = self.config
        assert self.lab.nc is not None
        js = self.lab.nc.jetstream()
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
        consumers = [await self._start_raw_consumer() for _ in range(config.listeners)]
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
            reports = [await self._stop_raw_consumer(process) for process in consumers]
        finally:
            for process in consumers:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await js.delete_stream(RAW_STREAM)
        finished = max(report["lastAck"] for report in reports if report.get("lastAck"))
        rate = len(events) / (finished - started)
        self.progress(f"    {rate:,.0f} events/s end to end; publish alone {len(events) / (published - started):,.0f}/s")
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

    async def _start_raw_consumer(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dashboard.commands.bench", "raw-consumer",
            self.lab.url, RAW_STREAM, RAW_CONSUMER, str(self.config.batch),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=lambda: die_with_parent(signal.SIGKILL),
        )  # fmt: skip
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if line.strip() != b"ready":
            raise LabError(f"the raw consumer did not start: {line!r}")
        return process

    @staticmethod
    async def _stop_raw_consumer(process: asyncio.subprocess.Process) -> dict[str, Any]:
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        out = await asyncio.wait_for(process.stdout.read(), timeout=30)
        await asyncio.wait_for(process.wait(), timeout=30)
        return json.loads(out.decode().strip().splitlines()[-1])

    # -- 2. guarded pipeline ---------------------------------------------------------------------------

    async def guarded_pipeline(self) -> dict[str, Any]:
        config = self.config
        await self.ensure_listeners("nak")
        requests = traffic(config.users, config.events, seed=2)
        mark = await self.reader.mark()
        deferrals, redelivered = self.deliveries.deferrals, self.deliveries.redelivered
        assert self.lab.supervisor is not None
        pids = {f"listener-{e.name}": e.pid for e in self.lab.supervisor.members("guarded") if e.pid is not None}
        profilers = await self._profile({"bench": os.getpid(), **pids})
        started = time.time()
        await self.offer(requests)
        recorded = time.time()
        await self.reader.wait_count(mark, len(requests), 120 + config.events / 500, "the pipeline to apply every event")
        await self._stop_profile(profilers)
        # Drained, the last status reports are in too.
        await wait_until(lambda: self.lab.drained(("guarded",)), 30, "the guarded group to drain", interval=0.1)
        rows = await self.reader.rows_since(mark)
        # The end is the last commit: applied_at is stamped as a batch's transaction begins, the
        # listeners' reports after its commit and acks (when a report is not crowded out).
        settled = self.deliveries.settled
        finished = max([row.applied_at for row in rows] + [settled[row.event_id] for row in rows if row.event_id in settled])
        rate = len(requests) / (finished - started)
        self.progress(f"    {rate:,.0f} events/s end to end; outbox writes {len(requests) / (recorded - started):,.0f}/s")
        return {
            "events": len(requests),
            "listeners": config.listeners,
            "eventsPerSecond": round(rate),
            "outboxPerSecond": round(len(requests) / (recorded - started)),
            "seconds": round(finished - started, 3),
            "deferrals": self.deliveries.deferrals - deferrals,
            "redeliveries": self.deliveries.redelivered - redelivered,
            "perListener": _per_listener(rows),
        }

    async def offer(self, requests: list[tuple[str, str, int]]) -> None:
        """Write `requests` through the transactions service as fast as it takes them.

        Many callers at once, as a busy service would have: overlapping `record` calls share a
        commit, so this measures the outbox with group commit, not one fsync per event.
        """
        for start in range(0, len(requests), OFFER_WINDOW):
            await asyncio.gather(
                *(self.publisher.record(kind, user, cents) for kind, user, cents in requests[start : start + OFFER_WINDOW])
            )

    async def offer_at_rate(self, requests: list[tuple[str, str, int]], rate: float) -> dict[str, tuple[float, float]]:
        """Open loop: each request is made at its time whether or not earlier ones are done.

        Returns event id -> (when the request was made, the event's `createdAt`), both wall clock.
        """
        asked: dict[str, tuple[float, float]] = {}

        async def one(at: float, kind: str, user: str, cents: int) -> None:
            event = await self.publisher.record(kind, user, cents)
            asked[event.id] = (at, parse_iso(event.created_at))

        tasks = []
        started = time.monotonic()
        for index, (kind, user, cents) in enumerate(requests):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(time.time(), kind, user, cents)))
        await asyncio.gather(*tasks)
        return asked

    # -- 3. latency at a fixed rate --------------------------------------------------------------------

    async def latency(self) -> dict[str, Any]:
        config = self.config
        await self.ensure_listeners("nak")
        count = max(1, round(config.rate * config.latency_s))
        requests = traffic(config.users, count, seed=3)
        mark = await self.reader.mark()
        assert self.lab.nc is not None
        first_seq = (await self.lab.stream_info()).state.last_seq + 1
        started = time.monotonic()
        asked = await self.offer_at_rate(requests, config.rate)
        offered = count / (time.monotonic() - started)
        await self.reader.wait_count(mark, count, 120, "the latency events to be applied")
        await wait_until(lambda: self.lab.drained(("guarded",)), 30, "the guarded group to drain", interval=0.1)
        rows = await self.reader.rows_since(mark)
        stored = {
            stored.event.id: parse_iso(stored.stored_at)
            for stored in await read_history(self.lab.nc, start_seq=first_seq)
            if stored.event is not None
        }
        # Where the time goes: request -> createdAt (waiting for the outbox transaction) -> stored in the
        # stream (commit, relay, PubAck) -> the listener's batch begins -> committed and acked.
        stages: dict[str, list[float]] = {"outbox": [], "relay": [], "delivery": [], "apply": []}
        total: list[float] = []
        for row in rows:
            at, created = asked[row.event_id]
            settled = self.deliveries.settled.get(row.event_id, row.applied_at)
            total.append(settled - at)
            if row.event_id in stored:
                stages["outbox"].append(created - at)
                stages["relay"].append(stored[row.event_id] - created)
                stages["delivery"].append(row.applied_at - stored[row.event_id])
                stages["apply"].append(settled - row.applied_at)
        coverage = sum(1 for row in rows if row.event_id in self.deliveries.settled) / max(1, len(rows))
        figures = spread(total)
        self.progress(f"    p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms at {offered:,.0f} events/s")
        return {
            "offeredPerSecond": round(offered),
            "events": count,
            "publishToApplied": figures,
            "stages": {name: spread(values) for name, values in stages.items()},
            # The share of events whose commit-and-ack time the listeners reported; the rest use applied_at.
            "statusCoverage": round(coverage, 4),
        }

    # -- 4 and 6. out-of-order resolution --------------------------------------------------------------

    async def out_of_order(self, defer: str) -> dict[str, Any]:
        config = self.config
        await self.ensure_listeners(defer)
        assert self.lab.nc is not None
        js = self.lab.nc.jetstream()
        tag = "nak" if defer == "nak" else "ackwait"
        users = [f"ooo-{tag}-{index + 1}" for index in range(config.pairs)]
        first = {user: AccountEvent.new("deposit", user, 1000, 1) for user in users}
        early = {user: AccountEvent.new("deposit", user, 500, 2) for user in users}
        mark = await self.reader.mark()
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
            await wait_until(lambda: early_ids <= self.deliveries.deferred, 10, "every early event to be deferred")
            unseen = 0
        except TimeoutError:
            unseen = len(early_ids - self.deliveries.deferred)
        await publish(list(first.values()))
        await self.reader.wait_count(
            mark, 2 * len(users), config.ack_wait_s * 4 + 60, f"the out-of-order events ({defer}) to be applied"
        )
        rows = {row.event_id: row for row in await self.reader.rows_since(mark)}

        def applied(event_id: str) -> float:
            return self.deliveries.settled.get(event_id, rows[event_id].applied_at)

        waits = [applied(early[user].id) - published[early[user].id] for user in users]
        after = [applied(early[user].id) - applied(first[user].id) for user in users]
        figures = spread(waits)
        self.progress(f"    early event applied after p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
        return {
            "defer": defer,
            "pairs": len(users),
            "earlyPublishToApplied": figures,
            "afterPredecessorApplied": spread(after),
            "maxDeliveriesOfEarly": max(rows[early[user].id].delivery_count for user in users),
            "notSeenDeferred": unseen,
        }

    # -- 5. recovery -----------------------------------------------------------------------------------

    async def recovery(self) -> dict[str, Any]:
        await self.ensure_listeners("nak")
        supervisor = self.lab.supervisor
        assert supervisor is not None
        names = [entry.name for entry in supervisor.members("guarded") if entry.alive]
        for name in names:
            await self.lab.send_control(name, f"slow {HOLD_MS}")
        users = [f"rec-{index + 1}" for index in range(len(names))]
        events = [await self.publisher.record("deposit", user, 100) for user in users]
        held = events[0]
        await wait_until(
            lambda: holder_of(self.lab, "guarded", held.user_id, held.number) is not None,
            30,
            "a listener to hold the recovery event",
        )
        holder = holder_of(self.lab, "guarded", held.user_id, held.number)
        assert holder is not None
        since = (self.lab.statuses.get(holder) or {}).get("inFlightSince")
        mark = await self.reader.mark()
        killed = time.time()
        supervisor.kill(holder)
        for name in names:
            if name != holder:
                await self.lab.send_control(name, "normal")
        if len(names) == 1:  # nobody else to take over: the restarted listener gets it back
            supervisor.spawn("guarded", holder)

        async def applied() -> bool:
            return any(row.event_id == held.id for row in await self.reader.rows_since(mark))

        await wait_until(applied, self.config.ack_wait_s * 4 + 30, "the held event to be applied elsewhere")
        row = next(row for row in await self.reader.rows_since(mark) if row.event_id == held.id)
        recovered = self.deliveries.settled.get(held.id, row.applied_at) - killed
        if not supervisor.get(holder).alive:
            supervisor.spawn("guarded", holder)
        await wait_listeners_ready(self.lab, timeout=30)
        self.progress(f"    applied by {row.listener} {recovered:.2f} s after the kill (ack wait {self.config.ack_wait_s:g} s)")
        return {
            "killed": holder,
            "appliedBy": row.listener,
            "killToApplied_s": round(recovered, 3),
            "heldFor_s": round(killed - since, 3) if isinstance(since, (int, float)) else None,
            "ackWait_s": self.config.ack_wait_s,
            "deliveryCount": row.delivery_count,
        }

    # -- 7. the dashboard ------------------------------------------------------------------------------

    async def dashboard_cost(self) -> dict[str, Any]:
        if not self.config.dashboard:
            return {"available": False, "reason": "skipped (--no-dashboard)"}
        reason = dashboard_unavailable()
        if reason is not None:
            self.progress(f"    n/a: {reason}")
            return {"available": False, "reason": reason}
        await self.ensure_listeners("nak")
        terminal = TmuxTerminal(f"natslab-bench-{os.getpid()}")
        # The dashboard watches this run's server and data dir and starts no listeners of its own.
        command = [
            sys.executable, "-m", "dashboard.commands",
            "--nats-url", self.lab.url,
            "--data-dir", str(self.data_dir),
            "--listeners", "0",
            "--naive", "0",
            "--ack-wait", f"{self.config.ack_wait_s:g}",
        ]  # fmt: skip
        try:
            launched = time.monotonic()
            pid = await terminal.start(command, TERMINAL_SIZE)
            try:
                await wait_until(lambda: terminal.shows(*FRAME_MARKERS), 20, "the dashboard's first full frame", 0.01)
            except TimeoutError:
                screen = await terminal.capture()
                self.progress("    n/a: no full frame within 20 s")
                return {"available": False, "reason": "no full frame within 20 s", "screen": screen[-2000:]}
            first_frame = time.monotonic() - launched
            self.progress(f"    first full frame after {first_frame:.2f} s")
            figures = await self._dashboard_under_load(pid, terminal)
            self.progress(
                f"    {figures['cpuPercentAtRate']:.1f}% of one core at {figures['offeredPerSecond']:,}/s;"
                f" key -> screen p50 {figures['keyToScreen']['p50_ms']} ms;"
                f" peak RSS {figures['peakRssMB']:.0f} MB after {figures['eventsWhileRunning']:,} events"
            )
            return {"available": True, "firstFrame_s": round(first_frame, 3), **figures}
        finally:
            await terminal.stop()

    async def _dashboard_under_load(self, pid: int, terminal: TmuxTerminal) -> dict[str, Any]:
        """CPU share and key latency at the fixed rate; then the rest of the events at full speed, and RSS."""
        config = self.config
        steady_count = min(config.dashboard_events, max(1, round(config.rate * config.dashboard_cpu_s)))
        requests = traffic(config.users, config.dashboard_events, seed=4)
        mark = await self.reader.mark()
        profilers = await self._profile({"dashboard": pid})
        keys: list[float] = []
        enough = asyncio.Event()
        cpu_before, wall_before = proc_cpu_seconds(pid), time.monotonic()
        pressing = asyncio.create_task(self._key_latency(terminal, keys, enough))
        await self.offer_at_rate(requests[:steady_count], config.rate)
        elapsed = time.monotonic() - wall_before
        cpu_steady = (proc_cpu_seconds(pid) - cpu_before) / elapsed * 100
        await self._stop_profile(profilers)
        enough.set()
        await pressing  # finishes the round it is in, so there is at least one
        rest = requests[steady_count:]
        cpu_before, wall_before = proc_cpu_seconds(pid), time.monotonic()
        if rest:
            self.progress(f"    {len(rest):,} more events at full speed for the memory figure")
            await self.offer(rest)
        await self.reader.wait_count(mark, len(requests), 300, "the dashboard-phase events to be applied")
        cpu_flat = (proc_cpu_seconds(pid) - cpu_before) / max(1e-3, time.monotonic() - wall_before) * 100 if rest else None
        return {
            "cpuPercentAtRate": round(cpu_steady, 1),
            "offeredPerSecond": round(steady_count / elapsed),
            "keyToScreen": spread(keys),
            "cpuPercentFullSpeed": None if cpu_flat is None else round(cpu_flat, 1),
            "rssMB": round(proc_status_kb(pid, "VmRSS") / 1024, 1),
            "peakRssMB": round(proc_status_kb(pid, "VmHWM") / 1024, 1),
            "eventsWhileRunning": len(requests),
        }

    @staticmethod
    async def _key_latency(terminal: TmuxTerminal, keys: list[float], enough: asyncio.Event) -> None:
        """Once a second until `enough`, `?` opens help and Esc closes it: from each key to the screen."""
        while True:
            for key, shown in (("?", True), ("Escape", False)):
                pressed = time.monotonic()
                await terminal.send_keys(key)

                async def changed(want: bool = shown) -> bool:
                    return await terminal.shows(HELP_MARKER) == want

                await wait_until(changed, 20, f"the screen after {key}", 0.005)
                keys.append(time.monotonic() - pressed)
            try:
                await asyncio.wait_for(enough.wait(), timeout=1.0)
                return
            except asyncio.TimeoutError:
                pass

    async def _profile(self, pids: dict[str, int]) -> list[asyncio.subprocess.Process]:
        """With --profile DIR: py-spy samples each process into DIR/<name>.txt (collapsed stacks)."""
        folder = self.config.profile_dir
        if folder is None:
            return []
        binary = Path(sys.executable).with_name("py-spy")
        spy = str(binary) if binary.exists() else shutil.which("py-spy")
        if spy is None:
            self.progress("    py-spy not found; no profile")
            return []
        folder.mkdir(parents=True, exist_ok=True)
        profilers = []
        for name, pid in pids.items():
            profilers.append(
                await asyncio.create_subprocess_exec(
                    spy, "record", "--nonblocking", "--format", "raw", "--rate", "100",
                    "--pid", str(pid), "--output", str(folder / f"{name}.txt"),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            )
        return profilers

    async def _stop_profile(self, profilers: list[asyncio.subprocess.Process]) -> None:
        """SIGINT makes py-spy write what it sampled."""
        for profiler in profilers:
            if profiler.returncode is None:
                profiler.send_signal(signal.SIGINT)
        for profiler in profilers:
            try:
                await asyncio.wait_for(profiler.wait(), timeout=30)
            except asyncio.TimeoutError:
                profiler.kill()
                await profiler.wait()
        if profilers:
            self.progress(f"    profiles in {self.config.profile_dir}")


def _per_listener(rows: list[AppliedRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.listener] = counts.get(row.listener, 0) + 1
    return dict(sorted(counts.items()))


# -- the dashboard from outside ----------------------------------------------------------------------


def dashboard_unavailable() -> str | None:
    """Why the Textual dashboard cannot be run yet, or None; asked in a subprocess, never imported here."""
    probe = "import dashboard.ui.app as app; assert callable(getattr(app, 'run_dashboard', None))"
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot probe the dashboard: {exc}"
    if result.returncode != 0:
        return "dashboard not available (dashboard.ui.app has no run_dashboard yet)"
    if shutil.which("tmux") is None:
        return "tmux is not installed"
    return None


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise LabError(f"/proc/{pid}/status has no {key}")


class TmuxTerminal:
    """A private tmux server (its own socket) holding one pane; the screen is read with capture-pane."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.pid: int | None = None
        self.started = False
        self._watchdog: asyncio.subprocess.Process | None = None

    async def _tmux(self, *args: str, check: bool = True) -> str:
        process = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.socket, "-f", "/dev/null", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=10)
        if check and process.returncode != 0:
            raise LabError(f"tmux {args[0]}: {err.decode().strip()}")
        return out.decode()

    async def start(self, command: list[str], size: tuple[int, int]) -> int:
        columns, rows = size
        env = ["-e", "TERM=xterm-256color", "-e", "COLORTERM=truecolor"]
        # COLUMNS and LINES, when the environment has them (a detached tmux under pytest sets 80x24),
        # would override the pane's real size; `env` execs, so the pane's pid stays the dashboard's.
        unset = ["env", "-u", "COLUMNS", "-u", "LINES"]
        await self._tmux(
            "new-session", "-d", "-s", "bench", "-x", str(columns), "-y", str(rows), *env, *unset, *command
        )  # fmt: skip
        self.started = True
        self.pid = int((await self._tmux("display-message", "-p", "-t", "bench", "#{pane_pid}")).strip())
        # tmux daemonizes, so the dashboard is not our child and would outlive a killed benchmark: a
        # watchdog that dies with us (and is told so by the kernel) ends it and this tmux server.
        self._watchdog = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dashboard.commands.bench", "watchdog", str(self.pid), self.socket,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        return self.pid

    async def capture(self) -> str:
        return await self._tmux("capture-pane", "-p", "-t", "bench", check=False)

    async def shows(self, *markers: str) -> bool:
        screen = await self.capture()
        return all(marker in screen for marker in markers)

    async def send_keys(self, key: str) -> None:
        await self._tmux("send-keys", "-t", "bench", key)

    async def stop(self) -> None:
        """`q` quits the dashboard; SIGKILL by pid if it does not; then this tmux server goes."""
        if not self.started:
            return
        if self._watchdog is not None and self._watchdog.returncode is None:
            self._watchdog.kill()  # its job is only for when we die first
            await self._watchdog.wait()
        pid = self.pid
        if pid is not None and _alive(pid):
            await self._tmux("send-keys", "-t", "bench", "q", check=False)
            try:
                await wait_until(lambda: not _alive(pid), 10, "the dashboard to quit", 0.05)
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
        await self._tmux("kill-server", check=False)
        self.started = False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# -- targets and the table ---------------------------------------------------------------------------


def targets(result: BenchResult) -> list[Target]:
    """The issue's targets, judged on this run's figures; None where a figure is missing."""
    phases = result.phases
    raw, pipe = phases.get("raw", {}), phases.get("pipeline", {})
    ratio = pipe["eventsPerSecond"] / raw["eventsPerSecond"] if raw.get("eventsPerSecond") and "eventsPerSecond" in pipe else None
    p99 = phases.get("latency", {}).get("publishToApplied", {}).get("p99_ms")
    nak = phases.get("nak", {}).get("earlyPublishToApplied", {}).get("p99_ms")
    dash = phases.get("dashboard", {})
    cpu, rss, frame = dash.get("cpuPercentAtRate"), dash.get("peakRssMB"), dash.get("firstFrame_s")
    no_dashboard = "n/a" if dash.get("available") else f"n/a ({dash.get('reason', 'not measured')})"

    def target(name: str, goal: str, value: float | None, limit: float, figure: str, unmeasured: str = "n/a") -> Target:
        if value is None:
            return Target(name, goal, None, unmeasured)
        return Target(name, goal, value >= limit if name == "pipeline" else value < limit, figure)

    return [
        target("pipeline", f">= {TARGET_RATIO:.0%} of raw", ratio, TARGET_RATIO, f"{ratio or 0:.0%}"),
        target("latency", f"p99 < {TARGET_P99_MS:g} ms", p99, TARGET_P99_MS, f"{p99} ms"),
        target("nak", f"p99 < {TARGET_NAK_P99_MS:g} ms", nak, TARGET_NAK_P99_MS, f"{nak} ms"),
        target("dashboard-cpu", f"< {TARGET_DASHBOARD_CPU:g}% of a core", cpu, TARGET_DASHBOARD_CPU, f"{cpu}%", no_dashboard),
        target("dashboard-rss", f"< {TARGET_DASHBOARD_RSS_MB:g} MB", rss, TARGET_DASHBOARD_RSS_MB, f"{rss} MB", no_dashboard),
        target("first-frame", f"< {TARGET_FIRST_FRAME_S:g} s", frame, TARGET_FIRST_FRAME_S, f"{frame} s", no_dashboard),
    ]


def _ms(figures: dict[str, Any]) -> str:
    if not figures or figures.get("p50_ms") is None:
        return "-"
    return f"p50 {_duration(figures['p50_ms'])}, p99 {_duration(figures['p99_ms'])}"


def _duration(ms: float) -> str:
    return f"{ms:,.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def format_table(result: BenchResult) -> str:
    """The results as a table: measure, figure, target and verdict; then the targets and the check."""
    config, phases = result.config, result.phases
    verdicts = {target.name: target for target in result.targets}

    def verdict(name: str) -> str:
        target = verdicts[name]
        return f"{target.goal}: {target.verdict()}"

    raw, pipe, latency = phases.get("raw", {}), phases.get("pipeline", {}), phases.get("latency", {})
    nak, ack_wait, recovery = phases.get("nak", {}), phases.get("ackWait", {}), phases.get("recovery", {})
    ratio = pipe.get("eventsPerSecond", 0) / max(1, raw.get("eventsPerSecond", 0))
    waits = f"ack wait {config.ack_wait_s:g} s"
    rows: list[tuple[str, str, str]] = [
        ("measure", "result", "target"),
        (
            "raw transport (publish_async, fetch + ack)",
            f"{raw.get('eventsPerSecond', 0):,} events/s (publish alone {raw.get('publishPerSecond', 0):,}/s)",
            "",
        ),
        (
            f"guarded pipeline (outbox, {config.listeners} listeners)",
            f"{pipe.get('eventsPerSecond', 0):,} events/s, {ratio:.0%} of raw ({pipe.get('deferrals', 0):,} deferrals)",
            verdict("pipeline"),
        ),
        (
            f"publish -> applied at {latency.get('offeredPerSecond', 0):,}/s",
            _ms(latency.get("publishToApplied", {})),
            verdict("latency"),
        ),
        (
            "early event -> applied, --defer nak",
            f"{_ms(nak.get('earlyPublishToApplied', {}))} ({nak.get('pairs', 0)} events)",
            verdict("nak"),
        ),
        (
            "early event -> applied, --defer ack-wait",
            f"{_ms(ack_wait.get('earlyPublishToApplied', {}))} ({ack_wait.get('pairs', 0)} events)",
            waits,
        ),
        ("SIGKILL of a holder -> applied elsewhere", f"{recovery.get('killToApplied_s', 0):.2f} s", waits),
    ]
    dash = phases.get("dashboard", {})
    if dash.get("available"):
        rate = f"{dash['offeredPerSecond']:,}/s"
        rows += [
            (f"dashboard CPU at {rate}", f"{dash['cpuPercentAtRate']:.1f}% of one core" + (
                "" if dash.get("cpuPercentFullSpeed") is None else f" ({dash['cpuPercentFullSpeed']:.0f}% at full speed)"
             ), verdict("dashboard-cpu")),
            ("dashboard peak RSS", f"{dash['peakRssMB']:.0f} MB after {dash['eventsWhileRunning']:,} events",
             verdict("dashboard-rss")),
            ("dashboard start -> first full frame", f"{dash['firstFrame_s']:.2f} s", verdict("first-frame")),
            (f"dashboard key -> screen at {rate}", _ms(dash.get("keyToScreen", {})), ""),
        ]  # fmt: skip
    else:
        rows.append(("dashboard", f"n/a ({dash.get('reason', 'not measured')})", ""))
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    machine = result.machine
    load = f"load {'/'.join(f'{v:.1f}' for v in machine.get('loadavg', []))}" if machine.get("loadavg") else ""
    lines = [
        f"natslab bench: {config.events:,} events over {config.users:,} users, {config.listeners} guarded"
        f" listeners (batch {config.batch}), ack wait {config.ack_wait_s:g} s;"
        f" {machine['cpus']} cores, {load} at the end; {result.seconds:.0f} s",
        "",
    ]
    lines += [f"{name:<{width}}  {value:<{value_width}}  {target}".rstrip() for name, value, target in rows]
    lines.append("")
    judged = [target for target in result.targets if target.met is not None]
    missed = [target.name for target in judged if not target.met]
    lines.append(
        f"targets: {len(judged) - len(missed)} of {len(judged)} met"
        + (f"; missed: {', '.join(missed)}" if missed else "")
        + (f"; {len(result.targets) - len(judged)} not measured" if len(judged) < len(result.targets) else "")
    )
    if result.check is not None:
        lines.append(f"check: {result.check.verdict_line()}")
        lines += [f"problem: {problem}" for problem in result.check.problems]
    else:
        lines.append("check: not run")
    return "\n".join(lines)


# -- the CLI -----------------------------------------------------------------------------------------


_duration_seconds = seconds(0.1, 3600)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `natslab bench`; the run always uses a fresh embedded server and a temp data dir."""
    add = parser.add_argument
    add("--events", type=positive_int, default=DEFAULT_EVENTS,
        help=f"events for the raw transport and the guarded pipeline (default {DEFAULT_EVENTS:,})")
    add("--users", type=positive_int, default=DEFAULT_USERS,
        help=f"users the events are spread over (default {DEFAULT_USERS:,}); few users means many deferrals")
    add("--listeners", type=positive_int, default=DEFAULT_LISTENERS,
        help=f"guarded listeners, and raw consumers (default {DEFAULT_LISTENERS})")
    add("--batch", type=positive_int, default=None, help="events fetched per pull (default: the listeners' default)")
    add("--ack-wait", type=ack_wait_seconds, default=None,
        help="consumer ack wait in seconds (env NATSLAB_ACK_WAIT; default 5)")
    add("--rate", type=positive_int, default=DEFAULT_RATE,
        help=f"offered events/s while measuring latency and the dashboard (default {DEFAULT_RATE:,})")
    add("--latency-seconds", type=_duration_seconds, default=DEFAULT_LATENCY_S,
        help=f"length of the fixed-rate latency run (default {DEFAULT_LATENCY_S:g})")
    add("--pairs", type=positive_int, default=DEFAULT_PAIRS,
        help=f"out-of-order pairs (#2 before #1) per defer mode (default {DEFAULT_PAIRS})")
    add("--dashboard-events", type=positive_int, default=DEFAULT_DASHBOARD_EVENTS,
        help=f"events that flow past the dashboard (default {DEFAULT_DASHBOARD_EVENTS:,})")
    add("--dashboard-seconds", type=_duration_seconds, default=DEFAULT_DASHBOARD_CPU_S,
        help=f"length of the fixed-rate run with the dashboard watching (default {DEFAULT_DASHBOARD_CPU_S:g})")
    add("--no-dashboard", action="store_true", help="skip the dashboard's cost")
    add("--json", action="store_true", help="print the results as JSON")
    add("--keep", action="store_true", help="keep the temporary data dir (store, databases, logs)")
    add("--profile", type=Path, default=None, metavar="DIR",
        help="sample the pipeline's processes and the dashboard with py-spy into DIR (collapsed stacks)")


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    """Run the benchmark; the table (or JSON) on stdout, progress on stderr; 0 when the check passed."""
    config = BenchConfig(
        events=args.events,
        users=args.users,
        listeners=args.listeners,
        batch=args.batch or settings.batch,
        rate=args.rate,
        latency_s=args.latency_seconds,
        pairs=args.pairs,
        dashboard=not args.no_dashboard,
        dashboard_events=args.dashboard_events,
        dashboard_cpu_s=args.dashboard_seconds,
        ack_wait_s=getattr(args, "ack_wait", None) or settings.ack_wait_s,
        profile_dir=args.profile.resolve() if args.profile else None,
    )
    if config.listeners > 26:
        raise UsageError("--listeners must be at most 26")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if getattr(settings, "nats_url", None):
        progress("natslab bench: ignoring --nats-url; the benchmark always runs on a fresh embedded server")
    data_dir = Path(tempfile.mkdtemp(prefix="natslab-bench-"))
    try:
        result = asyncio.run(Bench(config, data_dir, progress).run())
    except BaseException:
        progress(f"natslab bench: failed; its data and logs are in {data_dir}")
        raise
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print(format_table(result))
    if result.ok and not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        progress(f"data and logs kept in {data_dir}")
    return 0 if result.ok else 1


# -- the raw consumer process ------------------------------------------------------------------------


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
        fetching = asyncio.ensure_future(sub.fetch(batch, timeout=1.0))
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


def watchdog(dashboard_pid: int, socket: str) -> None:
    """Wait for SIGTERM (sent by the kernel when the benchmark dies); then end the dashboard and tmux."""
    signal.sigwait({signal.SIGTERM})
    try:
        os.kill(dashboard_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", "kill-server"], capture_output=True, timeout=10)

