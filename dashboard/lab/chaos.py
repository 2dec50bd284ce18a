"""Chaos runs: publish while killing, pausing, crashing and resuming listeners and restarting the server.

In the style of Jepsen's queue tests: faults land at seeded random points of the publishing run, the
system drains, and the checker counts lost, duplicated and reordered events. The listener faults hit
any running listener of any group. The guarded group and the partitioned group must come out clean;
the naive group, hit by the same faults, is measured and reported. For the partitioned group the run
also counts how often its number guard, a safety net there, had to act.

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
from listeners.groups import GROUPS
from listeners.partitions import PARTITIONED_STREAM, partition_states
from listeners.status import Counts
from publisher.events import STREAM_NAME

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
# How long a listener told to crash has to commit something (and die) before it is left armed.
CRASH_WAIT_S = 10.0


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
    partitioned: int = 2
    # Listeners told to crash right after their next commit, before acknowledging (restarted after).
    crashes: int = 0
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
    # The partitioned group's listeners' counters, summed over every process.
    partitioned_counts: Counts = field(default_factory=Counts)
    # Each time the partitioned stream, stalled behind its source on a cluster, was nudged (`sourcing`).
    sourcing_nudges: list[str] = field(default_factory=list)

    def summary(self) -> str:
        assert self.report is not None
        c, g = self.config, self.report.guarded
        nodes = f" cluster={c.cluster} node_kills={c.node_kills} node_pauses={c.node_pauses}" if c.cluster else ""
        return (
            f"events={c.events} users={c.users} kills={c.kills} pauses={c.pauses} crashes={c.crashes}"
            f" server_restarts={c.server_restarts}{nodes} redeliveries={self.redeliveries} lost={g.lost}"
            f" duplicated={g.duplicated} out_of_order={g.out_of_order} conflicts={self.report.conflicts}"
            f" parked={g.parked} poison={self.report.poison_in_stream} drain_s={self.drain_s:.1f}"
            f" | {self.partitioned_summary()}"
        )

    def partitioned_summary(self) -> str:
        """The partitioned group: what the check found, its redeliveries, and how often its guard acted."""
        assert self.report is not None
        p, counts = self.report.partitioned, self.partitioned_counts
        if p is None:
            return f"partitioned: {'not run' if not self.config.partitioned else 'no database'}"
        return (
            f"partitioned: listeners={self.config.partitioned} lost={p.lost} duplicated={p.duplicated}"
            f" out_of_order={p.out_of_order} wrong_balance={p.wrong_balance} redeliveries={counts.redelivered}"
            f" guard_acted={self.guard_acted()} (duplicates={counts.duplicates} deferred={counts.deferred}"
            f" conflicts={counts.conflicts} parked={counts.parked})"
            + (f" sourcing_nudges={len(self.sourcing_nudges)}" if self.sourcing_nudges else "")
        )

    def guard_acted(self) -> int:
        """How often the partitioned group's number guard kept an event from being applied as it came."""
        counts = self.partitioned_counts
        return counts.duplicates + counts.deferred + counts.conflicts + counts.parked

    def naive_summary(self) -> str:
        assert self.report is not None
        n = self.report.naive
        if n is None:
            return "naive: not run"
        return f"naive: lost={n.lost} duplicated={n.duplicated} out_of_order={n.out_of_order} wrong_balance={n.wrong_balance}"

    @property
    def ok(self) -> bool:
        """The check passed, and the guarded and partitioned groups are clean (the latter judged when it ran)."""
        report = self.report
        if report is None or not report.ok or not report.guarded.clean:
            return False
        if self.config.partitioned:
            return report.partitioned is not None and report.partitioned.clean
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "redeliveries": self.redeliveries,
            "drainSeconds": round(self.drain_s, 3),
            "publishSeconds": round(self.publish_s, 3),
            "faults": self.faults,
            "partitioned": {
                "redeliveries": self.partitioned_counts.redelivered,
                "guardActed": self.guard_acted(),
                "counters": self.partitioned_counts.to_json(),
                "sourcingNudges": self.sourcing_nudges,
            },
            "check": None if self.report is None else self.report.to_json(),
            "ok": self.ok,
        }


def fault_plan(config: ChaosConfig, rng: random.Random) -> dict[int, list[str]]:
    """Event index -> faults to inject right after publishing it; seeded, so a run can be repeated."""
    kinds = ["kill"] * config.kills + ["pause"] * config.pauses + ["server-restart"] * config.server_restarts
    kinds += ["node-kill"] * config.node_kills + ["node-pause"] * config.node_pauses
    kinds += ["crash"] * config.crashes  # last: the other faults of a seed land where they did before
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


async def _disarm(lab: Lab, name: str, pid: int | None) -> None:
    """Tell listener process `pid`, armed to crash, to be normal again, if it still runs (a process
    started since is not armed); one that crashed meanwhile is restarted."""
    assert lab.supervisor is not None
    entry = lab.supervisor.get(name)
    if entry.pid != pid:
        return
    if entry.alive:
        try:
            await lab.control("normal", name)
            return
        except LabError:
            if lab.supervisor.get(name).alive:
                raise
    await lab.control("restart", name)


async def _drain(lab: Lab, timeout: float, result: ChaosResult) -> None:
    """Wait for every group to drain; on a cluster, the lab's node watch nudges a partitioned stream
    that stopped sourcing (`SourcingWatch`), and each nudge is kept in the result."""
    try:
        await wait_drained(lab, timeout=timeout)
    except TimeoutError:
        raise LabError(f"the listeners did not drain within {timeout:g} s: {await _backlogs(lab)}") from None
    finally:
        if lab.node_watch is not None:
            result.sourcing_nudges = list(lab.node_watch.sourcing_nudges)


async def _backlogs(lab: Lab) -> str:
    """What each group has left, in words, for a drain that timed out."""
    assert lab.nc is not None
    said = []
    try:
        for group in GROUPS:
            info = await lab.consumer_info(group)
            said.append(f"{group.mode}: {info.num_pending} pending, {info.num_ack_pending} unacknowledged")
        if lab.supervisor is None or not lab.supervisor.members("partitioned"):
            return "; ".join(said)
        js = lab.nc.jetstream()
        source, copy = await js.stream_info(STREAM_NAME), await js.stream_info(PARTITIONED_STREAM)
        lags = ", ".join(f"p{state.partition} {state.lag}" for state in await partition_states(lab.nc, lab.settings.partitions))
        said.append(f"partitioned: {copy.state.messages} of {source.state.messages} events sourced, lag {lags}")
    except Exception as exc:  # what could be read is said
        said.append(f"({exc!r})")
    return "; ".join(said)


async def run_chaos(config: ChaosConfig, settings: Settings, progress: Callable[[str], None] | None = None) -> ChaosResult:
    if (config.node_kills or config.node_pauses) and not config.cluster:
        raise LabError("node kills and pauses break nodes of a cluster: run chaos with a cluster (--cluster 3)")
    settings = replace(settings, cluster=config.cluster)
    rng = random.Random(config.seed)
    plan = fault_plan(config, rng)
    faults = sum(map(len, plan.values()))
    result = ChaosResult(config)
    lab = Lab(settings)
    await lab.start(listeners=config.listeners, naive=config.naive, partitioned=config.partitioned)
    nodes = NodeFaults(lab, rng)
    pending: set[asyncio.Task] = set()
    published = asyncio.Event()
    armed: dict[str, int | None] = {}  # listeners told to crash: the pid of the process told
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

        async def restart_after_crash(name: str, delay: float) -> None:
            def crashed_or_done() -> bool:
                return not supervisor.get(name).alive or published.is_set()

            try:
                await wait_until(crashed_or_done, CRASH_WAIT_S, f"{name} to crash")
            except TimeoutError:
                pass
            if supervisor.get(name).alive:
                return  # it committed nothing meanwhile (a standby): it is disarmed before the drain
            await restart_if_down(name, delay)

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
                elif fault == "crash":  # it dies at its next commit, and is restarted a moment after
                    await lab.control("crash", name)
                    armed[name] = supervisor.get(name).pid
                    schedule(restart_after_crash(name, rng.uniform(0.1, 1.0)))
                else:
                    await lab.control("pause", name)
                    schedule(resume_if_paused(name, settings.ack_wait_s * rng.uniform(1.2, 2.0)))
                result.faults.append(f"{index}: {fault} {name}")
            if progress is not None and time.monotonic() - last_report > 0.5:
                last_report = time.monotonic()
                progress(f"published {index + 1}/{config.events}, faults {len(result.faults)}/{faults}")
        result.publish_s = time.monotonic() - started
        published.set()
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
        for name, pid in sorted(armed.items()):  # a crash still armed would go off while draining
            await _disarm(lab, name, pid)
        if progress is not None:
            progress(f"published {config.events}/{config.events}; draining")
        drain_started = time.monotonic()
        await _drain(lab, settings.ack_wait_s * 20 + config.events / 50, result)
        result.drain_s = time.monotonic() - drain_started
        result.report = await lab.check()
        result.redeliveries = lab.counts.total("redelivered", mode="guarded")
        result.partitioned_counts = lab.counts.totals(mode="partitioned")
        return result
    finally:
        for task in pending:
            task.cancel()
        await nodes.stop()
        await lab.stop()
