"""Chaos runs: publish while killing, pausing and resuming listeners and restarting the server.

In the style of Jepsen's queue tests: faults land at seeded random points of the publishing run, the
system drains, and the checker counts lost, duplicated and reordered events. The guarded group must
come out clean; the naive group, hit by the same faults, is measured and reported.

On an embedded cluster (`cluster`), nodes are broken too: SIGKILLed and started again, or SIGSTOPped
past the election timeout and resumed, half the time the node that leads the stream. One node at a
time: a cluster of three keeps its majority with one node down, not with two, so each node fault
first waits until the last one is undone and the cluster is whole again (`NodeFaults`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dashboard.lab.checker import CheckReport
from dashboard.lab.cluster import EmbeddedCluster
from dashboard.lab.lab import Lab
from dashboard.lab.probes import stream_leader, wait_cluster_whole, wait_drained, wait_listeners_ready
from dashboard.lab.settings import Settings
from dashboard.lab.traffic import random_requests, user_names
from dashboard.lab.waits import LabError, cancel, wait_until

log = logging.getLogger(__name__)

NODE_FAULTS = ("node-kill", "node-pause")
# A killed node is started again after this many seconds (seeded).
NODE_RESTART_DELAY_S = (0.5, 3.0)
# A paused node is resumed after this many: past nats-server's longest election timeout (a follower
# waits 4 to 9 s for a silent leader), so the others always elect around a frozen leader.
NODE_PAUSE_S = (9.5, 12.0)
# How long a node fault's undoing may take to leave the cluster whole (node back, every asset led,
# every node current): an election, and a restarted node catching up.
NODE_RECOVERY_TIMEOUT_S = 60.0
# How often a node fault hits the stream's leader on purpose; otherwise any node (most lead something).
LEADER_SHARE = 0.5


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
    # Nodes of an embedded cluster (0: one server), and the node faults, which need one.
    cluster: int = 0
    node_kills: int = 0
    node_pauses: int = 0


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
        nodes = f" cluster={c.cluster} node_kills={c.node_kills} node_pauses={c.node_pauses}" if c.cluster else ""
        return (
            f"events={c.events} users={c.users} kills={c.kills} pauses={c.pauses} server_restarts={c.server_restarts}"
            f"{nodes} redeliveries={self.redeliveries} lost={g.lost} duplicated={g.duplicated} out_of_order={g.out_of_order}"
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
    kinds += ["node-kill"] * config.node_kills + ["node-pause"] * config.node_pauses
    plan: dict[int, list[str]] = {}
    for kind in kinds:
        plan.setdefault(rng.randrange(max(1, config.events)), []).append(kind)
    return plan


class NodeFaults:
    """Breaks the cluster's nodes one at a time: each fault first waits for the last one to be undone
    and the cluster to be whole again, so no more than one node is ever down."""

    def __init__(self, lab: Lab, rng: random.Random) -> None:
        self.lab = lab
        self.rng = rng
        self._undo: asyncio.Task | None = None

    async def settle(self) -> None:
        """The last node fault undone (its random delay run out) and the cluster whole again."""
        task, self._undo = self._undo, None
        if task is not None:
            await task
        await wait_cluster_whole(self.lab, NODE_RECOVERY_TIMEOUT_S)

    async def inject(self, fault: str) -> str:
        """Break one node (`node-kill` or `node-pause`), and schedule its undoing; what was done, in words."""
        await self.settle()
        name = await self._target()
        if fault == "node-kill":
            done = await self.lab.node_control("kill", name)
            delay = self.rng.uniform(*NODE_RESTART_DELAY_S)
            undo, then = "restart", f"restarted after {delay:.1f} s"
        else:
            done = await self.lab.node_control("pause", name)
            delay = self.rng.uniform(*NODE_PAUSE_S)
            undo, then = "resume", f"resumed after {delay:.1f} s"
        self._undo = asyncio.ensure_future(self._undo_later(undo, name, delay))
        log.info("chaos: %s; %s", done, then)
        return f"{done}; {then}"

    async def _target(self) -> str:
        """Seeded: the stream's leader LEADER_SHARE of the time (when one is known), else any node."""
        cluster = self.lab.server
        assert isinstance(cluster, EmbeddedCluster)
        if self.rng.random() < LEADER_SHARE:
            leader = await stream_leader(self.lab)
            if leader is not None:
                return leader
        return self.rng.choice(sorted(cluster.nodes))

    async def _undo_later(self, action: str, name: str, delay: float) -> None:
        await asyncio.sleep(delay)  # part of the plan: how long the node stays down
        cluster = self.lab.server
        assert isinstance(cluster, EmbeddedCluster)
        state = cluster.states[name]
        if (action == "restart" and state != "running") or (action == "resume" and state == "paused"):
            await self.lab.node_control(action, name)

    async def stop(self) -> None:
        task, self._undo = self._undo, None
        await cancel(task)


async def run_chaos(config: ChaosConfig, settings: Settings, progress: Callable[[str], None] | None = None) -> ChaosResult:
    if (config.node_kills or config.node_pauses) and not config.cluster:
        raise LabError("node kills and pauses break nodes of a cluster: run chaos with a cluster (--cluster 3)")
    settings = replace(settings, cluster=config.cluster)
    rng = random.Random(config.seed)
    plan = fault_plan(config, rng)
    faults = sum(map(len, plan.values()))
    result = ChaosResult(config)
    lab = Lab(settings)
    await lab.start(listeners=config.listeners, naive=config.naive)
    nodes = NodeFaults(lab, rng)
    pending: set[asyncio.Task] = set()
    try:
        assert lab.publisher is not None and lab.supervisor is not None
        supervisor = lab.supervisor
        await wait_listeners_ready(lab)
        if config.cluster:
            await nodes.settle()  # a new cluster may still be catching its followers up

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
                if fault in NODE_FAULTS or (fault == "server-restart" and config.cluster):
                    if progress is not None:
                        progress(f"published {index + 1}/{config.events}, faults {len(result.faults)}/{faults};"
                                 " waiting for the cluster to be whole")  # fmt: skip
                if fault in NODE_FAULTS:
                    result.faults.append(f"{index}: {await nodes.inject(fault)}")
                    continue
                if fault == "server-restart":
                    if config.cluster:
                        await nodes.settle()  # a node fault's undoing must not meet the whole cluster's restart
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
        if config.cluster:
            if progress is not None:
                progress(f"published {config.events}/{config.events}; waiting for the cluster to be whole")
            await nodes.settle()
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
        await nodes.stop()
        await lab.stop()
