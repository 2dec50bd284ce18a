"""What each node of the cluster does for the stream and the two queue groups' consumers.

Every replicated asset (the stream `ACCOUNT_EVENTS`, each group's durable consumer) is a RAFT group
of its own: one node leads it (takes its writes and answers its requests) and the others follow,
either current or lagging some entries of its log behind. JetStream says so in the asset's info; natslab
asks for the three infos at once, each with a short deadline: while an asset elects a new leader its
info does not come, and the asset is then shown as electing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.errors import NotFoundError

from dashboard.lab.cluster import EmbeddedCluster, NodeProcess
from dashboard.lab.natsserver import ServerError
from dashboard.lab.sourcing import SourcingWatch
from dashboard.lab.waits import LabError
from listeners.groups import GROUPS
from publisher.events import STREAM_NAME

# The assets a node can lead, as the dashboard names them: the stream, then each group's consumer.
ASSETS = ("stream", *(group.name for group in GROUPS))
INFO_TIMEOUT_S = 1.0
# How often the lab asks JetStream which node leads what.
NODES_INTERVAL_S = 1.0

log = logging.getLogger(__name__)

# A node's part in one asset (`NodeView.roles`).
LEADER = "leader"
CURRENT = "current"
OFFLINE = "offline"
UNKNOWN = ""  # the asset's info did not come (it elects), or the node is not among its peers


def peer_role(peer: api.PeerInfo) -> str:
    if peer.offline:
        return OFFLINE
    if peer.current:
        return CURRENT
    return f"lagging {peer.lag}" if peer.lag else "catching up"


def roles_in(cluster: api.ClusterInfo | None) -> dict[str, str]:
    """Node name -> its role in one asset, from the asset's cluster info."""
    if cluster is None:
        return {}
    roles = {peer.name: peer_role(peer) for peer in cluster.replicas or () if peer.name}
    if cluster.leader:
        roles[cluster.leader] = LEADER
    return roles


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node: its process, and its role in each asset (aligned with ASSETS)."""

    name: str
    state: str
    pid: int | None
    port: int | None
    roles: tuple[str, ...] = ()

    def leads(self) -> list[str]:
        return [asset for asset, role in zip(ASSETS, self.roles) if role == LEADER]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeView:
        return cls(
            str(data["name"]), str(data["state"]), data.get("pid"), data.get("port"), tuple(map(str, data.get("roles", ())))
        )


async def asset_roles(nc: NATS, timeout: float = INFO_TIMEOUT_S) -> list[dict[str, str] | None]:
    """Per asset (ASSETS order), node -> role; None for an asset whose info did not come in time."""
    js = nc.jetstream(timeout=timeout)
    requests = [js.stream_info(STREAM_NAME), *(js.consumer_info(STREAM_NAME, group.name) for group in GROUPS)]
    infos = await asyncio.gather(*requests, return_exceptions=True)
    return [None if isinstance(info, BaseException) else roles_in(info.cluster) for info in infos]


def node_views(processes: tuple[NodeProcess, ...], roles: list[dict[str, str] | None]) -> tuple[NodeView, ...]:
    """The nodes, each with its role in every asset. A node that is not running leads nothing,
    whatever the last info said (its followers have not noticed yet)."""
    views = []
    for process in processes:
        node_roles = []
        for asset in roles:
            role = UNKNOWN if asset is None else asset.get(process.name, UNKNOWN)
            if role == LEADER and process.state not in ("running", "lame duck"):
                role = UNKNOWN
            node_roles.append(role)
        views.append(NodeView(process.name, process.state, process.pid, process.port, tuple(node_roles)))
    return tuple(views)


async def lead_consumers(nc: NATS, node: str, groups: list[str], timeout: float = 5.0) -> None:
    """Ask these groups' consumers to hand their leadership to `node` (a stepdown with a preferred
    placement, nats-server 2.11+): the lab's way to put every asset on one node before it dies."""
    request = json.dumps({"placement": {"preferred": node}}).encode()
    for group in groups:
        reply = await nc.request(f"$JS.API.CONSUMER.LEADER.STEPDOWN.{STREAM_NAME}.{group}", request, timeout=timeout)
        answer = json.loads(reply.data)
        if not answer.get("success"):
            raise LabError(f"{group}'s consumer would not move to {node}: {answer.get('error')}")


def leadership_hint(action: str, led: list[str]) -> str:
    """What an action on a node means for what it led: `; it led stream: the others elect new leaders`."""
    if not led or action not in ("kill", "pause", "lame-duck"):
        return ""
    how = "it hands them over" if action == "lame-duck" else "the others elect new leaders"
    return f"; it led {', '.join(led)}: {how}"


def leader_of(views: tuple[NodeView, ...], index: int) -> str | None:
    """The node that leads asset ASSETS[index] in these views; None while none does."""
    return next((view.name for view in views if view.roles[index:index + 1] == (LEADER,)), None)


def leaderless(views: tuple[NodeView, ...]) -> list[str]:
    """The assets no running node leads: they are electing (or their info did not come)."""
    return [asset for index, asset in enumerate(ASSETS) if leader_of(views, index) is None]


class NodeWatch:
    """The cluster's nodes as the lab shows them: their processes (polled with the listeners) and
    their roles (asked of JetStream every NODES_INTERVAL_S); `changed` is called after each look."""

    def __init__(self, cluster: EmbeddedCluster, changed: Callable[[], None]) -> None:
        self.cluster = cluster
        self.changed = changed
        self.views: tuple[NodeView, ...] = node_views(cluster.processes(), [])
        self._roles: list[dict[str, str] | None] = []
        self.sourcing_nudges: list[str] = []  # each stall of the partitioned stream's sourcing, and what was done
        cluster.on_state = self._state_changed

    def _state_changed(self) -> None:
        self.refresh()
        self.changed()

    def refresh(self) -> None:
        self.views = node_views(self.cluster.processes(), self._roles)

    def poll(self) -> None:
        """Take note of nodes that ended by themselves (a lame duck that left, a crash)."""
        if self.cluster.poll():
            self.refresh()

    async def run(self, connection: Callable[[], NATS | None]) -> None:
        sourcing: SourcingWatch | None = None
        while True:
            try:
                nc = connection()
                if nc is not None and nc.is_connected:
                    if sourcing is None or sourcing.nc is not nc:
                        sourcing = SourcingWatch(nc)
                    await self._nudge(sourcing)
                    roles = await asset_roles(nc)
                    # None at all: this connection's own node is frozen, not every asset electing at once
                    # (a dead leader of all three leads nothing in the views anyway).
                    if any(asset is not None for asset in roles):
                        self._roles = roles
                self.refresh()
                self.changed()
            except Exception:
                log.exception("watching the nodes")
            await asyncio.sleep(NODES_INTERVAL_S)

    async def _nudge(self, sourcing: SourcingWatch) -> None:
        """After node faults nats-server may wait up to 2 minutes before it sources again into the
        partitioned stream (`dashboard/lab/sourcing.py`): a stall of 5 s steps that stream's leader
        down, so the partitioned group does not wait for it."""
        try:
            done = await sourcing.look()
        except NotFoundError:  # no partitioned stream in this lab
            return
        except Exception as exc:  # a node still coming back: look again next time
            log.debug("sourcing watch: %r", exc)
            return
        if done is not None:
            self.sourcing_nudges.append(done)

    async def control(self, action: str, name: str) -> str:
        """What was done, in words, with what the node led: those assets elect a new leader."""
        led = next((view.leads() for view in self.views if view.name == name), [])
        try:
            done = await self.cluster.control(action, name)
        except ServerError as exc:
            raise LabError(str(exc)) from None
        finally:
            self.refresh()
            self.changed()
        return done + leadership_hint(action, led)
