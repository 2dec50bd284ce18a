"""The checker on hand-made databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dashboard.lab.checker import AppliedRow, DatabaseState, ParkedRow, check_data
from dashboard.lab.history import parse_stored
from dashboard.lab.snapshot import read_database, read_transactions
from listeners.accounts import SCHEMA as ACCOUNTS_SCHEMA
from publisher.events import AccountEvent
from publisher.sqlite import DatabaseUnavailable
from publisher.transactions import SCHEMA as TRANSACTIONS_SCHEMA

T = "2026-11-26T10:00:00.000Z"


def ev(user: str, number: int, kind: str, cents: int) -> AccountEvent:
    return AccountEvent(f"{user}-{number}", f"account:{kind}", user, cents, number, T)  # type: ignore[arg-type]


JIM = [ev("jim", 1, "deposit", 7000), ev("jim", 2, "deposit", 4000), ev("jim", 3, "withdraw", 10000)]
MARY = [ev("mary", 1, "deposit", 4000)]


def stream_of(events: list[AccountEvent], extra: list[tuple[str, bytes]] = ()) -> list:
    stored = [parse_stored(seq, e.subject, e.to_json(), T) for seq, e in enumerate(events, start=1)]
    for subject, payload in extra:
        stored.append(parse_stored(len(stored) + 1, subject, payload, T))
    return stored


def make_accounts(path: Path, accounts: list[tuple], applied: list[tuple[str, int, str]], poison: list[int] = ()) -> Path:
    db = sqlite3.connect(path)
    db.executescript(ACCOUNTS_SCHEMA.sql)
    db.executemany("INSERT INTO accounts VALUES (?, ?, ?)", accounts)
    db.executemany(
        "INSERT INTO applied_events VALUES (?, ?, ?, 'account:deposit', 1, ?, 'A', 1, 1, ?)",
        [(f"{u}-{n}", u, n, outcome, T) for u, n, outcome in applied],
    )
    db.executemany("INSERT INTO poison_events VALUES (?, 'account.deposit.x', 'bad', x'00', ?)", [(s, T) for s in poison])
    db.commit()
    db.close()
    return path


async def test_clean_guarded_database_passes(tmp_path: Path) -> None:
    path = make_accounts(
        tmp_path / "accounts.db",
        [("jim", 3, 1000), ("mary", 1, 4000)],
        [("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 2, "applied"), ("jim", 3, "applied")],
    )
    report = check_data(stream_of(JIM + MARY), JIM + MARY, [], await read_database(path), None)
    assert report.ok, report.problems
    jim = next(u for u in report.users if u.user_id == "jim")
    assert (jim.expected_last, jim.expected_balance_cents) == (3, 1000)
    assert report.guarded.clean


async def test_naive_reordering_is_reported_but_not_fatal(tmp_path: Path) -> None:
    guarded = make_accounts(
        tmp_path / "accounts.db",
        [("jim", 3, 1000)],
        [("jim", 1, "applied"), ("jim", 2, "applied"), ("jim", 3, "applied")],
    )
    naive = make_accounts(
        tmp_path / "naive.db",
        [("jim", 2, 11000)],
        [("jim", 1, "applied"), ("jim", 3, "rejected"), ("jim", 2, "applied")],
    )
    report = check_data(stream_of(JIM), JIM, [], await read_database(guarded), await read_database(naive))
    assert report.ok
    assert report.naive is not None
    assert report.naive.out_of_order == 1
    assert report.naive.wrong_balance == 1
    assert "naive: lost=0 duplicated=0 out_of_order=1 wrong_balance=1" in report.verdict_line()


async def test_lost_duplicated_and_out_of_order_fail(tmp_path: Path) -> None:
    path = make_accounts(
        tmp_path / "accounts.db",
        [("jim", 3, 1000)],
        [("jim", 1, "applied"), ("jim", 3, "applied"), ("jim", 1, "applied")],
    )
    report = check_data(stream_of(JIM), JIM, [], await read_database(path), None)
    assert not report.ok
    assert (report.guarded.lost, report.guarded.duplicated, report.guarded.out_of_order) == (1, 1, 1)


async def test_wrong_balance_and_unpublished_fail(tmp_path: Path) -> None:
    path = make_accounts(tmp_path / "accounts.db", [("mary", 1, 5000)], [("mary", 1, "applied")])
    pending = ev("mary", 2, "deposit", 100)
    report = check_data(stream_of(MARY), MARY, [pending], await read_database(path), None)
    assert not report.ok
    assert report.unpublished == 1
    assert report.guarded.wrong_balance == 1


async def test_poison_must_be_recorded(tmp_path: Path) -> None:
    bad = [("account.deposit.mary", b"{oops")]
    unrecorded = make_accounts(tmp_path / "a.db", [("mary", 1, 4000)], [("mary", 1, "applied")])
    recorded = make_accounts(tmp_path / "b.db", [("mary", 1, 4000)], [("mary", 1, "applied")], poison=[2])
    assert not check_data(stream_of(MARY, bad), MARY, [], await read_database(unrecorded), None).ok
    report = check_data(stream_of(MARY, bad), MARY, [], await read_database(recorded), None)
    assert report.ok and report.poison_in_stream == 1


async def test_gap_in_the_stream_is_a_problem(tmp_path: Path) -> None:
    path = make_accounts(tmp_path / "accounts.db", [("jim", 1, 7000)], [("jim", 1, "applied")])
    report = check_data(stream_of([JIM[0], JIM[2]]), [], [], await read_database(path), None)
    assert not report.ok
    assert any("number 2 is missing" in problem for problem in report.problems)


async def test_missing_databases_read_as_empty(tmp_path: Path) -> None:
    assert not (await read_database(tmp_path / "none.db")).present
    none = await read_transactions(tmp_path / "none.db")
    assert none.published == [] and none.unpublished == []
    db = sqlite3.connect(tmp_path / "t.db")
    db.executescript(TRANSACTIONS_SCHEMA.sql)
    db.execute("INSERT INTO transactions VALUES ('i', 'jim', 1, 'account:deposit', 5, ?, NULL, NULL)", (T,))
    db.commit()
    db.close()
    transactions = await read_transactions(tmp_path / "t.db")
    assert transactions.published == [] and [e.number for e in transactions.unpublished] == [1]


async def test_another_event_with_a_used_number_is_a_conflict(tmp_path: Path) -> None:
    path = make_accounts(tmp_path / "accounts.db", [("jim", 1, 7000)], [("jim", 1, "applied")])
    forged = AccountEvent("forged", "account:deposit", "jim", 700, 1, T)
    stream = stream_of([JIM[0], forged])
    report = check_data(stream, [JIM[0]], [], await read_database(path), None)
    assert not report.ok and report.conflicts == 1
    assert "conflicts=1" in report.verdict_line() and report.verdict_line().endswith("FAILED")
    assert any("number 1 was published for 2 different events" in p and "forged (stream seq 2, neither applied nor recorded as a conflict)" in p for p in report.problems)


async def test_the_checker_compares_applied_events_by_id(tmp_path: Path) -> None:
    """The database applied another event at a number than the one the publisher recorded."""
    path = tmp_path / "accounts.db"
    make_accounts(path, [("jim", 1, 7000)], [])
    db = sqlite3.connect(path)
    db.execute("INSERT INTO applied_events VALUES ('forged', 'jim', 1, 'account:deposit', 7000, 'applied', 'A', 1, 1, ?)", (T,))
    db.commit()
    db.close()
    report = check_data(stream_of([JIM[0]]), [JIM[0]], [], await read_database(path), None)
    assert not report.ok
    assert report.users[0].guarded.unexpected == 1


async def test_events_above_the_ack_floor_are_pending_not_lost(tmp_path: Path) -> None:
    path = make_accounts(tmp_path / "accounts.db", [("jim", 2, 11000)], [("jim", 1, "applied"), ("jim", 2, "applied")])
    state = await read_database(path)
    pending = check_data(stream_of(JIM), JIM, [], state, None, ack_floors={"guarded": 2})
    assert pending.problems == [] and pending.guarded.pending == 1 and pending.guarded.lost == 0
    assert pending.verdict == "PENDING" and not pending.ok
    assert "pending=1" in pending.verdict_line()
    lost = check_data(stream_of(JIM), JIM, [], state, None, ack_floors={"guarded": 3})
    assert lost.guarded.lost == 1 and lost.verdict == "FAILED"


async def test_a_wrong_balance_shows_even_while_events_are_pending(tmp_path: Path) -> None:
    path = make_accounts(tmp_path / "accounts.db", [("jim", 1, 9999)], [("jim", 1, "applied")])
    report = check_data(stream_of(JIM), JIM, [], await read_database(path), None, ack_floors={"guarded": 1})
    assert report.guarded.pending == 2 and report.guarded.wrong_balance == 1 and report.verdict == "FAILED"


def test_parked_events_fail_the_check() -> None:
    state = DatabaseState(
        accounts={"jim": (1, 7000)},
        parked=[ParkedRow("jim", 3, 3, T)],
    )
    state.applied = [AppliedRow("jim", 1, "applied", "jim-1")]
    report = check_data(stream_of([JIM[0], JIM[2]]), [], [], state, None)
    assert report.guarded.parked == 1 and not report.ok
    assert any("1 events parked" in p and "waiting for #2" in p for p in report.problems)


async def test_unreadable_is_not_empty(tmp_path: Path) -> None:
    foreign = tmp_path / "transactions.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE transactions (id TEXT, amount REAL)")
    db.commit()
    db.close()
    with pytest.raises(DatabaseUnavailable, match="another schema"):
        await read_transactions(foreign)
    newer = tmp_path / "accounts.db"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(DatabaseUnavailable, match="version 99"):
        await read_database(newer)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseUnavailable):
        await read_transactions(garbage)
