"""Group commit on both sides: the outbox writes overlapping requests in one transaction, and a
listener batch touching many users reads and updates them in chunks. Same results as one at a time."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from listeners.accounts import AccountsDB
from listeners.guard import SequenceGuard
from listeners.outcomes import Delivery
from publisher.events import AccountEvent, EventError
from publisher.service import Publisher
from publisher.transactions import TransactionsDB


@pytest.fixture
async def transactions(tmp_path: Path):
    db = await TransactionsDB.open(tmp_path / "transactions.db")
    yield db
    await db.close()


def stored(path: Path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT user_id, number, amount_cents FROM transactions ORDER BY rowid").fetchall()


async def test_record_many_numbers_each_user_on_from_what_is_stored(transactions: TransactionsDB) -> None:
    await transactions.record("deposit", "jim", 100)
    events = await transactions.record_many(
        [("deposit", "jim", 200), ("deposit", "mary", 300), ("withdraw", "jim", 50), ("deposit", "mary", 10)]
    )
    assert [(e.user_id, e.number, e.type) for e in events] == [
        ("jim", 2, "account:deposit"),
        ("mary", 1, "account:deposit"),
        ("jim", 3, "account:withdraw"),
        ("mary", 2, "account:deposit"),
    ]
    assert len(await transactions.unpublished()) == 5


async def test_record_many_writes_nothing_when_one_request_is_bad(transactions: TransactionsDB) -> None:
    with pytest.raises(EventError):
        await transactions.record_many([("deposit", "jim", 100), ("deposit", "jim smith", 100)])
    assert stored(transactions.path) == []


async def test_overlapping_records_share_a_commit_and_keep_call_order(transactions: TransactionsDB) -> None:
    publisher = Publisher(transactions, None)
    requests = [("deposit", f"u{index % 3}", index + 1) for index in range(60)]
    events = await asyncio.gather(*(publisher.record(kind, user, cents) for kind, user, cents in requests))
    assert [(e.user_id, e.amount_cents) for e in events] == [(user, cents) for _, user, cents in requests]
    for user in ("u0", "u1", "u2"):
        assert [e.number for e in events if e.user_id == user] == list(range(1, 21))
    assert stored(transactions.path) == [(e.user_id, e.number, e.amount_cents) for e in events]


async def test_a_bad_request_fails_alone(transactions: TransactionsDB) -> None:
    publisher = Publisher(transactions, None)
    results = await asyncio.gather(
        publisher.record("deposit", "jim", 100),
        publisher.record("deposit", "jim smith", 100),
        publisher.record("deposit", "jim", 200),
        return_exceptions=True,
    )
    assert isinstance(results[1], EventError)
    assert [(e.user_id, e.number) for e in (results[0], results[2])] == [("jim", 1), ("jim", 2)]


async def test_a_batch_over_many_users_reads_and_updates_them_all(tmp_path: Path) -> None:
    accounts = await AccountsDB.open(tmp_path / "accounts.db")
    try:
        deliveries = []
        for index in range(1_200):  # more users than one IN (...) query takes
            event = AccountEvent.new("deposit", f"user-{index % 600}", 100, index // 600 + 1)
            deliveries.append(Delivery(index + 1, 1, event.subject, event.to_json(), event))
        outcomes = (await accounts.process_batch(deliveries, "guarded", "A", SequenceGuard())).outcomes
        assert {o.kind for o in outcomes} == {"applied"}
        rows = await accounts.accounts()
        assert len(rows) == 600 and {(r.last_number, r.balance_cents) for r in rows} == {(2, 200)}
        again = (await accounts.process_batch(deliveries[:10], "guarded", "B", SequenceGuard())).outcomes
        assert {o.kind for o in again} == {"duplicate"}
    finally:
        await accounts.close()
