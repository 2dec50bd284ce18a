"""The live checker's state on hand-made increments, against `check_snapshot` on the whole of them."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from dashboard.lab.checker import AppliedRow, DatabaseState
from dashboard.lab.history import StoredEvent, parse_stored
from dashboard.lab.live_state import GUARDED, AccountsSnapshot, LiveState, Outbox, Restart, build_report
from dashboard.lab.snapshot import Transactions, check_snapshot
from publisher.events import AccountEvent, apply_business_rule

T = "2026-11-26T10:00:00.000Z"


def ev(user: str, number: int, cents: int, kind: str = "deposit", event_id: str | None = None) -> AccountEvent:
    return AccountEvent(event_id or f"{user}-{number}", f"account:{kind}", user, cents, number, T)  # type: ignore[arg-type]


def stored(seq: int, event: AccountEvent) -> StoredEvent:
    return parse_stored(seq, event.subject, event.to_json(), "")


def tx_row(rowid: int, event: AccountEvent, seq: int | None) -> tuple:
    return (
        rowid,
        event.id,
        event.type,
        event.user_id,
        event.amount_cents,
        event.number,
        event.created_at,
        T if seq else None,
        seq,
    )


def both(
    live: LiveState,
    stream: list[StoredEvent],
    published: list[tuple[AccountEvent, int]],
    applied: list[AccountEvent],
    outbox: Outbox,
):
    """The live report and check_snapshot's on the same whole data (no naive database, no ack floors)."""
    accounts: dict[str, tuple[int, int]] = {}
    for event in applied:
        balance = accounts.get(event.user_id, (0, 0))[1]
        accounts[event.user_id] = (event.number, apply_business_rule(balance, event)[0])
    snapshot = max((item.stream_seq for item in stream), default=0)
    guarded = AccountsSnapshot(True, accounts, [])
    live_report = build_report(live, {}, (guarded, AccountsSnapshot(False, {}, [])), outbox.unpublished, snapshot)
    transactions = Transactions([event for event, _ in published], [], {event.id: seq for event, seq in published})
    state = DatabaseState(
        accounts=dict(accounts), applied=[AppliedRow(e.user_id, e.number, "applied", e.id) for e in applied]
    )
    whole = check_snapshot({}, state, DatabaseState(present=False), transactions, stream, snapshot)
    return dataclasses.asdict(live_report), dataclasses.asdict(whole)


def test_an_id_only_transactions_db_shows_is_listed_after_the_stream_ids_as_check_data_lists_them() -> None:
    """The publisher's jim #1 (acked at seq 1) is missing from the stream; a foreign jim #1 comes later."""
    live, outbox = LiveState(), Outbox()
    mine, foreign = ev("jim", 1, 700), ev("jim", 1, 500, event_id="foreign")
    live.add_transactions([tx_row(1, mine, 1)], 1, outbox)
    live.add_stored([stored(2, foreign)], {})
    live.settle(False)
    got, want = both(live, [stored(2, foreign)], [(mine, 1)], [], outbox)
    assert got == want
    assert "events: foreign (stream seq 2, " in " ".join(want["problems"])  # the stream's id first


def test_numbers_processed_everywhere_leave_one_balance_per_user_not_one_entry_per_event() -> None:
    live, outbox = LiveState(), Outbox()
    stream, published, applied = [], [], []
    for seq in range(1, 1001):
        user = f"u{seq % 10}"
        event = ev(user, (seq - 1) // 10 + 1, 100 * seq, "withdraw" if seq % 3 == 0 else "deposit")
        stream.append(stored(seq, event))
        published.append((event, seq))
        applied.append(event)
    # In increments, as passes would read them: the database first, then transactions, then the stream.
    for start in range(0, 1000, 100):
        late = live.add_applied(GUARDED, [(e.user_id, e.number, e.id) for e in applied[start : start + 100]])
        assert late == []
        live.add_stored(stream[start : start + 100], {})
        live.add_transactions([tx_row(seq, e, seq) for e, seq in published[start : start + 100]], start + 100, outbox)
        live.settle(False)
        got, want = both(live, stream[: start + 100], published[: start + 100], applied[: start + 100], outbox)
        assert got == want
    assert want["guarded"]["lost"] == 0 and not want["problems"]
    assert all(not state.slots and state.base == 100 for state in live.users.values())


def test_another_id_at_a_settled_number_starts_it_over() -> None:
    live, outbox = LiveState(), Outbox()
    first = ev("jim", 1, 700)
    live.add_applied(GUARDED, [("jim", 1, first.id)])
    live.add_stored([stored(1, first)], {})
    live.add_transactions([tx_row(1, first, 1)], 1, outbox)
    live.settle(False)
    assert live.users["jim"].base == 1
    assert live.settled_keys([("jim", 1), ("jim", 2), ("ann", 1)]) == [("jim", 1)]
    live.add_stored([stored(2, first)], {("jim", 1): first.id})  # the same event again: nothing changes
    with pytest.raises(Restart):
        live.add_stored([stored(3, ev("jim", 1, 5, event_id="forged"))], {("jim", 1): first.id})
    assert Counter(outbox.unpublished) == Counter()
