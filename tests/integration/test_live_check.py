"""The live checker gives `run_check`'s report on the same data, pass after pass, on a real server."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest
from live_world import World
from nats.aio.client import Client as NATS
from test_trust import account, publish_raw, rows

from dashboard.lab.lab import Lab
from dashboard.lab.live_check import LiveChecker, LivePass
from dashboard.lab.probes import HOLD_MS, wait_drained, wait_listeners_ready
from dashboard.lab.snapshot import ack_floors, backlog, read_accounts, run_check, wait_settled
from dashboard.lab.waits import wait_until
from listeners.accounts import ACCOUNTS_DB, NAIVE_ACCOUNTS_DB, PARTITIONED_ACCOUNTS_DB
from listeners.partitions import partition_of, partition_states
from publisher.events import STREAM_NAME


async def same_as_run_check(live: LiveChecker, nc: NATS, data_dir: Path) -> LivePass:
    """One live pass against `run_check` on the same (quiet) data, account rows included."""
    result = await live.check()
    expected = await run_check(nc, data_dir)
    assert dataclasses.asdict(result.report) == dataclasses.asdict(expected)
    assert result.guarded == await read_accounts(data_dir / ACCOUNTS_DB)
    assert result.naive == await read_accounts(data_dir / NAIVE_ACCOUNTS_DB)
    assert result.partitioned == await read_accounts(data_dir / PARTITIONED_ACCOUNTS_DB)
    return result


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_pass_after_pass_the_live_report_is_run_checks(nc: NATS, tmp_path: Path, seed: int) -> None:
    world = World(nc, tmp_path / "data", seed)
    try:
        await world.start()
        live = LiveChecker(nc, world.data_dir)
        seen = set()
        for step in range(30):
            await world.step(faults=step >= 3)
            result = await same_as_run_check(live, nc, world.data_dir)
            seen |= {key for key, value in dataclasses.asdict(result.report.guarded).items() if value}
            seen |= {"conflicts"} if result.report.conflicts else set()
            seen |= {"poison"} if result.report.unrecorded_poison else set()
            seen |= {"unpublished"} if result.report.unpublished else set()
        # Every fault the world makes was in some report (a check that never saw one would prove nothing).
        assert {
            "lost",
            "duplicated",
            "out_of_order",
            "wrong_balance",
            "pending",
            "parked",
            "conflicts",
            "poison",
            "unpublished",
        } <= seen
        # Incrementally, but for a settled number published again with another id.
        assert live.full_reads <= 1 + world.republished
        settled = sum(state.base for state in live.state.users.values())
        assert settled > 0
    finally:
        world.close()


async def test_a_purged_stream_and_a_number_published_again_start_it_over(nc: NATS, tmp_path: Path) -> None:
    world = World(nc, tmp_path / "data", seed=7, naive=False)
    try:
        await world.start()
        live = LiveChecker(nc, world.data_dir)
        for _ in range(6):  # clean traffic: numbers settle
            await world.step(faults=False)
            await same_as_run_check(live, nc, world.data_dir)
        user = max(world.users, key=lambda name: live.state.users[name].base if name in live.state.users else 0)
        assert live.state.users[user].base >= 1
        await world.foreign(user, 1)  # another event with a settled number
        await same_as_run_check(live, nc, world.data_dir)
        assert live.full_reads == 2
        await nc.jetstream().purge_stream(STREAM_NAME)
        await same_as_run_check(live, nc, world.data_dir)
        assert live.full_reads == 3
        await world.step(faults=True)
        await same_as_run_check(live, nc, world.data_dir)
        assert live.full_reads == 3
    finally:
        world.close()


async def stable_same(live: LiveChecker, lab: Lab) -> LivePass:
    """A live pass between two `run_check`s that agree (the lab did not move meanwhile), compared."""
    assert lab.nc is not None
    data_dir = lab.settings.data_dir

    async def everything() -> tuple:
        report = await run_check(lab.nc, data_dir)
        accounts = tuple([await read_accounts(data_dir / name) for name in (ACCOUNTS_DB, NAIVE_ACCOUNTS_DB, PARTITIONED_ACCOUNTS_DB)])
        return dataclasses.asdict(report), accounts

    deadline = time.monotonic() + 30
    while True:
        before = await everything()
        result = await live.check()
        after = await everything()
        if before == after:
            assert dataclasses.asdict(result.report) == after[0]
            assert (result.guarded, result.naive, result.partitioned) == after[1]
            return result
        assert time.monotonic() < deadline, "the lab never stood still for a check"


async def test_on_a_running_lab_with_its_faults_the_live_report_is_run_checks(make_lab) -> None:
    lab = await make_lab(listeners=1, naive=1, gap_timeout_s=1.0)
    assert lab.nc is not None and lab.publisher is not None and lab.supervisor is not None
    await wait_listeners_ready(lab)
    naive = lab.supervisor.members("naive")[0].name
    live = LiveChecker(lab.nc, lab.settings.data_dir)

    async def quiet(modes: tuple = ("guarded", "naive")) -> LivePass:
        await wait_drained(lab, 30, modes)
        return await stable_same(live, lab)

    for index in range(30):
        await lab.publisher.record("deposit", f"u{index % 3}", 100 + index)
    assert (await quiet()).report.ok
    # A duplicate: the naive listener dies between its commit and its ack; the redelivery is applied again.
    await lab.control("crash", naive)
    await lab.publisher.record("deposit", "u0", 500)
    await wait_until(lambda: not lab.supervisor.listeners[naive].alive, 30, "the naive listener's crash")
    await lab.control("restart", naive)
    assert (await quiet()).report.naive.duplicated == 1
    # Out of order: oo #2 before oo #1, straight to the subjects; poison; a foreign zed #1, then the publisher's.
    await publish_raw(lab.nc, "oo", 2, 200)
    await publish_raw(lab.nc, "oo", 1, 100)
    await lab.nc.jetstream().publish("account.deposit.bad", b"{not json")
    await publish_raw(lab.nc, "zed", 1, 500)
    await wait_until(lambda: account(lab, "zed") == (1, 500), 30, "the foreign zed #1 applied")
    await lab.publisher.record("deposit", "zed", 700)
    conflicts = lab.settings.data_dir / ACCOUNTS_DB
    await wait_until(lambda: rows(conflicts, "SELECT COUNT(*) FROM conflict_events") == [(1,)], 30, "the conflict")
    result = await quiet()
    assert (
        result.report.naive.out_of_order == 1 and result.report.conflicts == 1 and result.report.poison_in_stream == 1
    )
    # Pending: the guarded listener is paused while events come.
    await lab.control("pause", "A")
    for cents in (100, 200, 300):
        await lab.publisher.record("deposit", "bob", cents)
    assert (await quiet(("naive",))).report.guarded.pending == 3
    await lab.control("resume", "A")
    # The server restarts with the same store: the live checker goes on from where it was.
    await lab.restart_server()
    await lab.publisher.record("withdraw", "bob", 50)
    assert (await quiet()).report.guarded.pending == 0
    # Parked: ann #3 and #4 wait for a #2 that never comes, past the gap timeout.
    for number in (1, 3, 4):
        await publish_raw(lab.nc, "ann", number, 100 * number)
    parked = "SELECT COUNT(*) FROM parked_events WHERE resolved_at IS NULL"
    await wait_until(lambda: rows(conflicts, parked) == [(2,)], 30, "ann #3 and #4 parked")
    assert (await quiet()).report.guarded.parked == 2
    assert live.full_reads == 1


async def test_the_partitioned_group_is_judged_by_the_ack_floor_of_each_users_partition(make_lab) -> None:
    """P1 holds mary's partition up, P2 works jim's: mary's events are pending, one of jim's that the
    database lacks is lost. One floor for the group would get one of them wrong."""
    lab = await make_lab(listeners=1, naive=0, partitioned=2, partitions=2)
    assert lab.nc is not None and lab.publisher is not None
    assert (partition_of("mary", 2), partition_of("jim", 2)) == (0, 1)  # P1's home partition is 0, P2's is 1
    await wait_listeners_ready(lab)
    live = LiveChecker(lab.nc, lab.settings.data_dir)
    for index in range(6):
        await lab.publisher.record("deposit", ("mary", "jim")[index % 2], 1000 + index)
    await wait_drained(lab, 30)
    clean = (await stable_same(live, lab)).report
    assert clean.ok and clean.partitioned is not None and clean.partitioned.clean, clean.problems
    floors = (await ack_floors(lab.nc))["partitioned"]
    assert floors == (5, 6)  # mary's last event is stream seq 5, jim's 6: each partition's floor, mapped

    await lab.control("slow", "P1", slow_ms=HOLD_MS)  # takes mary's next event and holds it
    for index in range(6):
        await lab.publisher.record("deposit", ("mary", "jim")[index % 2], 100)

    async def jim_done() -> bool:
        states = await partition_states(lab.nc, 2)
        return states[1].lag == 0 and states[0].lag == 3

    await wait_until(jim_done, 30, "jim's partition to drain while mary's waits")
    await wait_drained(lab, 30, ("guarded",))
    pending = (await stable_same(live, lab)).report
    assert pending.partitioned is not None and (pending.partitioned.pending, pending.partitioned.lost) == (3, 0)
    assert pending.verdict == "PENDING", pending.problems
    assert await backlog(lab.nc, lab.settings.data_dir) == 3  # what `natslab check --wait` waits for
    # Break the database on purpose: jim's last event is gone from it, though his partition acknowledged it.
    path = lab.settings.data_dir / PARTITIONED_ACCOUNTS_DB
    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM applied_events WHERE rowid = (SELECT MAX(rowid) FROM applied_events WHERE user_id = 'jim')")
    db.close()
    broken = (await stable_same(live, lab)).report
    assert broken.partitioned is not None and (broken.partitioned.pending, broken.partitioned.lost) == (3, 1)
    assert broken.verdict == "FAILED" and any(p.startswith("jim: partitioned has last=6") for p in broken.problems)
    assert broken.guarded.clean
    # Once P1 lets go, mary's events are processed; jim's lost one stays lost.
    await lab.control("normal", "P1")
    assert await wait_settled(lab.nc, lab.settings.data_dir, 30) == 0
    settled = (await stable_same(live, lab)).report
    assert settled.partitioned is not None and (settled.partitioned.pending, settled.partitioned.lost) == (0, 1)
    assert settled.verdict == "FAILED"
