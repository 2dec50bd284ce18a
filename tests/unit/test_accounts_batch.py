"""Group commit: how one batch of deliveries changes the account database."""

from __future__ import annotations

from pathlib import Path

import pytest

from listeners.accounts import AccountsDB
from listeners.guard import Decision, SequenceGuard
from listeners.outcomes import Delivery
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
    outcomes = (await db.process_batch(batch, "guarded", "A", SequenceGuard())).outcomes
    assert [o.kind for o in outcomes] == ["applied", "applied", "applied", "deferred"]
    assert [(r.user_id, r.last_number, r.balance_cents) for r in await db.accounts()] == [("jim", 3, 1000)]


async def test_redelivery_of_committed_event_is_a_duplicate(db: AccountsDB) -> None:
    await db.process_batch([delivery(1, "mary", 1, "deposit", 4000)], "guarded", "A", SequenceGuard())
    outcomes = (
        await db.process_batch([delivery(1, "mary", 1, "deposit", 4000, count=2)], "guarded", "B", SequenceGuard())
    ).outcomes
    assert [o.kind for o in outcomes] == ["duplicate"]
    assert [(r.last_number, r.balance_cents) for r in await db.accounts()] == [(1, 4000)]


async def test_overdraft_is_rejected_and_counts_as_processed(db: AccountsDB) -> None:
    outcomes = (
        await db.process_batch([delivery(1, "jim", 1, "withdraw", 500)], "guarded", "A", SequenceGuard())
    ).outcomes
    assert [o.kind for o in outcomes] == ["rejected"]
    assert [(r.last_number, r.balance_cents) for r in await db.accounts()] == [(1, 0)]


async def test_naive_applies_in_arrival_order(db: AccountsDB) -> None:
    batch = [
        delivery(1, "jim", 1, "deposit", 7000),
        delivery(3, "jim", 3, "withdraw", 10000),
        delivery(2, "jim", 2, "deposit", 4000),
    ]
    outcomes = (await db.process_batch(batch, "naive", "N1", SequenceGuard())).outcomes
    assert [o.kind for o in outcomes] == ["applied", "rejected", "applied"]
    assert [(r.last_number, r.balance_cents) for r in await db.accounts()] == [(2, 11000)]


async def test_poison_is_recorded_once(db: AccountsDB) -> None:
    bad = Delivery(9, 1, "account.deposit.x", b"{", None, "payload: is not valid JSON")
    for _ in range(2):
        outcomes = (await db.process_batch([bad], "guarded", "A", SequenceGuard())).outcomes
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


def other(seq: int, user: str, number: int, kind: str, cents: int) -> Delivery:
    """An event with a number already used by `delivery(...)`, but another id: a different event."""
    event = AccountEvent(f"forged-{user}-{number}", f"account:{kind}", user, cents, number, T)  # type: ignore[arg-type]
    return Delivery(seq, 1, event.subject, event.to_json(), event)


async def rows(db: AccountsDB, sql: str) -> list[tuple]:
    async with db._db.execute(sql) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


async def test_another_event_with_a_used_number_is_a_conflict_not_a_duplicate(db: AccountsDB) -> None:
    guard = SequenceGuard()
    await db.process_batch([delivery(1, "zed", 1, "deposit", 500)], "guarded", "A", guard)
    forged = other(2, "zed", 1, "deposit", 700)
    result = await db.process_batch([forged, delivery(3, "zed", 1, "deposit", 500, count=2)], "guarded", "A", guard)
    assert [o.kind for o in result.outcomes] == ["conflict", "duplicate"]
    assert [(a.user_id, a.last_number, a.balance_cents) for a in await db.accounts()] == [("zed", 1, 500)]
    recorded = await rows(db, "SELECT stream_seq, event_id, user_id, number, applied_id, payload FROM conflict_events")
    assert recorded == [(2, "forged-zed-1", "zed", 1, "zed-1", forged.payload)]
    # Seen again (a redelivery after a crash), it is recorded once.
    await db.process_batch([forged], "guarded", "B", guard)
    assert len(await rows(db, "SELECT * FROM conflict_events")) == 1


async def test_a_conflict_inside_one_batch_is_found_too(db: AccountsDB) -> None:
    batch = [delivery(1, "zed", 1, "deposit", 500), other(2, "zed", 1, "deposit", 700)]
    result = await db.process_batch(batch, "guarded", "A", SequenceGuard())
    assert [o.kind for o in result.outcomes] == ["applied", "conflict"]


async def test_a_user_stuck_past_the_gap_timeout_is_parked_and_unparked_when_the_gap_closes(db: AccountsDB) -> None:
    guard = SequenceGuard(gap_timeout_s=0.0)  # park at the second look
    await db.process_batch([delivery(1, "jim", 1, "deposit", 7000)], "guarded", "A", guard)
    first = await db.process_batch([delivery(3, "jim", 3, "withdraw", 10000)], "guarded", "A", guard)
    assert [o.kind for o in first.outcomes] == ["deferred"]  # the gap starts now
    again = await db.process_batch([delivery(3, "jim", 3, "withdraw", 10000, count=2)], "guarded", "A", guard)
    assert [o.kind for o in again.outcomes] == ["parked"]
    later = await db.process_batch([delivery(4, "jim", 4, "deposit", 100)], "guarded", "B", guard)
    assert [o.kind for o in later.outcomes] == ["parked"]  # still stuck at #1: parked at once
    parked = await rows(db, "SELECT user_id, number, stream_seq, resolved_at FROM parked_events ORDER BY number")
    assert parked == [("jim", 3, 3, None), ("jim", 4, 4, None)]
    assert [(a.last_number, a.balance_cents) for a in await db.accounts()] == [(1, 7000)]

    closing = await db.process_batch([delivery(2, "jim", 2, "deposit", 4000)], "guarded", "A", guard)
    assert [o.kind for o in closing.outcomes] == ["applied"]
    assert [(o.delivery.event.number, o.kind) for o in closing.unparked] == [(3, "applied"), (4, "applied")]
    assert [(a.last_number, a.balance_cents) for a in await db.accounts()] == [(4, 1100)]
    resolved = await rows(db, "SELECT number, outcome FROM parked_events WHERE resolved_at IS NOT NULL ORDER BY number")
    assert resolved == [(3, "applied"), (4, "applied")]
    applied = await rows(db, "SELECT number, stream_seq FROM applied_events WHERE user_id = 'jim' ORDER BY rowid")
    assert applied == [(1, 1), (2, 2), (3, 3), (4, 4)]


async def test_an_early_event_waits_while_the_gap_is_younger_than_the_timeout(db: AccountsDB) -> None:
    guard = SequenceGuard(gap_timeout_s=3600.0)
    for count in (1, 2, 3):
        result = await db.process_batch([delivery(2, "jim", 2, "deposit", 1, count=count)], "guarded", "A", guard)
        assert [o.kind for o in result.outcomes] == ["deferred"]
    assert await rows(db, "SELECT * FROM parked_events") == []
