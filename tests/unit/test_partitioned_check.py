"""The checker holds the partitioned group's database to the guarded invariants: hand-made databases,
each broken in one way, and the live checker's state judging the same as `check_snapshot`."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
from test_checker import JIM, MARY, T, make_accounts, stream_of

from dashboard.lab.check_format import format_report
from dashboard.lab.checker import AppliedRow, CheckReport, DatabaseState, ParkedRow, check_data, floor_of
from dashboard.lab.live_state import GUARDED, PARTITIONED, AccountsSnapshot, LiveState, Outbox, build_report
from dashboard.lab.snapshot import Transactions, check_snapshot, read_database
from listeners.partitions import partition_of
from publisher.events import AccountEvent, apply_business_rule

CLEAN = [("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 2, "applied"), ("jim", 3, "applied")]
ACCOUNTS = [("jim", 3, 1000), ("mary", 1, 4000)]
# Three partitions: jim is in partition 2, mary in partition 1 (FNV-1a of the name, as the server splits them).
JIM_P, MARY_P = 2, 1


async def judged(tmp_path: Path, accounts: list[tuple], applied: list[tuple], **kwargs) -> CheckReport:
    """A clean guarded database, and a partitioned one with `accounts` and `applied` (in commit order)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    guarded = make_accounts(tmp_path / "accounts.db", ACCOUNTS, CLEAN)
    partitioned = make_accounts(tmp_path / "accounts-partitioned.db", accounts, applied)
    return check_data(
        stream_of(JIM + MARY),
        JIM + MARY,
        [],
        await read_database(guarded),
        None,
        partitioned=await read_database(partitioned),
        **kwargs,
    )


def test_the_example_users_are_in_the_partitions_these_tests_expect() -> None:
    assert (partition_of("jim", 3), partition_of("mary", 3)) == (JIM_P, MARY_P)


async def test_a_clean_partitioned_database_passes(tmp_path: Path) -> None:
    report = await judged(tmp_path, ACCOUNTS, CLEAN, ack_floors={"guarded": 4, "partitioned": (4, 4, 4)})
    assert report.ok, report.problems
    assert report.partitioned is not None and report.partitioned.clean
    assert all(user.partitioned is not None and user.partitioned_ok() for user in report.users)
    assert "| partitioned: lost=0 duplicated=0 out_of_order=0 wrong_balance=0 parked=0 pending=0 |" in report.verdict_line()
    assert report.verdict_line().endswith("| OK")
    assert "partitioned" in format_report(report).splitlines()[0]


async def test_a_missing_event_fails(tmp_path: Path) -> None:
    applied = [row for row in CLEAN if row[:2] != ("jim", 2)]
    report = await judged(tmp_path, [("jim", 3, 1000), ("mary", 1, 4000)], applied)
    assert report.partitioned is not None and report.partitioned.lost == 1
    assert report.guarded.clean and report.verdict == "FAILED"
    assert any(p.startswith("jim: partitioned has last=3") and "lost=1" in p for p in report.problems)
    assert "!" in next(line for line in format_report(report).splitlines() if line.startswith("jim"))


async def test_an_event_applied_twice_fails(tmp_path: Path) -> None:
    report = await judged(tmp_path, ACCOUNTS, [*CLEAN, ("jim", 2, "applied")])
    assert report.partitioned is not None and report.partitioned.duplicated == 1
    assert not report.ok and any("jim: partitioned has" in p and "duplicated=1" in p for p in report.problems)


async def test_events_applied_out_of_order_fail(tmp_path: Path) -> None:
    applied = [("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 3, "applied"), ("jim", 2, "applied")]
    report = await judged(tmp_path, ACCOUNTS, applied)
    assert report.partitioned is not None and report.partitioned.out_of_order == 1
    assert not report.ok


async def test_a_wrong_balance_fails(tmp_path: Path) -> None:
    report = await judged(tmp_path, [("jim", 3, 11000), ("mary", 1, 4000)], CLEAN)
    assert report.partitioned is not None and report.partitioned.wrong_balance == 1
    assert not report.ok and any("jim: partitioned has last=3 balance=11000" in p for p in report.problems)


async def test_a_different_event_applied_at_a_used_number_fails(tmp_path: Path) -> None:
    """The database applied another event (another id) at jim #2 than the one published with it."""
    path = make_accounts(tmp_path / "accounts-partitioned.db", ACCOUNTS, [row for row in CLEAN if row[:2] != ("jim", 2)])
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO applied_events VALUES ('forged', 'jim', 2, 'account:deposit', 4000, 'applied', 'P1', 2, 1, ?)",
        (T,),
    )
    db.commit()
    db.close()
    guarded = await read_database(make_accounts(tmp_path / "accounts.db", ACCOUNTS, CLEAN))
    report = check_data(stream_of(JIM + MARY), JIM + MARY, [], guarded, None, partitioned=await read_database(path))
    jim = next(user for user in report.users if user.user_id == "jim")
    assert jim.partitioned is not None and jim.partitioned.unexpected == 1 and not jim.partitioned_ok()
    assert report.partitioned is not None and report.partitioned.duplicated == 1
    assert not report.ok and report.guarded.clean


async def test_pending_or_lost_goes_by_the_floor_of_the_users_own_partition(tmp_path: Path) -> None:
    applied = [("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 2, "applied")]
    accounts = [("jim", 2, 11000), ("mary", 1, 4000)]
    # jim #3 is stream seq 3. Partition 1's floor (mary's) is past it, jim's own is not: pending.
    floors = (0, 4, 2)
    pending = await judged(tmp_path / "a", accounts, applied, ack_floors={"guarded": 4, "partitioned": floors})
    assert pending.partitioned is not None and (pending.partitioned.pending, pending.partitioned.lost) == (1, 0)
    assert pending.verdict == "PENDING" and pending.pending == 1 and not pending.ok
    assert "1 with the partitioned group" in format_report(pending)
    # jim's partition acknowledged it, yet the database lacks it: lost.
    lost = await judged(tmp_path / "b", accounts, applied, ack_floors={"guarded": 4, "partitioned": (0, 0, 3)})
    assert lost.partitioned is not None and lost.partitioned.lost == 1 and lost.verdict == "FAILED"
    # A partition without a consumer: nothing is on its way, so a missing event is lost.
    gone = await judged(tmp_path / "c", accounts, applied, ack_floors={"guarded": 4, "partitioned": (4, 4, None)})
    assert gone.partitioned is not None and gone.partitioned.lost == 1


def test_floor_of_picks_the_users_partition() -> None:
    floors = {"guarded": 7, "partitioned": (10, 20, 30)}
    assert floor_of(floors, "guarded", "jim") == 7
    assert (floor_of(floors, "partitioned", "jim"), floor_of(floors, "partitioned", "mary")) == (30, 20)
    assert floor_of({}, "partitioned", "jim") is None and floor_of(floors, "naive", "jim") is None


async def test_parked_events_and_unrecorded_poison_fail(tmp_path: Path) -> None:
    bad = [("account.deposit.mary", b"{oops")]
    guarded = make_accounts(tmp_path / "accounts.db", [("mary", 1, 4000)], [("mary", 1, "applied")], poison=[2])
    partitioned = make_accounts(tmp_path / "p.db", [("mary", 1, 4000)], [("mary", 1, "applied")])
    report = check_data(
        stream_of(MARY, bad), MARY, [], await read_database(guarded), None, partitioned=await read_database(partitioned)
    )
    assert report.unrecorded_poison == 0 and not report.ok
    assert report.problems == ["1 malformed events are not recorded as poison in the partitioned database (first at stream seq 2)"]
    state = DatabaseState(accounts={"jim": (1, 7000)}, parked=[ParkedRow("jim", 3, 3, T)])
    state.applied = [AppliedRow("jim", 1, "applied", "jim-1")]
    clean = DatabaseState(accounts={"jim": (1, 7000)}, applied=list(state.applied))
    parked = check_data(stream_of([JIM[0], JIM[2]]), [], [], clean, None, partitioned=state)
    assert parked.partitioned is not None and parked.partitioned.parked == 1 and not parked.ok
    assert any("1 events parked in the partitioned group" in p and "waiting for #2" in p for p in parked.problems)


async def test_without_a_partitioned_database_the_group_is_not_judged(tmp_path: Path) -> None:
    guarded = await read_database(make_accounts(tmp_path / "accounts.db", ACCOUNTS, CLEAN))
    absent = await read_database(tmp_path / "accounts-partitioned.db")
    report = check_snapshot({}, guarded, DatabaseState(present=False), _transactions(), stream_of(JIM + MARY), 4, absent)
    assert report.ok and report.partitioned is None and "partitioned" not in report.verdict_line()
    assert all(user.partitioned is None and user.partitioned_ok() for user in report.users)


def _transactions() -> Transactions:
    return Transactions(JIM + MARY, [], {event.id: seq for seq, event in enumerate(JIM + MARY, start=1)})


# -- the live checker's state -----------------------------------------------------------------------


def _fold(rows: list[AccountEvent]) -> dict[str, tuple[int, int]]:
    accounts: dict[str, tuple[int, int]] = {}
    for event in rows:
        balance = accounts.get(event.user_id, (0, 0))[1]
        accounts[event.user_id] = (event.number, apply_business_rule(balance, event)[0])
    return accounts


FORGED = dataclasses.replace(JIM[1], id="forged")


@pytest.mark.parametrize(
    "rows",
    [
        [MARY[0], *JIM],  # clean
        [MARY[0], JIM[0], JIM[2]],  # jim #2 missing
        [MARY[0], *JIM, JIM[1]],  # jim #2 twice
        [MARY[0], JIM[0], JIM[2], JIM[1]],  # out of order
        [MARY[0], JIM[0], FORGED, JIM[2]],  # another event at jim #2
    ],
    ids=["clean", "missing", "twice", "reordered", "forged"],
)
def test_the_live_state_judges_the_partitioned_database_as_check_snapshot_does(rows: list[AccountEvent]) -> None:
    live, outbox = LiveState(), Outbox()
    stream = stream_of(JIM + MARY)
    seq_of = {event.id: seq for seq, event in enumerate(JIM + MARY, start=1)}
    live.add_applied(GUARDED, [(e.user_id, e.number, e.id) for e in JIM + MARY])
    live.add_applied(PARTITIONED, [(e.user_id, e.number, e.id) for e in rows])
    live.add_stored(stream, {})
    live.add_transactions([(seq, *_tx(e), T, seq) for e, seq in ((e, seq_of[e.id]) for e in JIM + MARY)], 4, outbox)
    live.settle(False, True)
    floors = {"guarded": 4, "partitioned": (4, 4, 2)}  # jim #3 (seq 3) is above jim's partition's floor
    guarded = _fold(JIM + MARY)
    dbs = (AccountsSnapshot(True, guarded, []), AccountsSnapshot(False, {}, []), AccountsSnapshot(True, _fold(rows), []))
    got = build_report(live, floors, dbs, outbox.unpublished, 4)
    want = check_snapshot(
        floors,
        _state(JIM + MARY),
        DatabaseState(present=False),
        _transactions(),
        stream,
        4,
        _state(rows),
    )
    assert dataclasses.asdict(got) == dataclasses.asdict(want)
    assert want.partitioned is not None and (want.partitioned.clean == (rows == [MARY[0], *JIM]))


def _tx(event: AccountEvent) -> tuple:
    return (event.id, event.type, event.user_id, event.amount_cents, event.number, event.created_at)


def _state(rows: list[AccountEvent]) -> DatabaseState:
    return DatabaseState(accounts=_fold(rows), applied=[AppliedRow(e.user_id, e.number, "applied", e.id) for e in rows])
