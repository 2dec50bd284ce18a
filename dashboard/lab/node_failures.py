"""The cluster's scenarios: a node that dies under load, and one that steps down gracefully.

They need a lab on a JetStream cluster (`--cluster 3`); like the other scenarios (see `failures`),
each caption is one step and the action it announces runs after `say` returns. What a node's death
does to events in flight depends on which node each listener's connection went through and who led
the consumer, so the captions report what happened (counted), and the guarded balances must be right
whatever it was.
"""

from __future__ import annotations

import random
import time

from dashboard.lab.failures import Say, release
from dashboard.lab.lab import Lab
from dashboard.lab.nodes import ASSETS, lead_consumers, leader_of
from dashboard.lab.probes import HOLD_MS, alive, fresh_user, holder_of, prepare_listeners, wait_drained
from dashboard.lab.traffic import record_random
from dashboard.lab.waits import LabError, wait_until
from listeners.groups import GROUPS
from publisher.events import format_cents

STREAM = ASSETS.index("stream")
CONSUMERS = [ASSETS.index(group.name) for group in GROUPS]
# How long a cluster may take to elect a new leader after a SIGKILL (5 to 9 s measured here), and more.
ELECTION_TIMEOUT_S = 30.0


def leader(lab: Lab, asset: int) -> str | None:
    """Who leads the asset in the lab's view (at most a second old); see `probes.stream_leader` for now."""
    return leader_of(lab.nodes, asset)


async def wait_cluster_settled(lab: Lab, timeout: float = ELECTION_TIMEOUT_S) -> None:
    """Every node running and every asset led: the state a scenario starts from."""
    if not lab.nodes:
        raise LabError("this scenario needs a cluster: start the lab with --cluster 3 (on a data dir of its own)")
    for node in lab.nodes:
        if node.state != "running":
            await lab.node_control("resume" if node.state == "paused" else "restart", node.name)

    def settled() -> bool:
        return all(node.state == "running" for node in lab.nodes) and all(
            leader(lab, index) is not None for index in range(len(ASSETS))
        )

    await wait_until(settled, timeout, "every node running and every asset led")


async def wait_new_leader(lab: Lab, asset: int, old: str) -> tuple[str, float]:
    """The node that leads `asset` once `old` no longer does, and how long that took."""
    started = time.monotonic()
    await wait_until(
        lambda: leader(lab, asset) not in (None, old), ELECTION_TIMEOUT_S, f"a new leader of {ASSETS[asset]}"
    )
    new = leader(lab, asset)
    assert new is not None
    return new, time.monotonic() - started


def counts(lab: Lab) -> tuple[int, int, int]:
    """Guarded redeliveries and skipped duplicates, and naive redeliveries, so far."""
    return (
        lab.counts.total("redelivered", mode="guarded"),
        lab.counts.total("duplicates", mode="guarded"),
        lab.counts.total("redelivered", mode="naive"),
    )


async def begin(lab: Lab, base: str) -> tuple[str, str]:
    """Every node running and leading, every listener ready: a fresh user, and the stream's leader."""
    await wait_cluster_settled(lab)
    await prepare_listeners(lab)
    user, stream_leader = await fresh_user(lab, base), leader(lab, STREAM)
    assert stream_leader is not None
    return user, stream_leader


async def node_failover(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None and lab.nc is not None
    lee, doomed = await begin(lab, "lee")
    Lee = lee.capitalize()
    await say(
        f"Three nodes keep the stream and both consumers; one node leads each. {doomed} leads the stream (it takes"
        " every publish); both groups' consumers move to it too (they hand out events and take the acks)."
    )
    await lead_consumers(lab.nc, doomed, [ASSETS[index] for index in CONSUMERS if leader(lab, index) != doomed])
    await wait_until(
        lambda: all(leader(lab, index) == doomed for index in range(len(ASSETS))), 20, f"{doomed} to lead every asset"
    )
    await say(f"{Lee} deposits $50 (#1); every listener slows down, so in each group the one that takes it holds it.")
    for name in alive(lab, "guarded") + alive(lab, "naive"):
        await lab.control("slow", name, slow_ms=HOLD_MS)
    await lab.publisher.record("deposit", lee, 5000)
    for mode in ("guarded", "naive"):
        await wait_until(lambda m=mode: holder_of(lab, m, lee, 1) is not None, 20, f"a {mode} listener to take {Lee} #1")
    guarded_holder, naive_holder = holder_of(lab, "guarded", lee, 1), holder_of(lab, "naive", lee, 1)
    # One step: the kill, the release and Lee's next events must all happen while the others elect.
    await say(
        f"{doomed} dies (SIGKILL) while {guarded_holder} and naive {naive_holder} hold {Lee} #1. They finish it at once"
        f" and acknowledge it, but no node leads the consumers to take the acks. {Lee}'s next 5 events follow."
    )
    before = counts(lab)
    await lab.node_control("kill", doomed)
    killed_at = time.monotonic()
    await release(lab, alive(lab, "guarded") + alive(lab, "naive"))
    await record_random(lab.publisher, rng, [lee], 5)
    new_leader, _ = await wait_new_leader(lab, STREAM, doomed)
    elected_s = time.monotonic() - killed_at  # as the lab's look, once a second, saw it
    await wait_until(
        lambda: lab.publisher is not None and lab.publisher.waiting_reason is None, ELECTION_TIMEOUT_S, "the outbox to send"
    )
    await say(
        f"{new_leader} leads the stream: the lab saw it {elected_s:.1f} s after the kill (it looks once a second)."
        " The others noticed the silence and elected it; meanwhile publishes found no leader, so the outbox kept"
        " them and sent them after."
    )
    ack_wait = lab.settings.ack_wait_s
    await wait_until(
        lambda: counts(lab)[1] > before[1], ack_wait * 4 + ELECTION_TIMEOUT_S, f"{Lee} #1 to come back to the guarded group"
    )
    await wait_drained(lab, timeout=ack_wait * 4 + ELECTION_TIMEOUT_S)
    after = counts(lab)
    naive = next((row for row in await lab.accounts("naive") if row.user_id == lee), None)
    guarded = next((row for row in await lab.accounts("guarded") if row.user_id == lee), None)
    await say(
        f"The lost acknowledgements brought {Lee} #1 back after the ack wait ({ack_wait:g} s):"
        f" {after[0] - before[0]} guarded and {after[2] - before[2]} naive redeliveries. The guard skipped"
        f" {after[1] - before[1]} as already done ({Lee} ends at {format_cents(guarded.balance_cents if guarded else 0)});"
        f" the naive group applied it again ({format_cents(naive.balance_cents if naive else 0)})."
    )
    await say(f"{doomed} is restarted on its ports and store, and catches up from the others as a follower.")
    await lab.node_control("restart", doomed)
    await wait_cluster_settled(lab)


async def leader_stepdown(lab: Lab, say: Say, rng: random.Random) -> None:
    assert lab.publisher is not None
    ada, stream_leader = await begin(lab, "ada")
    Ada = ada.capitalize()
    await say(
        f"{stream_leader} leads the stream. It is put in lame duck mode (SIGUSR2), as an operator does before"
        f" maintenance, while {Ada}'s 10 events are published."
    )
    failures_before = lab.publisher.failed_sends
    await lab.node_control("lame-duck", stream_leader)
    started = time.monotonic()
    await record_random(lab.publisher, rng, [ada], 10)
    new_leader, _ = await wait_new_leader(lab, STREAM, stream_leader)
    took = time.monotonic() - started
    await wait_drained(lab, timeout=lab.settings.ack_wait_s * 4 + ELECTION_TIMEOUT_S)
    failed = lab.publisher.failed_sends - failures_before
    await say(
        f"{stream_leader} handed the stream to {new_leader} within {took:.1f} s, before leaving:"
        f" {failed} publish attempt{'s' if failed != 1 else ''} had to be retried, and {Ada}'s events are all applied."
    )
    await wait_until(
        lambda: any(node.name == stream_leader and node.state == "stopped" for node in lab.nodes),
        60,
        f"{stream_leader} to leave after its lame duck period",
    )
    await say(f"{stream_leader} left once its clients had moved; it is restarted and rejoins as a follower.")
    await lab.node_control("restart", stream_leader)
    await wait_cluster_settled(lab)
