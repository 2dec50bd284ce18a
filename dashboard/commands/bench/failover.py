"""Failover: how long publishing stops when the stream's leader goes (`natslab bench --failover`).

On an embedded cluster, `--failover-rounds` rounds, each breaking the node that leads the stream in
each of three ways, in turn:

- `kill`: SIGKILL. Nothing is handed over: the followers wait out their election timeout (4 to 9 s
  in nats-server) before one of them campaigns.
- `lame-duck`: SIGUSR2. The node hands its leaderships to the others, stops taking clients and
  exits (natslab restarts it once the round is measured).
- `term`: SIGTERM, as `node_control("restart")` stops a node, then starts it again.

Two probes publish one event at a time through the fault, each event retried until acknowledged:

- raw: `js.publish` straight to the event's subject, each attempt waiting PROBE_TIMEOUT_S for its
  PubAck (a retry has the same `Nats-Msg-Id`, so the stream keeps one copy);
- publisher: `Publisher.publish` (the outbox, then a relay pass, which waits up to its own PubAck
  timeout); an event it leaves in the outbox is acknowledged with the next one that is.

Each probe's figure is the longest any of its events waited for its PubAck after the fault (counted
from the fault for an event already waiting then): from SIGKILL of the leader to publishing again.
A round ends once a fresh look finds a new leader and both probes have had an event acknowledged
that they first sent after it; then the node is started again and the next round waits for the
cluster to be whole. The probes' events are real account events of users of their own, so the
final check covers them too.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nats.errors import Error as NatsError

from dashboard.lab.cluster import EmbeddedCluster
from dashboard.lab.probes import stream_leader, wait_cluster_whole
from dashboard.lab.waits import LabError, wait_until
from publisher.events import AccountEvent

if TYPE_CHECKING:
    from dashboard.commands.bench.run import Bench

FAILOVER_KINDS = ("kill", "lame-duck", "term")
# What each kind does to the leader, for the table.
FAULT_WORDS = {"kill": "SIGKILL", "lame-duck": "lame duck (SIGUSR2)", "term": "SIGTERM (stop, then start)"}
# The raw probe's wait for one attempt's PubAck, and its pause between acknowledged events.
PROBE_TIMEOUT_S = 0.25
PROBE_PACE_S = 0.02
# How long the probes run before the fault (publishing in its steady state), and the longest a round may take.
LEAD_IN_S = 0.5
ROUND_TIMEOUT_S = 60.0
# A whole cluster again after a round: the node restarted, caught up, every asset led.
WHOLE_TIMEOUT_S = 60.0


@dataclass(slots=True)
class Probe:
    """One event at a time, each retried until acknowledged; how long they waited after the fault."""

    name: str
    fault_at: float | None = None  # monotonic
    longest_s: float = 0.0
    acked_after: float = 0.0  # the first attempt of the latest acknowledged event, monotonic
    events: int = 0  # events sent (each once, however many attempts it took)
    acks: int = 0
    attempts: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def acked(self, first_attempt: float) -> None:
        now = time.monotonic()
        self.acks += 1
        self.acked_after = first_attempt
        if self.fault_at is not None and now > self.fault_at:
            self.longest_s = max(self.longest_s, now - max(first_attempt, self.fault_at))


async def raw_probe(bench: Bench, probe: Probe, user: str) -> None:
    js = bench.jetstream()
    number = 0
    while not probe.stop.is_set():
        number += 1
        probe.events += 1
        event = AccountEvent.new("deposit", user, 100, number)
        first = time.monotonic()
        while True:
            probe.attempts += 1
            sent = time.monotonic()
            try:
                await js.publish(event.subject, event.to_json(), timeout=PROBE_TIMEOUT_S, headers={"Nats-Msg-Id": event.id})
                break
            except (NatsError, asyncio.TimeoutError, OSError):  # no PubAck in time, no responders, reconnecting
                # Try again with the same id.
                # An error that came at once (no responders, no connection) must not spin the loop.
                await asyncio.sleep(max(0.0, PROBE_TIMEOUT_S / 5 - (time.monotonic() - sent)))
        probe.acked(first)
        await asyncio.sleep(PROBE_PACE_S)


async def publisher_probe(bench: Bench, probe: Probe, user: str) -> None:
    waiting_since: float | None = None  # the call of the oldest event still in the outbox
    while not probe.stop.is_set():
        started = time.monotonic()
        probe.events += 1
        probe.attempts += 1
        result = await bench.publisher.publish("deposit", user, 100)
        if waiting_since is None:
            waiting_since = started
        if result.stream_seq is not None:  # the relay sends in order: every earlier event is in too
            probe.acked(waiting_since)
            waiting_since = None
        await asyncio.sleep(PROBE_PACE_S)
    # The last event left in the outbox goes out with the relay; the check waits for it.


def connected_to(bench: Bench, node: str) -> bool:
    """Whether the lab's connection (the probes' and the publisher's) is to `node`."""
    cluster, nc = bench.lab.server, bench.lab.nc
    url = nc.connected_url if nc is not None else None
    return isinstance(cluster, EmbeddedCluster) and url is not None and url.port == cluster.node(node).port


async def failover_round(bench: Bench, kind: str, index: int) -> dict[str, Any]:
    lab = bench.lab
    await wait_cluster_whole(lab, WHOLE_TIMEOUT_S)
    leader = await stream_leader(lab)
    if leader is None:
        raise LabError("the stream has no leader in a whole cluster")
    raw, pub = Probe("raw"), Probe("publisher")
    tag = f"failover-{kind}-{index}"
    tasks = [
        asyncio.create_task(raw_probe(bench, raw, f"{tag}-raw"), name=f"{tag}-raw"),
        asyncio.create_task(publisher_probe(bench, pub, f"{tag}-pub"), name=f"{tag}-pub"),
    ]
    stopping: asyncio.Task | None = None
    try:
        await wait_until(lambda: raw.acks > 0 and pub.acks > 0, 30, "both probes to publish before the fault")
        await asyncio.sleep(LEAD_IN_S)  # steady publishing before the fault
        # Whether the probes' own connection is on the node that goes: a PubAck in flight is then lost
        # with the connection, and its publish waits out its timeout whatever the cluster does.
        own_node = connected_to(bench, leader)
        fault_at = time.monotonic()
        raw.fault_at = pub.fault_at = fault_at
        if kind == "term":  # stop (SIGTERM, wait for the exit), then start: the probes run throughout
            stopping = asyncio.create_task(lab.node_control("restart", leader))
        else:
            await lab.node_control(kind, leader)
        led: list[float] = []

        async def moved() -> bool:
            if stopping is not None and stopping.done():
                stopping.result()  # a failed restart fails the round
            now = await stream_leader(lab)
            # Once the stopped node is back, it may lead again: any leader then counts.
            if now is not None and (now != leader or (stopping is not None and stopping.done())):
                led.append(time.monotonic())
                return True
            return False

        await wait_until(moved, ROUND_TIMEOUT_S, f"a new stream leader after {kind} of {leader}", interval=0.1)
        await wait_until(
            lambda: raw.acked_after >= led[0] and pub.acked_after >= led[0] or any(t.done() for t in tasks),
            ROUND_TIMEOUT_S,
            "both probes to publish through the new leader",
        )
        for task in tasks:
            if task.done():
                task.result()  # a probe that ended raised: report it
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if stopping is not None:
            await asyncio.gather(stopping, return_exceptions=True)
        raise
    raw.stop.set()
    pub.stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), ROUND_TIMEOUT_S)  # each ends once its last event is acknowledged
    new_leader = await stream_leader(lab)
    if stopping is not None:
        await stopping
    else:  # killed, or gone (or going) after its lame duck period: start it again
        await lab.node_control("restart", leader)
    figures = {
        "kind": kind,
        "round": index,
        "node": leader,
        "newLeader": new_leader,
        "probesOnThatNode": own_node,
        "rawLongestWait_s": round(raw.longest_s, 3),
        "publisherLongestWait_s": round(pub.longest_s, 3),
        "newLeaderSeen_s": round(led[0] - fault_at, 3),
        "rawEvents": raw.events,
        "rawAttempts": raw.attempts,
        "publisherEvents": pub.events,
        "publisherAcks": pub.acks,
    }
    bench.progress(
        f"    {kind} of {leader}{' (the probes connected to it)' if own_node else ''}: raw probe {raw.longest_s:.2f} s,"
        f" publisher {pub.longest_s:.2f} s, new leader {new_leader} seen after {led[0] - fault_at:.2f} s"
    )
    return figures


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


async def failover(bench: Bench) -> dict[str, Any]:
    """`--failover-rounds` rounds of each kind of fault, interleaved (kill, lame duck, SIGTERM, kill...)."""
    await bench.ensure_listeners("nak")
    rounds = []
    for index in range(1, bench.config.failover_rounds + 1):
        for kind in FAILOVER_KINDS:
            rounds.append(await failover_round(bench, kind, index))
    await wait_cluster_whole(bench.lab, WHOLE_TIMEOUT_S)
    kinds = {}
    for kind in FAILOVER_KINDS:
        done = [r for r in rounds if r["kind"] == kind]
        kinds[kind] = {
            key: summary([r[field] for r in done])
            for key, field in (("raw", "rawLongestWait_s"), ("publisher", "publisherLongestWait_s"), ("newLeader", "newLeaderSeen_s"))
        }
    return {
        "cluster": bench.config.cluster,
        "probeTimeout_s": PROBE_TIMEOUT_S,
        "rounds": rounds,
        "kinds": kinds,
    }


def _seconds(figures: dict[str, Any]) -> str:
    if figures["n"] == 1:
        return f"{figures['median']:.2f} s"
    return f"{figures['median']:.2f} s ({figures['min']:.2f}-{figures['max']:.2f})"


def failover_rows(phase: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Two rows per kind of fault: the raw probe's figure, then the publisher's; median (min-max)."""
    rows = []
    for kind, figures in phase.get("kinds", {}).items():
        n = figures["raw"]["n"]
        rounds = f"{n} round{'s' if n > 1 else ''}"
        what = f"{FAULT_WORDS[kind]} of the stream leader -> publishing again"
        rows.append((f"{what}, raw js.publish probe ({PROBE_TIMEOUT_S:g} s timeout, retried), {rounds}",
                     _seconds(figures["raw"]), ""))  # fmt: skip
        rows.append((f"{what}, through the publisher (outbox, relay), {rounds}", _seconds(figures["publisher"]), ""))
    return rows
