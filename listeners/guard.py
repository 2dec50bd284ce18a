"""The sequence guard: the Account Service's rule for the order of one user's events.

The publisher numbers each user's events 1, 2, 3, ... The account database keeps, per user, the last
number it processed. An event is processed only when it is the next one; an event that arrives early is
deferred (NATS redelivers it later), and one already processed is a duplicate to acknowledge and drop.
"""

from __future__ import annotations

import enum


class Decision(enum.Enum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    DEFER = "defer"


class SequenceGuard:
    """The decision table, and how long to wait before an early event comes back."""

    def __init__(self, base_delay_s: float = 0.02, max_delay_s: float = 1.0) -> None:
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

    @staticmethod
    def decide(number: int, last_number: int) -> Decision:
        if number == last_number + 1:
            return Decision.APPLY
        if number <= last_number:
            return Decision.DUPLICATE
        return Decision.DEFER

    def defer_delay(self, delivery_count: int) -> float:
        """Nak delay for an early event: short at first, doubling with each delivery, capped."""
        exponent = max(0, min(delivery_count - 1, 30))
        return min(self.base_delay_s * (2**exponent), self.max_delay_s)
