"""What a listener hands to its account database and gets back: deliveries and their outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from publisher.events import AccountEvent

Mode = Literal["guarded", "naive"]
OutcomeKind = Literal["applied", "rejected", "duplicate", "conflict", "deferred", "parked", "poison"]


class ConcurrentUpdate(RuntimeError):
    """Another listener changed an account between our read and our write; nothing was committed."""


@dataclass(slots=True)
class Delivery:
    """One delivery of one stream message to this listener, parsed or found to be poison."""

    stream_seq: int
    delivery_count: int
    subject: str
    payload: bytes
    event: AccountEvent | None
    poison_reason: str | None = None


@dataclass(slots=True)
class Outcome:
    delivery: Delivery
    kind: OutcomeKind


@dataclass(slots=True)
class BatchResult:
    """A batch's outcomes in delivery order, and the parked events it resolved (applied once their
    missing predecessor came, or found to be duplicates or conflicts): those have no message to settle."""

    outcomes: list[Outcome]
    unparked: list[Outcome]
