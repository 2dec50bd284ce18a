"""Chaos runs: publish while killing, pausing and resuming listeners and restarting the server.

In the style of Jepsen's queue tests: faults land at seeded random points of the publishing run, the
system drains, and the checker counts lost, duplicated and reordered events. The guarded group must
come out clean; the naive group, hit by the same faults, is measured and reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dashboard.lab.checker import format_report
from dashboard.lab.lab import Lab, wait_until
from dashboard.lab.scenarios import wait_listeners_ready
from dashboard.lab.settings import Settings, UsageError
from dashboard.commands.listener import seconds, setup_file_logging, whole_number


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
    report: Any = None

    def summary(self) -> str:
        c, g = self.config, self.report.guarded
        return (
            f"events={c.events} users={c.users} kills={c.kills} pauses={c.pauses} server_restarts={c.server_restarts}"
            f" redeliveries={self.redeliveries} lost={g.lost} duplicated={g.duplicated} out_of_order={g.out_of_order}"
            f" poison={self.report.poison_in_stream} drain_s={self.drain_s:.1f}"
        )

    def naive_summary(self) -> str:
        n = self.report.naive
        if n is None:
            return "naive: not run"
        return f"naive: lost={n.lost} duplicated={n.duplicated} out_of_order={n.out_of_order} wrong_balance={n.wrong_balance}"

    @property
    def ok(self) -> bool:
        return bool(self.report.ok and self.report.guarded.clean)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "redeliveries": self.redeliveries,
            "drainSeconds": round(self.drain_s, 3),
            "publishSeconds": round(self.publish_s, 3),
            "faults": self.faults,
            "check": self.report.to_json(),
            "ok": self.ok,
        }


def fault_plan(config: ChaosConfig, rng: random.Random) -> dict[int, list[str]]:
    """Event index -> faults to inject right after publishing it; seeded, so a run can be repeated."""
    kinds = ["kill"] * config.kills + ["pause"] * config.pauses + ["server-restart"] * config.server_restarts
    plan: dict[int, list[str]] = {}
    for kind in kinds:
        plan.setdefault(rng.randrange(max(1, config.events)), []).append(kind)
    return plan


async def run_chaos(config: ChaosConfig, settings: Settings, progress=None) -> ChaosResult:
    rng = random.Random(config.seed)
    plan = fault_plan(config, rng)
    users = [f"user{i + 1}" for i in range(config.users)]
    result = ChaosResult(config)
    lab = Lab(settings)
    await lab.start(listeners=config.listeners, naive=config.naive)
    pending: set[asyncio.Task] = set()
    try:
        assert lab.publisher is not None and lab.supervisor is not None
        supervisor = lab.supervisor
        await wait_listeners_ready(lab)

        async def later(delay: float, action, *args) -> None:
            await asyncio.sleep(delay)
            action(*args)

        def restart_if_down(name: str) -> None:
            if not supervisor.get(name).alive:
                supervisor.restart(name)

        def resume_if_paused(name: str) -> None:
            entry = supervisor.get(name)
            if entry.alive and entry.state == "paused":
                supervisor.resume(name)

        def running_names() -> list[str]:
            return sorted(e.name for e in supervisor.listeners.values() if e.alive and e.state == "running")

        def schedule(delay: float, action, *args) -> None:
            task = asyncio.create_task(later(delay, action, *args))
            pending.add(task)
            task.add_done_callback(pending.discard)

        started = time.monotonic()
        last_report = 0.0
        for index in range(config.events):
            kind = "deposit" if rng.random() < 0.6 else "withdraw"
            await lab.publisher.record(kind, rng.choice(users), rng.randint(1, 200) * 100)
            for fault in plan.get(index, []):
                if fault == "server-restart":
                    await lab.restart_server()
                    result.faults.append(f"{index}: server restart")
                else:
                    # Every listener may be down at this moment; the next restart is at most a second away.
                    await wait_until(lambda: bool(running_names()), 30, "a running listener to inject a fault into")
                    name = rng.choice(running_names())
                    if fault == "kill":
                        supervisor.kill(name)
                        schedule(rng.uniform(0.1, 1.0), restart_if_down, name)
                    else:
                        supervisor.pause(name)
                        schedule(settings.ack_wait_s * rng.uniform(1.2, 2.0), resume_if_paused, name)
                    result.faults.append(f"{index}: {fault} {name}")
            if progress is not None and time.monotonic() - last_report > 0.5:
                last_report = time.monotonic()
                progress(f"published {index + 1}/{config.events}, faults {len(result.faults)}/{sum(map(len, plan.values()))}")
        result.publish_s = time.monotonic() - started
        if pending:
            await asyncio.gather(*pending)
        for entry in list(supervisor.listeners.values()):
            if entry.state == "paused":
                supervisor.resume(entry.name)
            elif not entry.alive:
                supervisor.restart(entry.name)
        if progress is not None:
            progress(f"published {config.events}/{config.events}; draining")
        drain_started = time.monotonic()
        await lab.wait_drained(timeout=settings.ack_wait_s * 20 + config.events / 50)
        result.drain_s = time.monotonic() - drain_started
        result.report = await lab.check()
        result.redeliveries = lab.total_counter("redelivered", "guarded")
        return result
    finally:
        for task in pending:
            task.cancel()
        await lab.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ChaosConfig()
    parser.add_argument("--events", type=whole_number, default=defaults.events, help=f"events to publish (default {defaults.events})")
    parser.add_argument("--users", type=whole_number, default=defaults.users, help=f"users (default {defaults.users})")
    parser.add_argument("--kills", type=whole_number, default=defaults.kills, help="listener SIGKILLs, each followed by a restart")
    parser.add_argument("--pauses", type=whole_number, default=defaults.pauses, help="listener SIGSTOPs past the ack wait")
    parser.add_argument("--server-restarts", type=whole_number, default=defaults.server_restarts, help="nats-server restarts")
    parser.add_argument("--listeners", type=whole_number, default=defaults.listeners, help="guarded listeners")
    parser.add_argument("--seed", type=int, default=None, help="random seed (the same seed gives the same plan)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--ack-wait", type=seconds(0.5, 60), default=2.0, help="ack wait in seconds (default 2)")


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    if args.events < 1 or args.users < 1 or args.listeners < 1:
        raise UsageError("--events, --users and --listeners must be at least 1")
    config = ChaosConfig(
        events=args.events,
        users=args.users,
        kills=args.kills,
        pauses=args.pauses,
        server_restarts=args.server_restarts,
        seed=args.seed,
        listeners=args.listeners,
    )
    data_dir = Path(tempfile.mkdtemp(prefix="natslab-chaos-"))
    settings.data_dir, settings.nats_url, settings.ack_wait_s = data_dir, None, args.ack_wait
    setup_file_logging(data_dir, "chaos")

    def progress(line: str) -> None:
        sys.stderr.write(f"\r{line:<70}")
        sys.stderr.flush()

    try:
        result = asyncio.run(run_chaos(config, settings, progress))
    except BaseException:
        sys.stderr.write(f"\nnatslab chaos: failed; its data and logs are in {data_dir}\n")
        raise
    sys.stderr.write("\n")
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_report(result.report) if config.users <= 30 else result.report.verdict_line())
        print(result.naive_summary())
        print(result.summary())
    if result.ok:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"data and logs kept in {data_dir}", file=sys.stderr)
    return 0 if result.ok else 1
