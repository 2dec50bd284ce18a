"""The account event contract: subjects, the event JSON, validation and money parsing.

Every program that publishes or consumes account events goes through this module, so the contract
(docs/design.md, "Subjects and stream" and "Event JSON") is coded exactly once.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

STREAM_NAME = "ACCOUNT_EVENTS"
SUBJECT_PREFIX = "account"
STREAM_SUBJECTS = ("account.deposit.*", "account.withdraw.*")

EventType = Literal["account:deposit", "account:withdraw"]
EVENT_TYPES: tuple[EventType, ...] = ("account:deposit", "account:withdraw")
KINDS = ("deposit", "withdraw")

USER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_EVENT_BYTES = 4096
# Amounts above this are refused: they are typos, and they keep balances inside SQLite's int64.
MAX_AMOUNT_CENTS = 1_000_000_000_00

_FIELDS = ("id", "type", "userId", "amountCents", "number", "createdAt")


class EventError(ValueError):
    """An event or a publish request that breaks the contract; the message names field and problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def validate_user_id(user_id: object, field: str = "userId") -> str:
    if not isinstance(user_id, str):
        raise EventError(field, f"must be a string, got {type(user_id).__name__}")
    if not USER_ID_RE.fullmatch(user_id):
        raise EventError(field, "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return user_id


def kind_to_type(kind: str) -> EventType:
    """`deposit` or `withdraw` (or the full `account:...` name) to the event type."""
    name = kind if kind.startswith("account:") else f"account:{kind}"
    if name not in EVENT_TYPES:
        raise EventError("kind", f"must be deposit or withdraw, got {kind!r}")
    return name  # type: ignore[return-value]


def subject_for(event_type: EventType, user_id: str) -> str:
    """`account:deposit` + `jim` -> `account.deposit.jim`."""
    return f"{SUBJECT_PREFIX}.{event_type.split(':', 1)[1]}.{user_id}"


def channel_of_subject(subject: str) -> str:
    """`account.deposit.jim` -> `account:deposit`, the channel name the seed uses."""
    parts = subject.split(".")
    return f"{parts[0]}:{parts[1]}" if len(parts) >= 2 else subject


def parse_amount(text: str) -> int:
    """Dollars as typed by a person (`70`, `70.5`, `70.50`, `$1,000`) to integer cents."""
    cleaned = text.strip().removeprefix("$").replace(",", "").replace("_", "")
    if not re.fullmatch(r"\d+(\.\d{1,2})?|\.\d{1,2}", cleaned):
        raise EventError("amount", f"{text!r} is not an amount like 70 or 70.50")
    try:
        cents = int(Decimal(cleaned) * 100)
    except InvalidOperation:  # pragma: no cover - the regex above admits only decimals
        raise EventError("amount", f"{text!r} is not an amount like 70 or 70.50") from None
    if cents <= 0:
        raise EventError("amount", "must be greater than zero")
    if cents > MAX_AMOUNT_CENTS:
        raise EventError("amount", f"must be at most {format_cents(MAX_AMOUNT_CENTS)}")
    return cents


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}${whole:,}" if frac == 0 else f"{sign}${whole:,}.{frac:02d}"


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_event_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """One account event: the user's `number`-th transaction."""

    id: str
    type: EventType
    user_id: str
    amount_cents: int
    number: int
    created_at: str

    @property
    def subject(self) -> str:
        return subject_for(self.type, self.user_id)

    @property
    def is_deposit(self) -> bool:
        return self.type == "account:deposit"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "userId": self.user_id,
            "amountCents": self.amount_cents,
            "number": self.number,
            "createdAt": self.created_at,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: object) -> AccountEvent:
        if not isinstance(data, dict):
            raise EventError("event", f"must be a JSON object, got {type(data).__name__}")
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise EventError(missing[0], "is missing")
        event_id = data["id"]
        if not isinstance(event_id, str) or not 1 <= len(event_id) <= 128:
            raise EventError("id", "must be a string of 1-128 characters")
        event_type = data["type"]
        if event_type not in EVENT_TYPES:
            raise EventError("type", f"must be one of {', '.join(EVENT_TYPES)}")
        user_id = validate_user_id(data["userId"])
        amount = data["amountCents"]
        if type(amount) is not int:
            raise EventError("amountCents", f"must be an integer, got {type(amount).__name__}")
        if amount <= 0:
            raise EventError("amountCents", "must be positive")
        if amount > MAX_AMOUNT_CENTS:
            raise EventError("amountCents", f"must be at most {MAX_AMOUNT_CENTS}")
        number = data["number"]
        if type(number) is not int:
            raise EventError("number", f"must be an integer, got {type(number).__name__}")
        if not 1 <= number < 2**62:
            raise EventError("number", "must be a positive integer")
        created_at = data["createdAt"]
        if not isinstance(created_at, str):
            raise EventError("createdAt", "must be an ISO-8601 string")
        try:
            datetime.fromisoformat(created_at.replace("Z", "+00:00"))
        except ValueError:
            raise EventError("createdAt", "must be an ISO-8601 timestamp") from None
        return cls(event_id, event_type, user_id, amount, number, created_at)

    @classmethod
    def from_json(cls, payload: bytes, subject: str | None = None) -> AccountEvent:
        """Parse and validate a payload; with `subject`, also check it matches the event."""
        if len(payload) > MAX_EVENT_BYTES:
            raise EventError("payload", f"is {len(payload)} bytes, over the {MAX_EVENT_BYTES} limit")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise EventError("payload", "is not UTF-8") from None
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise EventError("payload", "is not valid JSON") from None
        event = cls.from_dict(data)
        if subject is not None and subject != event.subject:
            raise EventError("subject", f"{subject!r} does not match the event (expected {event.subject!r})")
        return event

    @classmethod
    def new(cls, kind: str, user_id: str, amount_cents: int, number: int) -> AccountEvent:
        return cls.from_dict(
            {
                "id": new_event_id(),
                "type": kind_to_type(kind),
                "userId": user_id,
                "amountCents": amount_cents,
                "number": number,
                "createdAt": utc_now_iso(),
            }
        )

    def describe(self) -> str:
        """`jim #3 withdraw $100`: how the UI and the CLI name an event."""
        return f"{self.user_id} #{self.number} {self.type.split(':')[1]} {format_cents(self.amount_cents)}"


def apply_business_rule(balance_cents: int, event: AccountEvent) -> tuple[int, str]:
    """The account rule: deposits add; a withdrawal above the balance is rejected.

    Returns the new balance and the outcome (`applied` or `rejected`).
    """
    if event.is_deposit:
        return balance_cents + event.amount_cents, "applied"
    if event.amount_cents > balance_cents:
        return balance_cents, "rejected"
    return balance_cents - event.amount_cents, "applied"
