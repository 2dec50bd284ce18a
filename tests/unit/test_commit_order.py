"""A batch's outcomes come back in the order the account database took them, each with the facts of
the rule that gave it; the listener numbers and reports them in that order (docs/design.md,
"Listener status"). Everything here runs the real batch code against a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from listeners.accounts import AccountsDB
from listeners.activity import Activity
from listeners.guard import SequenceGuard
from listeners.outcomes import BatchResult, Delivery, RuleFacts
from publisher.events import AccountEvent

T = "2026-11-26T10:00:00.000Z"


def delivery(seq: int, user: str, number: int, kind: str, cents: int, count: int = 1) -> Delivery:
    event = AccountEvent(f"{user}-{number}", f"account:{kind}", user, cents, number, T)  # type: ignore[arg-type]
    return Delivery(seq, count, event.subject, event.to_json(), event)


def forged(seq: int, user: str, number: int, cents: int) -> Delivery:
    """Another event (another id) with a number `delivery(...)` uses."""
    event = AccountEvent(f"forged-{user}-{number}", "account:deposit", user, cents, number, T)
    return Delivery(seq, 1, event.subject, event.to_json(), event)


POISON = Delivery(90, 1, "account.deposit.x", b"{", None, "payload: is not valid JSON")


@pytest.fixture
async def db(tmp_path: Path):
    accounts = await AccountsDB.open(tmp_path / "accounts.db")
    yield accounts
    await accounts.close()


def seen(result: BatchResult) -> list[tuple[str, int, str]]:
    """(user, number, outcome) in the order the batch gives them; poison as ('?', stream seq, ...)."""
    return [
        (o.delivery.event.user_id, o.delivery.event.number, o.kind) if o.delivery.event else ("?", o.delivery.stream_seq, o.kind)
        for o in result.in_commit_order
    ]  # fmt: skip


async def committed(db: AccountsDB) -> list[tuple[str, int]]:
    async with db._db.execute("SELECT user_id, number FROM applied_events ORDER BY rowid") as cursor:
        return [tuple(row) for row in await cursor.fetchall()]  # type: ignore[misc]


def reported(result: BatchResult) -> list[tuple[int, str, str, str]]:
    """What the listener's status would say: (seq, event, outcome, rule), in the order it numbers them."""
    activity = Activity()
    activity.record(result.in_commit_order)
    return [(r.seq, r.describe(), r.outcome or "", r.rule()) for r in activity.take_recent()]


async def test_a_batch_delivered_as_3_then_2_comes_back_as_2_applied_then_3_applied(db: AccountsDB) -> None:
    guard = SequenceGuard()
    await db.process_batch([delivery(1, "jim", 1, "deposit", 7000)], "guarded", "A", guard)
    result = await db.process_batch(
        [delivery(3, "jim", 3, "withdraw", 10000), delivery(2, "jim", 2, "deposit", 4000)], "guarded", "A", guard
    )
    assert [(o.delivery.event.number, o.kind) for o in result.outcomes] == [(2, "applied"), (3, "applied")]  # type: ignore[union-attr]
    assert [o.facts for o in result.outcomes] == [
        RuleFacts(last_before=1, last_after=2, balance_before=7000, balance_after=11000),
        RuleFacts(last_before=2, last_after=3, balance_before=11000, balance_after=1000),
    ]
    # The index still ties each outcome to its message, for the ack.
    assert [o.index for o in result.outcomes] == [1, 0]
    assert await committed(db) == [("jim", 1), ("jim", 2), ("jim", 3)]
    assert reported(result) == [
        (1, "jim #2 deposit $40", "applied", "last 1 → 2 · $70 → $110"),
        (2, "jim #3 withdraw $100", "applied", "last 2 → 3 · $110 → $10"),
    ]


async def test_users_keep_the_batch_order_and_only_a_users_own_events_change_places(db: AccountsDB) -> None:
    batch = [
        delivery(1, "zoe", 1, "deposit", 100),
        delivery(2, "amy", 2, "deposit", 200),
        delivery(3, "zoe", 3, "deposit", 300),
        delivery(4, "amy", 1, "deposit", 100),
        delivery(5, "zoe", 2, "deposit", 200),
    ]
    result = await db.process_batch(batch, "guarded", "A", SequenceGuard())
    order = [("zoe", 1), ("amy", 1), ("zoe", 2), ("amy", 2), ("zoe", 3)]
    assert seen(result) == [(user, number, "applied") for user, number in order]
    assert await committed(db) == order  # what the batch says is what the database did


async def test_each_outcome_is_placed_where_it_was_decided_with_the_last_number_of_that_moment(
    db: AccountsDB,
) -> None:
    guard = SequenceGuard(gap_timeout_s=3600.0)
    await db.process_batch([delivery(1, "jim", 1, "deposit", 7000)], "guarded", "A", guard)
    batch = [
        delivery(5, "jim", 5, "deposit", 500),
        POISON,
        delivery(1, "jim", 1, "deposit", 7000, count=2),
        delivery(2, "jim", 2, "withdraw", 10000),
        forged(6, "jim", 2, 999),  # after jim-2: on a tie the earlier delivery goes first
    ]
    result = await db.process_batch(batch, "guarded", "A", guard)
    # jim's places are 0, 2, 3 and 4; his events in number order fill them; poison keeps place 1.
    assert seen(result) == [
        ("jim", 1, "duplicate"),
        ("?", 90, "poison"),
        ("jim", 2, "rejected"),
        ("jim", 2, "conflict"),
        ("jim", 5, "deferred"),
    ]
    assert [o.facts for o in result.outcomes] == [
        RuleFacts(last_before=1, last_after=1),
        RuleFacts(),
        RuleFacts(last_before=1, last_after=2, balance_before=7000, balance_after=7000),
        RuleFacts(last_before=2, last_after=2, used_by="jim-2"),
        RuleFacts(last_before=2, last_after=2),
    ]
    assert [rule for *_, rule in reported(result)] == [
        "#1 already applied (last 1)",
        "payload: is not valid JSON",
        "balance $70 < $100",
        "#2 already used by another event",
        "waiting for #3 (last is 2)",
    ]
    assert sorted(o.index for o in result.outcomes) == list(range(len(batch)))  # type: ignore[type-var]


async def test_parked_events_come_back_next_to_the_event_they_waited_for(db: AccountsDB) -> None:
    guard = SequenceGuard(gap_timeout_s=0.0)  # park at the second look
    await db.process_batch([delivery(1, "jim", 1, "deposit", 7000)], "guarded", "A", guard)
    await db.process_batch([delivery(3, "jim", 3, "deposit", 300)], "guarded", "A", guard)  # the gap starts
    parking = await db.process_batch(
        [delivery(3, "jim", 3, "deposit", 300, count=2), delivery(4, "jim", 4, "deposit", 400)], "guarded", "A", guard
    )
    assert [rule for *_, rule in reported(parking)] == ["parked: #2 missing (last is 1)"] * 2

    closing = await db.process_batch(
        [delivery(2, "jim", 2, "deposit", 200), delivery(7, "amy", 1, "deposit", 100), delivery(6, "jim", 6, "deposit", 600)],
        "guarded",
        "B",
        guard,
    )  # fmt: skip
    assert seen(closing) == [
        ("jim", 2, "applied"),
        ("jim", 3, "applied"),  # unparked, right after its predecessor
        ("jim", 4, "applied"),
        ("amy", 1, "applied"),
        ("jim", 6, "deferred"),  # #5 is missing now
    ]
    assert [o.unparked for o in closing.in_commit_order] == [False, True, True, False, False]
    assert [(o.delivery.event.number, o.kind) for o in closing.unparked] == [(3, "applied"), (4, "applied")]  # type: ignore[union-attr]
    assert await committed(db) == [("jim", 1), ("jim", 2), ("jim", 3), ("jim", 4), ("amy", 1)]
    assert reported(closing) == [
        (1, "jim #2 deposit $2", "applied", "last 1 → 2 · $70 → $72"),
        (2, "jim #3 deposit $3", "applied", "last 2 → 3 · $72 → $75"),
        (3, "jim #4 deposit $4", "applied", "last 3 → 4 · $75 → $79"),
        (4, "amy #1 deposit $1", "applied", "last 0 → 1 · $0 → $1"),
        (5, "jim #6 deposit $6", "deferred", "waiting for #5 (last is 4)"),
    ]


async def test_the_naive_group_commits_in_delivery_order_and_says_so(db: AccountsDB) -> None:
    batch = [
        delivery(1, "jim", 1, "deposit", 7000),
        delivery(3, "jim", 3, "withdraw", 10000),
        POISON,
        delivery(2, "jim", 2, "deposit", 4000),
        delivery(2, "jim", 2, "deposit", 4000, count=2),
    ]
    result = await db.process_batch(batch, "naive", "N1", SequenceGuard())
    assert [o.index for o in result.outcomes] == [0, 1, 2, 3, 4]
    assert await committed(db) == [("jim", 1), ("jim", 3), ("jim", 2), ("jim", 2)]
    assert [rule for *_, rule in reported(result)] == [
        "applied as it came · $0 → $70",
        "balance $70 < $100",
        "payload: is not valid JSON",
        "applied as it came · $70 → $110",
        "applied as it came · $110 → $150",
    ]
    # No number rule decided any of it: the naive outcomes carry no last numbers.
    assert all(o.facts.last_before is None and o.facts.last_after is None for o in result.outcomes)
