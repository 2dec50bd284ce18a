"""The event contract and money parsing."""

from __future__ import annotations

import json

import pytest

from publisher.events import (
    MAX_EVENT_BYTES,
    AccountEvent,
    EventError,
    apply_business_rule,
    format_cents,
    parse_amount,
    subject_for,
)

GOOD = {
    "id": "ksjf",
    "type": "account:deposit",
    "userId": "CZQ",
    "amountCents": 7000,
    "number": 1,
    "createdAt": "2026-11-26T10:00:00.000Z",
}


def payload(**changes: object) -> bytes:
    data = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()


def test_round_trip_keeps_every_field() -> None:
    event = AccountEvent.from_json(payload(), "account.deposit.CZQ")
    assert event == AccountEvent("ksjf", "account:deposit", "CZQ", 7000, 1, "2026-11-26T10:00:00.000Z")
    assert json.loads(event.to_json()) == GOOD
    assert event.subject == "account.deposit.CZQ"
    assert event.describe() == "CZQ #1 deposit $70"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": ...}, "id"),
        ({"type": "account:transfer"}, "type"),
        ({"userId": "jim smith"}, "userId"),
        ({"userId": "x" * 65}, "userId"),
        ({"userId": 7}, "userId"),
        ({"amountCents": 0}, "amountCents"),
        ({"amountCents": -5}, "amountCents"),
        ({"amountCents": 10.5}, "amountCents"),
        ({"amountCents": "7000"}, "amountCents"),
        ({"amountCents": True}, "amountCents"),
        ({"number": 0}, "number"),
        ({"number": "1"}, "number"),
        ({"createdAt": "yesterday"}, "createdAt"),
        ({"createdAt": ...}, "createdAt"),
    ],
)
def test_bad_fields_are_named(changes: dict, field: str) -> None:
    with pytest.raises(EventError) as info:
        AccountEvent.from_json(payload(**changes))
    assert info.value.field == field


def test_subject_must_match_the_event() -> None:
    with pytest.raises(EventError, match="subject"):
        AccountEvent.from_json(payload(), "account.deposit.mary")
    with pytest.raises(EventError, match="subject"):
        AccountEvent.from_json(payload(), "account.withdraw.CZQ")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
        (b"x" * (MAX_EVENT_BYTES + 1), "limit"),
    ],
)
def test_malformed_payloads(raw: bytes, problem: str) -> None:
    with pytest.raises(EventError, match=problem):
        AccountEvent.from_json(raw)


@pytest.mark.parametrize(
    ("text", "cents"),
    [("70", 7000), ("70.5", 7050), ("70.50", 7050), ("$1,000", 100000), (" 0.01 ", 1), (".5", 50)],
)
def test_parse_amount(text: str, cents: int) -> None:
    assert parse_amount(text) == cents


@pytest.mark.parametrize("text", ["0", "0.00", "-5", "abc", "1.234", "", "1e3", "10.", "nan", "inf", "99999999999"])
def test_parse_amount_refuses(text: str) -> None:
    with pytest.raises(EventError):
        parse_amount(text)


def test_format_cents() -> None:
    assert format_cents(7000) == "$70"
    assert format_cents(7050) == "$70.50"
    assert format_cents(-1) == "-$0.01"
    assert format_cents(123456789) == "$1,234,567.89"


def test_business_rule_rejects_overdraft() -> None:
    deposit = AccountEvent("a", "account:deposit", "jim", 7000, 1, GOOD["createdAt"])
    withdraw = AccountEvent("b", "account:withdraw", "jim", 10000, 2, GOOD["createdAt"])
    assert apply_business_rule(0, deposit) == (7000, "applied")
    assert apply_business_rule(7000, withdraw) == (7000, "rejected")
    assert apply_business_rule(11000, withdraw) == (1000, "applied")
    assert subject_for("account:withdraw", "jim") == "account.withdraw.jim"
