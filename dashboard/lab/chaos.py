"""Chaos runs: publish while killing, pausing and resuming listeners and restarting the server.

In the style of Jepsen's queue tests: faults land at seeded random points of the publishing run, the
system drains, and the checker counts lost, duplicated and reordered events. The guarded group must
come out clean; the naive group, hit by the same faults, is measured and reported.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from dashboard.lab.checker import CheckReport
from dashboard.lab.lab import Lab
from dashboard.lab.probes import wait_drained, wait_listeners_ready
from dashboard.lab.settings import Settings
from dashboard.lab.traffic import random_requests, user_names
from dashboard.lab.waits import wait_until


@dataclass(slots=True)
class ChaosConfig:
    events: int = 2000
    users: int = 10
    kills: int = 10
    pauses: int = 3
    server_restarts: int = 1
    seed: int | None = None
    listeners: int = 3
    naive: int = 1


@dataclass(slots=True)
class ChaosResult:
    config: ChaosConfig
    redeliveries: int = 0
    drain_s: float = 0.0
    publish_s: float = 0.0
    faults: list[str] = field(default_factory=list)
    report: CheckReport | None = None

    def summary(self) -> str:
        assert self.report is not None
        c, g = self.config, self.report.guarded
        return (
            f"events={c.events} users={c.users} kills={c.kills} pauses={c.pauses} server_restarts={c.server_restarts}"
            f" redeliveries={self.redeliveries} lost={g.lost} duplicated={g.duplicated} out_of_order={g.out_of_order}"
            f" conflicts={self.report.conflicts} parked={g.parked} poison={self.report.poison_in_stream}"
            f" drain_s={self.drain_s:.1f}"
        )

    def naive_summary(self) -> str:
        assert self.report is not None
        n = self.report.naive
        if n is None:
            return "naive: not run"
        return f"naive: lost={n.lost} duplicated={n.duplicated} out_of_order={n.out_of_order} wrong_balance={n.wrong_balance}"

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok and self.report.guarded.clean

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "redeliveries": self.redeliveries,
            "drainSeconds": round(self.drain_s, 3),
            "publishSeconds": round(self.publish_s, 3),
            "faults": self.faults,
            "check": None if self.report is None else self.report.to_json(),
            "ok": self.ok,
        }


def fault_plan(config: ChaosConfig, rng: random.Random) -> dict[int, list[str]]:
    """Event index -> faults to inject right after publishing it; seeded, so a run can be repeated."""
    kinds = ["kill"] * config.kills + ["pause"] * config.pauses + ["server-restart"] * config.server_restarts
    plan: dict[int, list[str]] = {}
    for kind in kinds:
        plan.setdefault(rng.randrange(max(1, config.events)), []).append(kind)
    return plan


async def run_chaos(config: ChaosConfig, settings: Settings, progress: Callable[[str], None] | None = None) -> ChaosResult:
    rng = random.Random(config.seed)
    plan = fault_plan(config, rng)
    faults = sum(map(len, plan.values()))
    result = ChaosResult(config)
    lab = Lab(settings)
    await lab.start(listeners=config.listeners, naive=config.naive)
    pending: set[asyncio.Task] = set()
    try:
        assert lab.publisher is not None and lab.supervisor is not None
        supervisor = lab.supervisor
        await wait_listeners_ready(lab)

        async def restart_if_down(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            if not supervisor.get(name).alive:
                await lab.control("restart", name)

        async def resume_if_paused(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            entry = supervisor.get(name)
            if entry.alive and entry.state == "paused":
                await lab.control("resume", name)

        def running_names() -> list[str]:
            return sorted(e.name for e in supervisor.listeners.values() if e.alive and e.state == "running")

        def schedule(undo: Awaitable[None]) -> None:
            task = asyncio.ensure_future(undo)
            pending.add(task)
            task.add_done_callback(pending.discard)

        started = time.monotonic()
        last_report = 0.0
        requests = random_requests(rng, user_names(config.users), config.events)
        for index, (kind, user, cents) in enumerate(requests):
            await lab.publisher.record(kind, user, cents)
            for fault in plan.get(index, []):
                if fault == "server-restart":
                    await lab.restart_server()
                    result.faults.append(f"{index}: server restart")
                    continue
                # Every listener may be down at this moment; the next restart is at most a second away.
                await wait_until(lambda: bool(running_names()), 30, "a running listener to inject a fault into")
                name = rng.choice(running_names())
                if fault == "kill":
                    await lab.control("kill", name)
                    schedule(restart_if_down(name, rng.uniform(0.1, 1.0)))
                else:
                    await lab.control("pause", name)
                    schedule(resume_if_paused(name, settings.ack_wait_s * rng.uniform(1.2, 2.0)))
                result.faults.append(f"{index}: {fault} {name}")
            if progress is not None and time.monotonic() - last_report > 0.5:
                last_report = time.monotonic()
                progress(f"published {index + 1}/{config.events}, faults {len(result.faults)}/{faults}")
        result.publish_s = time.monotonic() - started
        if pending:
            await asyncio.gather(*pending)
        for entry in list(supervisor.listeners.values()):
            if entry.state == "paused":
                await lab.control("resume", entry.name)
            elif not entry.alive:
                await lab.control("restart", entry.name)
        if progress is not None:
            progress(f"published {config.events}/{config.events}; draining")
        drain_started = time.monotonic()
        await wait_drained(lab, timeout=settings.ack_wait_s * 20 + config.events / 50)
        result.drain_s = time.monotonic() - drain_started
        result.report = await lab.check()
        result.redeliveries = lab.counts.total("redelivered", mode="guarded")
        return result
    finally:
        for task in pending:
            task.cancel()
        await lab.stop()
