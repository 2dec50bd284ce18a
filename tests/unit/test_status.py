"""The listener status contract: what a listener publishes is what the lab reads, and nothing else."""

from __future__ import annotations

import json

import pytest

from listeners.activity import MAX_STATUS_DELIVERIES, MAX_STATUS_IN_FLIGHT
from listeners.status import RULE_WIDTH, CounterFold, Counts, DeliveryReport, ListenerStatus


def a_status(name: str = "A", pid: int = 101, mode: str = "guarded", **counts: int) -> ListenerStatus:
    held = DeliveryReport(7, 2, "evt-7", "jim", 3, "account:withdraw", 10000)
    poison = DeliveryReport(9, 1, subject="account.deposit.eve", reason="payload: is not valid JSON")
    return ListenerStatus(
        name=name,
        pid=pid,
        mode=mode,
        group="account-service",
        state="slow",
        slow_ms=2000,
        crash_armed="after-commit",
        counters=Counts(**counts),
        in_flight_count=3,
        in_flight=(held,),
        in_flight_since=1_800_000_000.25,
        last_event=held.settled(4, "applied", "2027-01-15T07:59:01.000Z"),
        deliveries=(held.settled(4, "applied", "2027-01-15T07:59:01.000Z"), poison.settled(5, "poison", "x")),
        ts="2027-01-15T07:59:02.000Z",
    )


def test_a_status_reads_back_as_it_was_written() -> None:
    status = a_status(applied=5, redelivered=2)
    assert ListenerStatus.from_json(status.to_json()) == status


def test_the_wire_format_keeps_its_field_names() -> None:
    data = json.loads(a_status(duplicates=1).to_json())
    assert data["counters"]["duplicates"] == 1 and data["slowMs"] == 2000 and data["inFlightCount"] == 3
    assert data["inFlight"][0] == {
        "streamSeq": 7, "deliveryCount": 2, "id": "evt-7", "userId": "jim", "number": 3,
        "type": "account:withdraw", "amountCents": 10000,
    }  # fmt: skip
    assert data["deliveries"][1] == {
        "streamSeq": 9, "deliveryCount": 1, "subject": "account.deposit.eve", "reason": "payload: is not valid JSON",
        "seq": 5, "outcome": "poison", "at": "x",
    }  # fmt: skip


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"[1, 2]",
        b'{"pid": 7}',
        b'{"name": "X", "pid": "??"}',
        b'{"name": "X", "pid": true}',
        b'{"name": "X", "counters": ["applied"]}',
        b'{"name": "X", "counters": {"applied": "5"}}',
        b'{"name": "X", "deliveries": "many"}',
        b'{"name": "X", "deliveries": [{"seq": "1"}]}',
        b'{"name": "X", "deliveries": [2]}',
        b'{"name": "X", "inFlight": 3}',
    ],
)
def test_anything_else_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        ListenerStatus.from_json(payload)


def test_deliveries_describe_themselves() -> None:
    status = a_status()
    assert [d.describe() for d in status.deliveries] == ["jim #3 withdraw $100", "poison deposit.eve"]


def test_counter_totals_survive_restarts_and_never_count_a_process_twice() -> None:
    fold = CounterFold()
    fold.add(a_status("A", 101, applied=5, redelivered=3))
    fold.add(a_status("A", 101, applied=6, redelivered=3))  # the same process, later
    fold.add(a_status("A", 202, applied=1, redelivered=1))  # restarted: counts from zero
    fold.add(a_status("N1", 303, "naive", applied=4))
    assert fold.total("applied", name="A") == 7 and fold.total("redelivered", name="A") == 4
    assert fold.total("applied", mode="guarded") == 7 and fold.total("applied", mode="naive") == 4
    assert fold.totals() == Counts(applied=11, redelivered=4)


# -- the rule behind each outcome ------------------------------------------------------------------

JIM_3 = DeliveryReport(7, 2, "evt-7", "jim", 3, "account:withdraw", 10000)
JIM_2 = DeliveryReport(6, 1, "evt-6", "jim", 2, "account:deposit", 4000)
AT = "2027-01-15T07:59:01.000Z"


@pytest.mark.parametrize(
    ("report", "words"),
    [
        (JIM_2.settled(1, "applied", AT, last_before=1, last_after=2, balance_before=7000, balance_after=11000),
         "last 1 → 2 · $70 → $110"),
        (JIM_3.settled(1, "applied", AT, balance_before=7000, balance_after=-3000), "applied as it came · $70 → -$30"),
        (JIM_3.settled(1, "rejected", AT, last_before=2, last_after=3, balance_before=7000, balance_after=7000),
         "balance $70 < $100"),
        (JIM_3.settled(1, "rejected", AT, balance_before=7000, balance_after=7000), "balance $70 < $100"),
        (JIM_3.settled(1, "deferred", AT, last_before=1, last_after=1), "waiting for #2 (last is 1)"),
        (JIM_3.settled(1, "parked", AT, last_before=1, last_after=1), "parked: #2 missing (last is 1)"),
        (JIM_2.settled(1, "duplicate", AT, last_before=3, last_after=3), "#2 already applied (last 3)"),
        (JIM_2.settled(1, "conflict", AT, last_before=3, last_after=3, used_by="evt-2"), "#2 already used by another event"),
        (DeliveryReport(9, 1, subject="account.deposit.eve", reason="amountCents: must be positive").settled(1, "poison", AT),
         "amountCents: must be positive"),
    ],
)  # fmt: skip
def test_each_outcome_says_its_rule(report: DeliveryReport, words: str) -> None:
    assert report.rule() == words


def test_a_long_rule_falls_back_to_a_shorter_wording_that_fits_a_row() -> None:
    big = DeliveryReport(7, 1, "evt", "jim", 12346, "account:deposit", 5_000_000_00)
    applied = big.settled(1, "applied", AT, last_before=12345, last_after=12346, balance_before=1_000_00,
                          balance_after=6_000_00)  # fmt: skip
    assert applied.rule() == "last 12345 → 12346 · now $6,000"
    richer = big.settled(1, "applied", AT, last_before=12345, last_after=12346, balance_before=1_000_000_00,
                         balance_after=6_000_000_00)  # fmt: skip
    assert richer.rule() == "last 12345 → 12346"
    naive = big.settled(1, "applied", AT, balance_before=1_000_000_00, balance_after=6_000_000_00)
    assert naive.rule() == "as it came · now $6,000,000"
    assert big.settled(1, "conflict", AT, last_before=20000).rule() == "#12346 used by another event"
    assert big.settled(1, "parked", AT, last_before=12344).rule() == "#12345 missing (last is 12344)"
    poison = DeliveryReport(9, 1, subject="account.deposit.x", reason="subject: 'account.deposit.x' does not match")
    assert poison.settled(1, "poison", AT).rule() == "subject: 'account.deposit.x' does…"


def test_no_rule_is_longer_than_a_timeline_row_allows() -> None:
    huge = 2**62 - 1
    event = DeliveryReport(1, 1, "e" * 128, "u" * 64, huge, "account:withdraw", 10_000_000_000)
    facts = dict(last_before=huge, last_after=huge, balance_before=huge, balance_after=huge, used_by="x")
    for outcome in ("applied", "rejected", "duplicate", "conflict", "deferred", "parked"):
        assert 0 < len(event.settled(1, outcome, AT, **facts).rule()) <= RULE_WIDTH
    naive = event.settled(1, "applied", AT, balance_before=huge, balance_after=huge)
    assert 0 < len(naive.rule()) <= RULE_WIDTH


def test_without_its_facts_a_delivery_states_no_rule() -> None:
    """A held delivery, or one from a listener that predates the facts: nothing is made up."""
    assert JIM_3.rule() == ""
    assert JIM_3.settled(1, "applied", AT).rule() == ""
    assert JIM_3.settled(1, "deferred", AT).rule() == ""
    assert JIM_3.settled(1, "deferred", AT).missing is None
    assert JIM_3.settled(1, "parked", AT, last_before=4).missing == 5


def test_the_facts_go_on_the_wire_in_camel_case_and_read_back() -> None:
    report = JIM_2.settled(4, "conflict", AT, last_before=3, last_after=3, used_by="evt-2")
    data = report.to_json()
    assert data["lastBefore"] == 3 and data["lastAfter"] == 3 and data["usedBy"] == "evt-2"
    assert "balanceBefore" not in data and "balanceAfter" not in data  # unknown facts are left out
    applied = JIM_2.settled(5, "applied", AT, last_before=1, last_after=2, balance_before=7000, balance_after=11000)
    assert applied.to_json()["balanceBefore"] == 7000 and applied.to_json()["balanceAfter"] == 11000
    status = ListenerStatus("A", 1, "guarded", "account-service", "running", last_event=applied,
                            deliveries=(report, applied))  # fmt: skip
    assert ListenerStatus.from_json(status.to_json()) == status


def test_a_message_without_the_facts_still_parses() -> None:
    old = b'{"name": "A", "deliveries": [{"streamSeq": 4, "deliveryCount": 1, "id": "e", "userId": "jim",'
    old += b' "number": 3, "type": "account:deposit", "amountCents": 100, "seq": 1, "outcome": "applied",'
    old += b' "at": "x", "lastBefore": null}]}'
    (report,) = ListenerStatus.from_json(old).deliveries
    assert report.outcome == "applied" and report.last_before is None and report.balance_after is None


@pytest.mark.parametrize("fact", ['"lastBefore": "1"', '"balanceAfter": 1.5', '"usedBy": 7', '"lastAfter": true'])
def test_a_fact_of_the_wrong_type_is_refused(fact: str) -> None:
    with pytest.raises(ValueError):
        ListenerStatus.from_json(f'{{"name": "X", "deliveries": [{{"seq": 1, {fact}}}]}}')


def test_a_full_status_stays_well_under_the_nats_payload_limit() -> None:
    """The deliveries are capped per message; with every fact at its widest, one still fits NATS's
    default 1 MB payload."""
    huge = 2**62 - 1
    widest = DeliveryReport(huge, huge, "e" * 128, "u" * 64, huge, "account:withdraw", 10_000_000_000).settled(
        huge, "conflict", AT, last_before=huge, last_after=huge, balance_before=-huge, balance_after=-huge,
        used_by="e" * 128,
    )  # fmt: skip
    status = ListenerStatus("A" * 32, huge, "guarded", "account-service", "running", in_flight_count=huge,
                            in_flight=(widest,) * MAX_STATUS_IN_FLIGHT, last_event=widest,
                            deliveries=(widest,) * MAX_STATUS_DELIVERIES)  # fmt: skip
    assert len(status.to_json()) < 1_048_576 // 4
