"""Group commit: how one batch of deliveries changes the account database."""

from __future__ import annotations

from pathlib import Path

import pytest

from listeners.accounts import AccountsDB, Delivery
from listeners.guard import Decision, SequenceGuard
from publisher.events import AccountEvent

T = "2026-11-26T10:00:00.000Z"


def delivery(seq: int, user: str, number: int, kind: str, cents: int, count: int = 1) -> Delivery:
    event = AccountEvent(f"{user}-{number}", f"account:{kind}", user, cents, number, T)  # type: ignore[arg-type]
    return Delivery(seq, count, event.subject, event.to_json(), event)


@pytest.fixture
async def db(tmp_path: Path):
    accounts = await AccountsDB.open(tmp_path / "accounts.db")
    yield accounts
    await accounts.close()


async def test_guarded_batch_applies_one_users_events_in_number_order(db: AccountsDB) -> None:
    batch = [
        delivery(3, "jim", 3, "withdraw", 10000),
        delivery(1, "jim", 1, "deposit", 7000),
        delivery(2, "jim", 2, "deposit", 4000),
        delivery(5, "jim", 5, "deposit", 1),
    ]
    outcomes = await db.process_batch(batch, "guarded", "A", SequenceGuard())
    assert [o.kind for o in outcomes] == ["applied", "applied", "applied", "deferred"]
    assert [(r.user_id, r.last_number, r.balance_cents) for r in await db.accounts()] == [("jim", 3, 1000)]


async def test_redelivery_of_committed_event_is_a_duplicate(db: AccountsDB) -> None:
    await db.process_batch([delivery(1, "mary", 1, "deposit", 4000)], "guarded", "A", SequenceGuard())
    outcomes = await db.process_batch([delivery(1, "mary", 1, "deposit", 4000, count=2)], "guarded", "B", SequenceGuard())
    assert [o.kind for o in outcomes] == ["duplicate"]
    assert [(r.last_number, r.balance_cents) for r in await db.accounts()] == [(1, 4000)]


async def test_overdraft_is_rejected_and_counts_as_processed(db: AccountsDB) -> None:
    outcomes = await db.process_batch([delivery(1, "jim", 1, "withdraw", 500)], "guarded", "A", SequenceGuard())
    assert [o.kind for o in outcomes] == ["rejected"]
    assert [(r.last_number, r.balance_cents) for r in await db.accounts()] == [(1, 0)]


async def test_naive_applies_in_arrival_order(db: AccountsDB) -> None:
    batch = [
        delivery(1, "jim", 1, "deposit", 7000),
        delivery(3, "jim", 3, "withdraw", 10000),
        delivery(2, "jim", 2, "deposit", 4000),
    ]
    outcomes = await db.process_batch(batch, "naive", "N1", SequenceGuard())
    assert [o.kind for o in outcomes] == ["applied", "rejected", "applied"]
    assert [(r.last_number, r.balance_cents) for r in await db.accounts()] == [(2, 11000)]


async def test_poison_is_recorded_once(db: AccountsDB) -> None:
    bad = Delivery(9, 1, "account.deposit.x", b"{", None, "payload: is not valid JSON")
    for _ in range(2):
        outcomes = await db.process_batch([bad], "guarded", "A", SequenceGuard())
        assert [o.kind for o in outcomes] == ["poison"]
    async with db._db.execute("SELECT stream_seq, reason FROM poison_events") as cursor:
        assert await cursor.fetchall() == [(9, "payload: is not valid JSON")]


class FailingGuard(SequenceGuard):
    """Fails on a batch's second decision, after the batch has already written its account rows."""

    def __init__(self) -> None:
        super().__init__()
        self.decisions = 0

    def decide(self, number: int, last_number: int) -> Decision:  # type: ignore[override]
        self.decisions += 1
        if self.decisions == 2:
            raise RuntimeError("failure in the middle of a batch")
        return super().decide(number, last_number)


async def test_a_failure_in_the_middle_of_a_batch_writes_nothing(db: AccountsDB) -> None:
    batch = [delivery(1, "jim", 1, "deposit", 7000), delivery(2, "mary", 1, "deposit", 4000)]
    with pytest.raises(RuntimeError):
        await db.process_batch(batch, "guarded", "A", FailingGuard())
    assert await db.accounts() == []
