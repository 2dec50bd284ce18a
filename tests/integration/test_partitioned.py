"""The partitioned group against a real nats-server: the server's partitions, owners and their
failover, per-user order without the guard acting, and the guard as a safety net. The slow user's
partition-mates are the `hot-partition` scenario's test (test_scenarios.py)."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import pytest
from nats.aio.client import Client as NATS

from dashboard.lab.lab import Lab
from dashboard.lab.probes import wait_drained, wait_listeners_ready
from dashboard.lab.waits import LabError, wait_until
from listeners.accounts import PARTITIONED_ACCOUNTS_DB
from listeners.partitions import (
    PARTITIONED_STREAM,
    ensure_partition_consumers,
    ensure_partitioned_stream,
    event_subject,
    partition_of,
    partition_owners,
    partition_states,
)
from publisher.events import AccountEvent
from publisher.jetstream import ensure_stream

LabFactory = Callable[..., Awaitable[Lab]]


def users_of(partition: int, count: int, partitions: int = 3, prefix: str = "u") -> list[str]:
    found = [f"{prefix}{i}" for i in range(200) if partition_of(f"{prefix}{i}", partitions) == partition]
    return found[:count]


async def owners(lab: Lab) -> dict[int, str | None]:
    assert lab.nc is not None
    return partition_owners(await partition_states(lab.nc, lab.settings.partitions), lab.statuses.values())


def applied_rows(lab: Lab) -> list[tuple[str, int, str, int, str]]:
    """(user, number, outcome, stream_seq, listener) of the partitioned database, in commit order."""
    with sqlite3.connect(lab.settings.data_dir / PARTITIONED_ACCOUNTS_DB) as db:
        return db.execute(
            "SELECT user_id, number, outcome, stream_seq, listener FROM applied_events ORDER BY rowid"
        ).fetchall()


async def publish(lab: Lab, users: list[str], rounds: int) -> None:
    assert lab.publisher is not None
    for _ in range(rounds):
        for user in users:
            await lab.publisher.publish("deposit", user, 100)


async def test_the_server_puts_each_user_in_the_partition_natslab_computes(nc: NATS) -> None:
    await ensure_stream(nc)
    await ensure_partitioned_stream(nc, 3)
    js = nc.jetstream()
    users = [f"user-{i}" for i in range(40)]
    for user in users:
        await js.publish(f"account.deposit.{user}", AccountEvent.new("deposit", user, 100, 1).to_json())
    sub = await js.subscribe("account.*.*.*", stream=PARTITIONED_STREAM, ordered_consumer=True)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 10
    while len(seen) < len(users) and time.monotonic() < deadline:
        msg = await sub.next_msg(timeout=5)
        seen[event_subject(msg.subject).split(".")[2]] = int(msg.subject.rsplit(".", 1)[1])
    await sub.unsubscribe()
    assert seen == {user: partition_of(user, 3) for user in users}
    assert len(set(seen.values())) == 3


async def test_each_partition_is_owned_by_its_home_listener_and_every_user_is_applied_in_order(make_lab: LabFactory) -> None:
    lab = await make_lab(listeners=0, partitioned=2)
    await wait_listeners_ready(lab)
    users = [f"u{i}" for i in range(12)]
    await publish(lab, users, 15)
    await wait_drained(lab, 30)
    assert await owners(lab) == {0: "P1", 1: "P2", 2: "P1"}
    rows = applied_rows(lab)
    assert len(rows) == 12 * 15
    numbers: dict[str, list[int]] = defaultdict(list)
    for user, number, outcome, _seq, listener in rows:
        assert outcome == "applied"
        assert listener == ("P2" if partition_of(user, 3) == 1 else "P1")
        numbers[user].append(number)
    assert all(found == list(range(1, 16)) for found in numbers.values())
    await wait_until(lambda: lab.counts.totals(mode="partitioned").applied == 180, 5, "the statuses to count every event")
    counts = lab.counts.totals(mode="partitioned")
    assert (counts.duplicates, counts.deferred, counts.redelivered) == (0, 0, 0)


async def test_a_dead_owners_partitions_go_to_the_standby_and_come_back_when_it_returns(make_lab: LabFactory) -> None:
    lab = await make_lab(listeners=0, partitioned=2)
    await wait_listeners_ready(lab)
    users = users_of(0, 2) + users_of(1, 2)
    await publish(lab, users, 3)
    await wait_drained(lab, 30)
    await lab.control("kill", "P1")
    await publish(lab, users, 3)
    await wait_until(lambda: _owned_by(lab, {0: "P2", 1: "P2"}), 20, "P2 to take p0 over", interval=0.2)
    await wait_drained(lab, 30)
    await lab.control("restart", "P1")
    await wait_listeners_ready(lab)
    await wait_until(lambda: _owned_by(lab, {0: "P1", 1: "P2"}, users), 30, "p0 to go back to P1", interval=0.5)
    await wait_drained(lab, 30)
    rows = applied_rows(lab)
    by_user: dict[str, list[int]] = defaultdict(list)
    for user, number, outcome, _seq, _listener in rows:
        if outcome == "applied":
            by_user[user].append(number)
    assert {user: sorted(set(found)) for user, found in by_user.items()} == {
        user: list(range(1, len(found) + 1)) for user, found in by_user.items()
    }
    assert all(len(found) >= 6 for found in by_user.values())
    assert {row[4] for row in rows if partition_of(row[0], 3) == 0} >= {"P1", "P2"}


async def _owned_by(lab: Lab, expected: dict[int, str], publish_users: list[str] | None = None) -> bool:
    if publish_users:  # a partition is pinned by the event it delivers: give it one now and then
        await publish(lab, publish_users, 1)
    found = await owners(lab)
    return all(found.get(p) == name for p, name in expected.items())


async def test_a_crash_between_commit_and_ack_is_caught_by_the_guard_and_counted(make_lab: LabFactory) -> None:
    lab = await make_lab(listeners=0, partitioned=2)
    await wait_listeners_ready(lab)
    user = users_of(1, 1)[0]  # P2's partition
    await publish(lab, [user], 1)
    await wait_drained(lab, 30)
    await lab.control("crash", "P2")
    await publish(lab, [user], 1)
    await wait_drained(lab, 40)  # P1 stands in for the crashed P2, and gets #2 again after the ack wait
    await wait_until(lambda: lab.counts.totals(mode="partitioned").duplicates == 1, 5, "the guard's catch to be counted")
    rows = [row for row in applied_rows(lab) if row[0] == user]
    assert [(row[1], row[2]) for row in rows] == [(1, "applied"), (2, "applied")]


async def test_a_lab_asked_for_another_partition_count_than_its_events_have_is_refused(make_lab: LabFactory) -> None:
    lab = await make_lab(listeners=0, partitioned=1)
    await lab.stop()
    with pytest.raises(LabError, match="splits users into 3 partitions, not 4"):
        await make_lab(listeners=0, partitioned=1, partitions=4)


async def test_partition_consumers_keep_their_pinned_policy_when_declared_again(nc: NATS) -> None:
    await ensure_stream(nc)
    await ensure_partitioned_stream(nc, 3)
    for _ in range(2):
        await ensure_partition_consumers(nc, 3, 5.0)
    reply = await nc.request(f"$JS.API.CONSUMER.INFO.{PARTITIONED_STREAM}.account-service-partitioned-p2", b"")
    config = __import__("json").loads(reply.data)["config"]
    assert (config["priority_policy"], config["priority_groups"], config["max_ack_pending"]) == ("pinned_client", ["owner"], 100)


async def test_the_partitions_carry_on_after_a_server_restart(make_lab: LabFactory) -> None:
    lab = await make_lab(listeners=0, partitioned=2)
    await wait_listeners_ready(lab)
    users = users_of(0, 2) + users_of(1, 2) + users_of(2, 2)
    await publish(lab, users, 2)
    await wait_drained(lab, 30)
    await lab.restart_server()
    await publish(lab, users, 2)
    await wait_drained(lab, 40)
    rows = await lab.accounts("partitioned")
    assert {row.user_id: row.last_number for row in rows} == dict.fromkeys(users, 4)
    # The server forgot the pins; the next events pin each partition to its home listener again.
    await wait_until(lambda: _owned_by(lab, {0: "P1", 1: "P2", 2: "P1"}, users), 10, "the home listeners to own their partitions again", interval=0.5)


async def test_a_standby_applies_the_dead_owners_held_events_before_the_newer_ones(make_lab: LabFactory) -> None:
    # An ack wait longer than a takeover (about 3 s), so the standby gets #4-#6 before #1-#3 come back.
    lab = await make_lab(listeners=0, partitioned=2, ack_wait_s=6.0)
    await wait_listeners_ready(lab)
    user = users_of(0, 1)[0]  # P1's partition
    await lab.control("slow", "P1", slow_ms=3_600_000)  # P1 takes #1.. and holds them
    await publish(lab, [user], 3)
    await wait_until(lambda: lab.statuses["P1"].in_flight_count > 0, 10, "P1 to hold an event")
    await lab.control("kill", "P1")
    await publish(lab, [user], 3)  # #4-#6 reach the standby before #1-#3 come back
    await wait_drained(lab, 40)
    with sqlite3.connect(lab.settings.data_dir / PARTITIONED_ACCOUNTS_DB) as db:
        rows = db.execute(
            "SELECT number, outcome, delivery_count, listener FROM applied_events WHERE user_id = ? ORDER BY rowid",
            (user,),
        ).fetchall()
    assert [(number, outcome, listener) for number, outcome, _count, listener in rows] == [
        (n, "applied", "P2") for n in range(1, 7)
    ]
    assert rows[0][2] > 1  # #1 was P1's, delivered again
    await wait_until(lambda: lab.counts.totals(mode="partitioned").applied == 6, 5, "the statuses to count")
    assert lab.counts.totals(mode="partitioned").deferred == 0
