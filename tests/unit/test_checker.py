"""The checker on hand-made databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dashboard.lab.checker import check_data, read_database, read_transactions
from dashboard.lab.history import parse_stored
from listeners.accounts import SCHEMA as ACCOUNTS_SCHEMA
from publisher.events import AccountEvent
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
    assert await read_transactions(tmp_path / "none.db") == ([], [])
    db = sqlite3.connect(tmp_path / "t.db")
    db.executescript(TRANSACTIONS_SCHEMA.sql)
    db.execute("INSERT INTO transactions VALUES ('i', 'jim', 1, 'account:deposit', 5, ?, NULL, NULL)", (T,))
    db.commit()
    db.close()
    published, unpublished = await read_transactions(tmp_path / "t.db")
    assert published == [] and [e.number for e in unpublished] == [1]
