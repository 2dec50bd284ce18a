"""What a listener hands to its account database and gets back: deliveries and their outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from publisher.events import AccountEvent

Mode = Literal["guarded", "naive", "partitioned"]
MODES: tuple[Mode, ...] = ("guarded", "naive", "partitioned")


def guards(mode: str) -> bool:
    """Whether the group applies the number rule: the guarded group, and the partitioned one, where
    order comes from the partitions and the rule is a safety net."""
    return mode != "naive"
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


@dataclass(frozen=True, slots=True)
class RuleFacts:
    """What the rule that gave an outcome went by (docs/design.md, "Listener status"); None where a
    fact does not apply. The naive group has no number rule, so its outcomes carry no last numbers."""

    last_before: int | None = None  # the user's last number when the event was decided
    last_after: int | None = None
    balance_before: int | None = None  # cents; applied and rejected events only
    balance_after: int | None = None
    used_by: str | None = None  # a conflict: an id processed at its number, if one was recorded


@dataclass(slots=True)
class Outcome:
    delivery: Delivery
    kind: OutcomeKind
    facts: RuleFacts = RuleFacts()
    # The delivery's place in the batch as it was handed in; None for a parked event resolved in the
    # batch, which has no message to settle.
    index: int | None = None

    @property
    def unparked(self) -> bool:
        return self.index is None


@dataclass(slots=True)
class BatchResult:
    """A batch's outcomes in the order the account database took them: each user's events in number
    order, in the places of the batch where that user's deliveries were (so the batch's order across
    users is kept), a parked event resolved by the batch next to its predecessor, poison where it was
    delivered. The naive group takes every event as it comes: its order is the delivery order."""

    in_commit_order: list[Outcome]

    @property
    def outcomes(self) -> list[Outcome]:
        """The outcomes of the batch's deliveries, one each, in commit order."""
        return [o for o in self.in_commit_order if not o.unparked]

    @property
    def unparked(self) -> list[Outcome]:
        """The parked events the batch resolved (applied once their missing predecessor came, or found
        to be duplicates or conflicts), in commit order."""
        return [o for o in self.in_commit_order if o.unparked]
