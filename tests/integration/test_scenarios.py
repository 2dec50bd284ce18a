"""Every failure scenario ends with a clean guarded verdict; the naive group's damage is where expected."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from dashboard.lab.scenarios import SCENARIOS, ScenarioRun, find_scenario, run_scenario
from dashboard.lab.settings import Settings
from listeners.accounts import AccountRow
from listeners.partitions import partition_of

EXPECTED_NAIVE_DAMAGE = {"crash-after-commit", "out-of-order", "naive-vs-guarded", "node-failover"}


# The overtaking withdrawal runs through the CLI (test_cli) and with a slow reader (below); the
# partitioned group's scenarios have tests of their own (at the end).
PARTITIONED = {"partitioned-vs-guarded", "hot-partition", "owner-dies"}


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - {"overtaking-withdrawal"} - PARTITIONED))
async def test_scenario_keeps_the_guarded_database_right(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    captions: list[str] = []

    async def say(caption: str) -> None:
        captions.append(caption)

    settings = Settings(data_dir=tmp_path / "data", ack_wait_s=2.0)
    run = await run_scenario(scenario, settings, say, random.Random(11))
    guarded, report = run.guarded, run.report
    assert run.lesson == scenario.lesson, "these scenarios measure nothing of their own"
    assert report.ok, report.problems
    assert report.guarded.clean
    assert guarded, "the scenario should have applied events"
    assert len(captions) >= 2
    if name in EXPECTED_NAIVE_DAMAGE:
        assert report.naive is not None and not report.naive.clean, report.verdict_line()
    if name == "poison":
        assert report.poison_in_stream == 9
    if name == "node-failover":  # the acks sent during the election were lost: #1 came back to both groups
        assert report.naive is not None and report.naive.duplicated == 1, report.verdict_line()
        assert any("The guard skipped 1 as already done" in caption for caption in captions), captions
    if name == "publisher-crash":
        assert report.stream_events == 2
        assert [(row.user_id, row.last_number, row.balance_cents) for row in guarded] == [("pat", 2, 5000)]


async def test_the_overtaking_withdrawal_survives_a_reader_who_pauses_past_the_ack_wait(tmp_path: Path) -> None:
    """The dashboard's `say` waits for a key: a step must not depend on the time between captions."""
    ack_wait = 1.0
    captions: list[str] = []

    async def say(caption: str) -> None:
        captions.append(caption)
        await asyncio.sleep(ack_wait * 1.5)  # longer than any redelivery a caption could let through

    settings = Settings(data_dir=tmp_path / "data", ack_wait_s=ack_wait)
    run = await run_scenario(find_scenario("slides"), settings, say, random.Random(11))  # type: ignore[arg-type]
    guarded, naive, report = run.guarded, run.naive, run.report
    assert report.ok, report.problems
    assert {row.user_id: (row.last_number, row.balance_cents) for row in guarded} == {
        "jim": (3, 1000),
        "mary": (1, 4000),
    }
    # The naive group's damage is the story: #3 rejected before #2 came back, so Jim ends at $110.
    assert {row.user_id: (row.last_number, row.balance_cents) for row in naive}["jim"] == (2, 11000)
    assert len(captions) >= 6


# -- the partitioned group's scenarios --------------------------------------------------------------


async def run_named(name: str, tmp_path: Path) -> tuple[ScenarioRun, list[str], Path]:
    captions: list[str] = []

    async def say(caption: str) -> None:
        captions.append(caption)

    settings = Settings(data_dir=tmp_path / "data", ack_wait_s=2.0)
    run = await run_scenario(SCENARIOS[name], settings, say, random.Random(11))
    return run, captions, settings.data_dir


def table(rows: list[AccountRow]) -> dict[str, tuple[int, int]]:
    return {row.user_id: (row.last_number, row.balance_cents) for row in rows}


def assert_both_databases_right(run: ScenarioRun) -> None:
    """The guarded and the partitioned database each hold what the business rule gives for every event
    published, and the checker's invariants hold for both."""
    assert run.ok, run.report.problems
    assert run.report.partitioned is not None and run.report.partitioned.clean and run.report.partitioned.pending == 0
    expected = {user.user_id: (user.expected_last, user.expected_balance_cents) for user in run.report.users}
    assert expected and table(run.guarded) == expected
    assert table(run.partitioned) == expected


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def applied(data_dir: Path, mode: str) -> list[tuple[str, int, str, int, float]]:
    """(user, number, listener, delivery count, applied at) of every processed event, in commit order."""
    name = {"guarded": "accounts.db", "partitioned": "accounts-partitioned.db"}[mode]
    with sqlite3.connect(data_dir / name) as db:
        rows = db.execute(
            "SELECT user_id, number, listener, delivery_count, applied_at FROM applied_events ORDER BY rowid"
        ).fetchall()
    return [(user, number, listener, count, unix(at)) for user, number, listener, count, at in rows]


def created(data_dir: Path) -> dict[tuple[str, int], float]:
    with sqlite3.connect(data_dir / "transactions.db") as db:
        rows = db.execute("SELECT user_id, number, created_at FROM transactions").fetchall()
    return {(user, number): unix(at) for user, number, at in rows}


async def test_hot_partition_holds_up_the_slow_users_partition_mates_and_not_the_guarded_group(tmp_path: Path) -> None:
    run, captions, data_dir = await run_named("hot-partition", tmp_path)
    assert_both_databases_right(run)
    users = set(table(run.partitioned))
    hot, n = "hot", 3
    mates = sorted(user for user in users - {hot} if partition_of(user, n) == partition_of(hot, n))
    others = sorted(user for user in users if partition_of(user, n) != partition_of(hot, n))
    assert len(mates) == 3 and len(others) == 3
    started = min(created(data_dir).values())

    def done(mode: str, group: list[str]) -> float:
        return max(at for user, _, _, _, at in applied(data_dir, mode) if user in group) - started

    # 10 events of Hot at 300 ms each, one after the other in its partition: about 3 s for everyone behind them.
    assert done("partitioned", mates) > done("partitioned", others) + 1.5
    assert done("partitioned", mates) > done("guarded", mates) + 1.5
    measured = re.search(
        r"Here Hot's partition-mates waited ([\d.]+) s in the partitioned group, and the same users ([\d.]+) s in the guarded group;"
        r" users of other partitions ([\d.]+) s\.$",
        run.lesson,
    )
    assert run.lesson.startswith(SCENARIOS["hot-partition"].lesson) and measured, run.lesson
    assert float(measured[1]) > float(measured[2]) + 1.5 and float(measured[1]) > float(measured[3]) + 1.5
    assert captions[-1] == "Hot's events are processed at normal speed again."


async def test_owner_dies_a_standby_takes_the_partition_and_hands_it_back_with_nothing_lost(tmp_path: Path) -> None:
    run, captions, data_dir = await run_named("owner-dies", tmp_path)
    assert_both_databases_right(run)
    p = partition_of("liv", 3)
    owner, standby = ("P1", "P2") if p in (0, 2) else ("P2", "P1")  # P1's home is p0 and p2, P2's p1
    rows = [row for row in applied(data_dir, "partitioned") if row[0] == "liv"]
    assert [row[1] for row in rows] == list(range(1, 10)), "each event once, in order"
    # #2 to #6 died with the owner and came back to the standby; #9, after the hand-back, went to the owner.
    assert all(listener == standby and count > 1 for _, number, listener, count, _ in rows if 2 <= number <= 6)
    assert rows[0][2] == owner and rows[-1][2] == owner
    assert any(f"until {standby}, standing by, saw it waiting with events and took it" in c for c in captions), captions
    assert f"went to {owner}, p{p}'s owner again" in captions[-1]
    assert "nothing lost, nothing applied twice" in " ".join(captions)
    assert re.search(rf"{owner} had p{p} back [\d.]+ s after its restart\.$", run.lesson), run.lesson


async def test_partitioned_vs_guarded_both_stay_right_and_a_dead_owner_stalls_its_whole_partition(
    tmp_path: Path,
) -> None:
    run, captions, data_dir = await run_named("partitioned-vs-guarded", tmp_path)
    assert_both_databases_right(run)
    skipped = re.search(
        r"skipped it as already applied: (\d+) copies in the guarded group, (\d+) in the partitioned", " ".join(captions)
    )
    assert skipped and int(skipped[1]) >= 1 and int(skipped[2]) >= 1, captions
    assert "guarded right, partitioned right" in captions[-1]
    # The kill held up one user in the guarded group, every user of the dead owner's partitions in the other.
    made = created(data_dir)
    late = {
        mode: sum(1 for user, number, *_, at in applied(data_dir, mode) if at - made[(user, number)] > 1.0)
        for mode in ("guarded", "partitioned")
    }
    assert late["partitioned"] > late["guarded"], late
    assert run.lesson.endswith("both databases ended right."), run.lesson
