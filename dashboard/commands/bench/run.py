"""One benchmark run: a lab on a fresh embedded server, the phases in order, then the check."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nats.js.client import JetStreamContext

from dashboard.commands.bench.dashboard_cost import dashboard_cost
from dashboard.commands.bench.failover import failover
from dashboard.commands.bench.figures import (
    AccountsReader,
    BenchConfig,
    BenchResult,
    Deliveries,
    Progress,
    machine_info,
    parse_iso,
)
from dashboard.commands.bench.partitioned import compare
from dashboard.commands.bench.phases import durability, latencies, out_of_order, recovery
from dashboard.commands.bench.report import targets
from dashboard.commands.bench.throughput import rounds, scaling
from dashboard.lab.lab import Lab
from dashboard.lab.probes import wait_drained, wait_listeners_ready
from dashboard.lab.settings import Settings
from dashboard.lab.traffic import Request
from listeners.accounts import ACCOUNTS_DB, Mode
from publisher.service import Publisher

# Requests offered at once to the transactions service by `Bench.offer`; overlapping calls share a commit.
OFFER_WINDOW = 1_000


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
            # No partitioned group unless asked for: its sourced stream copies every event (a second
            # fsync per event with sync always), and its listeners would consume beside the guarded ones.
            partitioned=config.listeners if config.partitioned else 0,
            partitions=config.partitions,
            defer="nak",
            batch=config.batch,
            sync=config.sync,
            cluster=config.cluster,
        )
        self.lab = Lab(self.settings)
        self.deliveries = Deliveries()
        self.reader = AccountsReader(data_dir / ACCOUNTS_DB)
        self.result = BenchResult(config, machine_info())
        self._js: JetStreamContext | None = None

    def jetstream(self) -> JetStreamContext:
        """The run's one JetStream context: each new one that publishes keeps a PubAck inbox of its own."""
        if self._js is None:
            assert self.lab.nc is not None
            self._js = self.lab.nc.jetstream()
        return self._js

    @property
    def publisher(self) -> Publisher:
        assert self.lab.publisher is not None
        return self.lab.publisher

    async def run(self) -> BenchResult:
        started = time.monotonic()
        what = f"a cluster of {self.config.cluster} embedded nats-servers" if self.config.cluster else "an embedded nats-server"
        self.progress(f"starting {what} in {self.data_dir}")
        # `--partitioned` measures both groups on their own listeners from the start; the other
        # phases start the guarded listeners they need.
        await self.lab.start(listeners=self.config.listeners if self.config.partitioned else 0, naive=0)
        self.lab.on_status.append(self.deliveries.on_status)
        try:
            phases: list[tuple[str, str, Callable[[], Awaitable[dict[str, Any]]]]] = [
                ("durability", "publishing with each sync mode", lambda: durability(self)),
                ("nak", "out-of-order resolution, --defer nak", lambda: out_of_order(self, "nak")),
                ("recovery", "recovery after SIGKILL", lambda: recovery(self)),
                ("ackWait", "out-of-order resolution, --defer ack-wait", lambda: out_of_order(self, "ack-wait")),
                # Before the long phases: a dashboard started on their 300,000 events would first
                # read all of them, and measure that instead of what it costs while events flow.
                ("dashboard", "the dashboard's cost", lambda: dashboard_cost(self)),
                ("throughput", "raw transport and guarded pipeline, interleaved", lambda: rounds(self)),
                ("scaling", "the pipeline with other listener and user counts", lambda: scaling(self)),
                ("latency", "publish-to-applied latency", lambda: latencies(self)),
            ]
            if self.config.failover:
                phases = [("failover", "the stream leader's failover", lambda: failover(self))]
            modes: tuple[Mode, ...] = ("guarded",)
            if self.config.partitioned:
                phases = [("partitioned", "guarded and partitioned groups, the same events", lambda: compare(self))]
                modes = ("guarded", "partitioned")
            for index, (key, title, phase) in enumerate(phases, 1):
                self.progress(f"[{index}/{len(phases) + 1}] {title}")
                phase_started = time.monotonic()
                self.result.phases[key] = await phase()
                self.result.phases[key]["phaseSeconds"] = round(time.monotonic() - phase_started, 1)
            self.progress(f"[{len(phases) + 1}/{len(phases) + 1}] checking the databases")
            phase_started = time.monotonic()
            await wait_drained(self.lab, timeout=self.config.ack_wait_s * 4 + 60, modes=modes)
            self.result.check = await self.lab.check()
            self.result.check_seconds = time.monotonic() - phase_started
            self.progress(f"    {self.result.check.verdict_line()} ({self.result.check_seconds:.1f} s)")
        finally:
            await self.lab.stop()
        self.result.seconds = time.monotonic() - started
        self.result.machine = machine_info()
        self.result.targets = [] if self.config.failover or self.config.partitioned else targets(self.result)
        return self.result

    async def ensure_listeners(self, defer: str, count: int | None = None) -> None:
        """`count` (by default L) guarded listeners running with `defer`, each fetching."""
        supervisor = self.lab.supervisor
        assert supervisor is not None
        count = self.config.listeners if count is None else count
        if supervisor.defer != defer or len([e for e in supervisor.members("guarded") if e.alive]) != count:
            await supervisor.stop_all()
            supervisor.defer = defer
            names = [chr(ord("A") + index) for index in range(count)]
            for name in names:
                supervisor.spawn("guarded", name)
        await wait_listeners_ready(self.lab, timeout=30)

    async def offer(self, requests: list[Request]) -> None:
        """Write `requests` through the transactions service as fast as it takes them.

        Many callers at once, as a busy service would have: overlapping `record` calls share a
        commit, so this measures the outbox with group commit, not one fsync per event.
        """
        for start in range(0, len(requests), OFFER_WINDOW):
            await asyncio.gather(
                *(self.publisher.submit(kind, user, cents) for kind, user, cents in requests[start : start + OFFER_WINDOW])
            )

    async def offer_at_rate(self, requests: list[Request], rate: float) -> dict[str, tuple[float, float]]:
        """Open loop: each request is made at its time whether or not earlier ones are done.

        Returns event id -> (when the request was due, the event's `createdAt`), both wall clock. The
        due time, not the moment the loop got round to it: a request made late because the loop was
        busy was late for its caller too (no coordinated omission).
        """
        # Futures, not a task per request: the offer loop runs in the publisher's process and should
        # cost it as little as a request arriving from elsewhere would.
        futures = []
        started, wall = time.monotonic(), time.time()
        for index, (kind, user, cents) in enumerate(requests):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            futures.append(self.publisher.submit(kind, user, cents))
        events = await asyncio.gather(*futures)
        return {event.id: (wall + index / rate, parse_iso(event.created_at)) for index, event in enumerate(events)}

    async def profile(self, pids: dict[str, int]) -> list[asyncio.subprocess.Process]:
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

    async def stop_profile(self, profilers: list[asyncio.subprocess.Process]) -> None:
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
