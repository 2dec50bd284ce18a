"""The embedded cluster: three (or five) nats-servers on loopback, routed to each other, JetStream on.

Each node is its own process with its own store (`<data>/nats-cluster/n1`...) and log
(`logs/nats-n1.log`). Their route ports are picked once, free, before the first start, because every
node must name the others in its config; client and route ports are then kept for good, so a node
restarts where the others and the clients look for it. The lab's URL is every node's, comma-joined:
clients connect with all of them and move to another node when theirs goes.

A node is broken on purpose through its own process, by pid: SIGKILL, SIGSTOP/SIGCONT, SIGUSR2 (lame
duck: it hands its leaderships to the others, stops taking clients and exits) and restart.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dashboard.lab.natsserver import DEFAULT_SYNC, ClusterRole, EmbeddedServer, PortInUse, ServerError
from publisher.jetstream import connect

CLUSTER_NAME = "natslab"
# JetStream needs a majority of its nodes for every decision, so a cluster has an odd size.
CLUSTER_SIZES = (3, 5)
# Attempts at a first start whose route ports another program took between the pick and the bind.
PORT_ATTEMPTS = 3
# How long a new cluster may take to elect its meta leader, so that JetStream answers.
JETSTREAM_READY_S = 30.0

NODE_ACTIONS = ("kill", "pause", "resume", "lame-duck", "restart")
# The actions that signal a running node: the signal, the states it may be in, the state it is left
# in, and what was done in words.
SIGNALS = {
    "kill": (signal.SIGKILL, ("running", "paused", "lame duck"), "killed", "killed (SIGKILL)"),
    "pause": (signal.SIGSTOP, ("running", "lame duck"), "paused", "paused (SIGSTOP)"),
    "resume": (signal.SIGCONT, ("paused",), "running", "resumed (SIGCONT)"),
    "lame-duck": (signal.SIGUSR2, ("running",), "lame duck", "in lame duck mode (SIGUSR2)"),
}
RESTART_WORDS = "restarting on its ports and store"


def action_words(action: str) -> str:
    """What `action` does to a node, after its name: `killed (SIGKILL)`."""
    return SIGNALS[action][3] if action in SIGNALS else RESTART_WORDS
# What a node's state means, for the dashboard's help.
NODE_STATES = {
    "starting": "natslab is starting it for the first time",
    "running": "the node's process runs and takes part in the cluster",
    "paused": "SIGSTOP: the process is frozen; the others stop hearing from it and elect around it",
    "killed": "SIGKILL: the process is gone at once, without handing anything over",
    "lame duck": "SIGUSR2: it hands its leaderships over, stops taking clients, then exits",
    "stopped": "it left after its lame duck period, or was stopped by natslab",
    "exited": "the process ended by itself: see its log (logs/nats-NODE.log)",
    "restarting": "natslab is starting it again on the same ports and store",
}


def node_name(index: int) -> str:
    return f"n{index + 1}"


def free_ports(count: int) -> list[int]:
    """Loopback ports free at this moment, all different (held together while they are picked)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


@dataclass(frozen=True, slots=True)
class NodeProcess:
    """A node as natslab's processes see it, at one moment."""

    name: str
    state: str
    pid: int | None
    port: int | None
    exit_code: int | None = None


class EmbeddedCluster:
    """Nodes started, stopped and broken together or one at a time; the same surface as one
    `EmbeddedServer` where the lab treats them alike (`url`, `start`, `stop`, `restart`)."""

    def __init__(
        self, store_root: Path, logs_dir: Path, size: int = 3, sync: str = DEFAULT_SYNC, binary: Path | None = None
    ) -> None:
        if size not in CLUSTER_SIZES:
            raise ServerError(f"a cluster has {' or '.join(map(str, CLUSTER_SIZES))} nodes, not {size}")
        self.store_root = store_root
        self.logs_dir = logs_dir
        self.size = size
        self.sync = sync
        self.binary = binary
        self.nodes: dict[str, EmbeddedServer] = {}
        self.states: dict[str, str] = {node_name(i): "stopped" for i in range(size)}
        self.exit_codes: dict[str, int | None] = {}
        # Called at every change of a node's state (the lab's watch passes it on to the dashboards).
        self.on_state: Callable[[], None] | None = None

    def _set(self, name: str, state: str) -> None:
        self.states[name] = state
        if self.on_state is not None:
            self.on_state()

    # -- what the lab reads as it would of one server ---------------------------------------------------

    @property
    def url(self) -> str:
        if not self.nodes:
            raise ServerError("the cluster has not been started")
        return ",".join(node.url for node in self.nodes.values())

    @property
    def log_file(self) -> Path:
        """Where the nodes' logs are (one file each)."""
        return self.logs_dir

    @property
    def version(self) -> tuple[int, int, int] | None:
        return next((node.version for node in self.nodes.values() if node.version), None)

    @property
    def monitor_url(self) -> str | None:
        return next((node.monitor_url for node in self.nodes.values() if node.monitor_url), None)

    @property
    def pid(self) -> int | None:
        return next((node.pid for node in self.nodes.values() if node.pid), None)

    @property
    def running(self) -> bool:
        return any(node.running for node in self.nodes.values())

    @property
    def exit_code(self) -> int | None:
        """An exit code once every node ended by itself (nothing is left to wait for); None otherwise."""
        if self.nodes and all(state == "exited" for state in self.states.values()):
            return next(iter(self.exit_codes.values()), None)
        return None

    def processes(self) -> tuple[NodeProcess, ...]:
        return tuple(
            NodeProcess(name, self.states[name], node.pid, node.port, self.exit_codes.get(name))
            for name, node in self.nodes.items()
        )

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Start every node that is not running; the first start picks the route ports."""
        for attempt in range(PORT_ATTEMPTS):
            if not self.nodes:
                self._create(free_ports(self.size))
            try:
                await asyncio.gather(*(self._start_node(name) for name in self.nodes))
                return self.url
            except PortInUse:
                fresh = all(node.port is None or not node.running for node in self.nodes.values())
                await self.stop()
                if attempt == PORT_ATTEMPTS - 1 or not fresh:
                    raise
                self.nodes.clear()  # taken between the pick and the bind: pick again
        raise AssertionError("unreachable")

    def _create(self, route_ports: list[int]) -> None:
        for index, port in enumerate(route_ports):
            name = node_name(index)
            role = ClusterRole(name, CLUSTER_NAME, port, tuple(route_ports))
            self.nodes[name] = EmbeddedServer(
                self.store_root / name, self.logs_dir / f"nats-{name}.log", sync=self.sync, binary=self.binary, role=role
            )

    async def wait_for_jetstream(self, timeout: float = JETSTREAM_READY_S) -> None:
        """Until the new cluster has elected its meta leader and JetStream answers (a second or so
        after the nodes are up), so whoever is given the URLs can declare a stream at once."""
        deadline = time.monotonic() + timeout
        nc = await connect(self.url, "natslab-cluster-ready", first_connect_timeout=max(1.0, timeout))
        try:
            while True:
                try:
                    await nc.jetstream(timeout=1.0).account_info()
                    return
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise ServerError(f"the cluster's JetStream did not answer within {timeout:g} s: {exc!r}") from exc
                    await asyncio.sleep(0.1)
        finally:
            await nc.close()

    async def _start_node(self, name: str) -> None:
        node = self.nodes[name]
        if node.running:
            return
        self._set(name, "restarting" if node.port else "starting")
        self.exit_codes.pop(name, None)
        try:
            await node.start()
        except BaseException:
            self._set(name, "stopped")
            raise
        self._set(name, "running")

    async def stop(self) -> None:
        await asyncio.gather(*(self._stop_node(name) for name in self.nodes))

    async def _stop_node(self, name: str) -> None:
        await self.nodes[name].stop()
        self._set(name, "stopped")

    async def restart(self) -> str:
        await self.stop()
        return await self.start()

    # -- breaking one node -----------------------------------------------------------------------------

    def node(self, name: str) -> EmbeddedServer:
        try:
            return self.nodes[name]
        except KeyError:
            raise ServerError(f"no node named {name!r}; the nodes are {', '.join(self.nodes)}") from None

    async def control(self, action: str, name: str) -> str:
        """Do `action` (NODE_ACTIONS) to node `name`; what was done, in words."""
        node = self.node(name)
        state = self.states[name]
        if action == "restart":
            await self._stop_node(name)
            await self._start_node(name)
            return f"node {name} restarted (pid {node.pid}, port {node.port})"
        if not node.running:
            raise ServerError(f"node {name} is {state}: only a restart (R) brings it back")
        if action not in SIGNALS:
            raise ServerError(f"unknown node action {action!r}; one of {', '.join(NODE_ACTIONS)}")
        sig, allowed, after, done = SIGNALS[action]
        if state not in allowed:
            raise ServerError(f"node {name} is {state}: {action} needs it {' or '.join(allowed)}")
        node.signal(sig)
        if action == "kill":
            node.forget()
        self._set(name, after)
        return f"node {name} {done}"

    def poll(self) -> list[str]:
        """Nodes whose process ended since the last poll without natslab ending it: a lame duck that
        left is `stopped`, any other `exited` (with its code). Returns their names."""
        ended = []
        for name, node in self.nodes.items():
            code = node.exit_code
            if code is None or self.states[name] not in ("running", "paused", "lame duck"):
                continue
            self._set(name, "stopped" if self.states[name] == "lame duck" else "exited")
            self.exit_codes[name] = code
            node.forget()
            ended.append(name)
        return ended
