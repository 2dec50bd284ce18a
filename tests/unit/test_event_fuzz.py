"""Fuzzing the event parser: any bytes either parse into a valid event or fail with EventError."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.events import MAX_EVENT_BYTES, AccountEvent, EventError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)

valid_events = st.builds(
    AccountEvent,
    id=st.text(alphabet="abcdef0123456789", min_size=1, max_size=32),
    type=st.sampled_from(["account:deposit", "account:withdraw"]),
    user_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    amount_cents=st.integers(1, 10**11),
    number=st.integers(1, 2**40),
    created_at=st.just("2026-11-26T10:00:00.000Z"),
)

FIELDS = ["id", "type", "userId", "amountCents", "number", "createdAt"]


def parse_or_error(payload: bytes, subject: str | None = None) -> AccountEvent | None:
    try:
        return AccountEvent.from_json(payload, subject)
    except EventError as exc:
        assert exc.field and exc.problem
        return None


@settings(max_examples=300)
@given(st.binary(max_size=MAX_EVENT_BYTES + 64))
def test_random_bytes_never_crash_the_parser(payload: bytes) -> None:
    parse_or_error(payload)


@settings(max_examples=300)
@given(valid_events, st.sampled_from(FIELDS), json_values)
def test_a_field_with_a_random_value_is_valid_or_named(event: AccountEvent, field: str, value: object) -> None:
    data = event.to_dict()
    data[field] = value
    payload = json.dumps(data).encode()
    parsed = parse_or_error(payload)
    if parsed is not None:
        assert parsed.to_dict() == data


@settings(max_examples=200)
@given(valid_events)
def test_valid_events_round_trip(event: AccountEvent) -> None:
    assert AccountEvent.from_json(event.to_json(), event.subject) == event


@settings(max_examples=100)
@given(st.text(min_size=1, max_size=80))
def test_markup_and_odd_user_ids_are_refused_unless_they_match_the_contract(user_id: str) -> None:
    data = {"id": "x", "type": "account:deposit", "userId": user_id, "amountCents": 1, "number": 1, "createdAt": "2026-11-26T10:00:00Z"}
    parsed = parse_or_error(json.dumps(data).encode())
    if parsed is not None:
        assert all(c.isascii() and (c.isalnum() or c in "_-") for c in parsed.user_id)
