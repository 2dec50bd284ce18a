"""The sequence guard: the Account Service's rule for the order and identity of one user's events.

The publisher numbers each user's events 1, 2, 3, ... The account database keeps, per user, the last
number it processed and the id of the event processed at each number. An event is processed only when
it is the next one. One that arrives early is deferred (NATS redelivers it later). One at or below the
last number is a duplicate to acknowledge and drop only when it is the very event processed at that
number (same id); a different event with a used number is a conflict, recorded and never applied.
An early event whose predecessor does not come within the gap timeout is parked: recorded and taken
off the group's hands, to be applied by itself once the missing event arrives.
"""

from __future__ import annotations

import enum

# The gap timeout, in ack waits, when none is given.
GAP_TIMEOUT_ACK_WAITS = 10


class Decision(enum.Enum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    DEFER = "defer"
    PARK = "park"


class SequenceGuard:
    """The decision table, how long to wait before an early event comes back, and when to stop waiting."""

    def __init__(self, base_delay_s: float = 0.02, max_delay_s: float = 1.0, gap_timeout_s: float = 50.0) -> None:
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.gap_timeout_s = gap_timeout_s

    @staticmethod
    def decide(number: int, last_number: int) -> Decision:
        """By number alone: APPLY, DEFER, or DUPLICATE, which `identify` then confirms by id."""
        if number == last_number + 1:
            return Decision.APPLY
        if number <= last_number:
            return Decision.DUPLICATE
        return Decision.DEFER

    @staticmethod
    def identify(event_id: str, applied_ids: set[str]) -> Decision:
        """An event at or below the last number: the same event again, or another one with its number."""
        return Decision.DUPLICATE if event_id in applied_ids else Decision.CONFLICT

    def wait_or_park(self, waited_s: float) -> Decision:
        """An early event, when its user has been stuck at the same last number for `waited_s`."""
        return Decision.PARK if waited_s >= self.gap_timeout_s else Decision.DEFER

    def defer_delay(self, delivery_count: int) -> float:
        """Nak delay for an early event: short at first, doubling with each delivery, capped."""
        exponent = max(0, min(delivery_count - 1, 30))
        return min(self.base_delay_s * (2**exponent), self.max_delay_s)
