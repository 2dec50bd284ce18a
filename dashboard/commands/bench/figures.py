"""The benchmark's figures: configuration, percentiles, results, and what the listeners report."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dashboard.lab.checker import CheckReport
from dashboard.lab.natsserver import DEFAULT_SYNC
from dashboard.lab.traffic import Request, random_requests, user_names
from dashboard.lab.waits import wait_until
from listeners.partitions import DEFAULT_PARTITIONS
from listeners.status import ListenerStatus
from publisher.events import AccountEvent
from publisher.sqlite import fetch_all, read_only

DEFAULT_EVENTS = 20_000
DEFAULT_COMPARE_EVENTS = 10_000  # per phase of `--partitioned`
DEFAULT_SLOW_EVERY = 200  # `--partitioned`'s slow user has one event in this many
DEFAULT_SLOW_MS = 50  # and each takes this long to process
DEFAULT_USERS = 1_000
DEFAULT_LISTENERS = 2
DEFAULT_REPEAT = 3
DEFAULT_PHASE_S = 10.0
DEFAULT_SCALE_LISTENERS = (1, 2, 4)
DEFAULT_SCALE_USERS = (10_000,)
DEFAULT_RATES = (1_000, 3_000)
DEFAULT_LATENCY_S = 10.0
DEFAULT_PAIRS = 50
DEFAULT_DASHBOARD_RATE = 1_000
DEFAULT_DASHBOARD_EVENTS = 100_000
DEFAULT_DASHBOARD_CPU_S = 10.0
DEFAULT_FAILOVER_ROUNDS = 3

TARGET_RATIO = 0.8  # the guarded pipeline's events/s over the raw transport's, median of the rounds
# Publish -> applied p99 by offered rate; a rate not named here is measured without a target.
TARGET_P99_MS = {1_000: 25.0, 3_000: 50.0}
TARGET_NAK_P99_MS = 250.0
TARGET_DASHBOARD_CPU = 20.0  # % of one core at the fixed rate (1,000 events/s by default)
TARGET_DASHBOARD_CPU_FULL = 40.0  # % of one core while events flow as fast as the pipeline takes them
TARGET_DASHBOARD_RSS_MB = 150.0  # peak, whatever the stream's length
TARGET_DASHBOARD_KEY_P99_MS = 50.0
TARGET_FIRST_FRAME_S = 1.0

Progress = Callable[[str], None]


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
    repeat: int = DEFAULT_REPEAT
    phase_s: float = DEFAULT_PHASE_S
    scale_listeners: tuple[int, ...] = DEFAULT_SCALE_LISTENERS
    scale_users: tuple[int, ...] = DEFAULT_SCALE_USERS
    rates: tuple[int, ...] = DEFAULT_RATES
    latency_s: float = DEFAULT_LATENCY_S
    pairs: int = DEFAULT_PAIRS
    dashboard: bool = True
    dashboard_rate: int = DEFAULT_DASHBOARD_RATE
    dashboard_events: int = DEFAULT_DASHBOARD_EVENTS
    dashboard_cpu_s: float = DEFAULT_DASHBOARD_CPU_S
    ack_wait_s: float = 5.0
    sync: str = DEFAULT_SYNC
    profile_dir: Path | None = None
    # `--failover`: only the failover phase, on an embedded cluster of `cluster` nodes.
    failover: bool = False
    cluster: int = 0
    failover_rounds: int = DEFAULT_FAILOVER_ROUNDS
    # `--partitioned`: only the guarded and partitioned groups side by side, `events` per phase.
    partitioned: bool = False
    partitions: int = DEFAULT_PARTITIONS
    slow_every: int = DEFAULT_SLOW_EVERY
    slow_ms: int = DEFAULT_SLOW_MS


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
        """The check passed; with `--partitioned` it judged the partitioned database too."""
        if self.check is None or not self.check.ok:
            return False
        return not self.config.partitioned or self.check.partitioned is not None

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
        if self.check is not None and self.check.partitioned is not None and check is not None:
            check["partitioned"] = dataclasses.asdict(self.check.partitioned)
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


def endless_requests(users: int, seed: int) -> Iterator[Request]:
    """Random requests over `users` users, as many as asked for, the same for the same seed.

    Every phase draws from the same users, so the checker has few users to go through.
    """
    rng, names = random.Random(seed), user_names(users)
    while True:
        yield from random_requests(rng, names, 10_000)


def traffic(users: int, count: int, seed: int) -> list[Request]:
    """The first `count` of `endless_requests`."""
    return list(itertools.islice(endless_requests(users, seed), count))


def numbered(requests: Iterable[Request], prefix: str = "") -> Iterator[AccountEvent]:
    """The events the transactions service would make of `requests`, each user numbered 1, 2, ...;
    users are renamed `<prefix><user>`, so that phases with a prefix of their own never share a
    user's numbers."""
    last: dict[str, int] = {}
    for kind, user, cents in requests:
        name = prefix + user
        last[name] = last.get(name, 0) + 1
        yield AccountEvent.new(kind, name, cents, last[name])


class Deliveries:
    """When each event was settled, and which were deferred, by event id, from the outcomes the
    listeners report (the time is after the ack). The counts are the lab's (`Lab.counts`)."""

    def __init__(self) -> None:
        self.settled: dict[str, float] = {}
        self.deferred: set[str] = set()

    def on_status(self, status: ListenerStatus) -> None:
        for delivery in status.deliveries:
            event_id = delivery.event_id
            if event_id is None:
                continue
            if delivery.outcome == "deferred":
                self.deferred.add(event_id)
            elif delivery.outcome in ("applied", "rejected"):
                try:
                    self.settled.setdefault(event_id, parse_iso(delivery.at))
                except ValueError:
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
        async with read_only(self.path) as db:
            try:
                return await fetch_all(db, sql, params)
            except sqlite3.OperationalError:  # created, schema not yet written
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
