"""The listener status contract: what a listener publishes is what the lab reads, and nothing else."""

from __future__ import annotations

import json

import pytest

from listeners.status import CounterFold, Counts, DeliveryReport, ListenerStatus


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
