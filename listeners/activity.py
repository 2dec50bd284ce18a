"""What a listener has done and holds: its counters, its events in flight and its recent outcomes,
from which it builds its status message (docs/design.md, "Listener status")."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from listeners.outcomes import Delivery, Outcome, RuleFacts
from listeners.status import COUNTERS, Counts, DeliveryReport
from publisher.events import utc_now_iso

MAX_STATUS_DELIVERIES = 200
MAX_STATUS_IN_FLIGHT = 25
# Outcome kind -> its counter, where the names differ.
_COUNTER_OF = {"duplicate": "duplicates", "conflict": "conflicts"}


def report_of(delivery: Delivery) -> DeliveryReport:
    """How the status message describes a delivery."""
    event = delivery.event
    if event is None:
        return DeliveryReport(
            delivery.stream_seq, delivery.delivery_count, subject=delivery.subject, reason=delivery.poison_reason
        )
    return DeliveryReport(
        delivery.stream_seq,
        delivery.delivery_count,
        event.id,
        event.user_id,
        event.number,
        event.type,
        event.amount_cents,
    )


def _facts(facts: RuleFacts) -> dict[str, Any]:
    return {f.name: getattr(facts, f.name) for f in fields(facts)}


class Activity:
    def __init__(self) -> None:
        self.counters = Counts()
        # What each worker holds (one worker, 0, except in a partitioned listener: one per partition),
        # and since when (Unix time of the fetch that brought it).
        self._held: dict[int, list[Delivery]] = {}
        self._held_since: dict[int, float] = {}
        self.last_outcome: DeliveryReport | None = None
        self._recent: deque[DeliveryReport] = deque(maxlen=MAX_STATUS_DELIVERIES)
        self._seq = 0

    def holding(self, deliveries: list[Delivery], fetched_now: bool, worker: int = 0) -> None:
        self._held[worker] = deliveries
        if fetched_now:
            self._held_since[worker] = time.time()
        elif not deliveries:
            self._held_since.pop(worker, None)

    @property
    def in_flight(self) -> list[Delivery]:
        return [delivery for held in self._held.values() for delivery in held]

    @property
    def in_flight_since(self) -> float | None:
        return min(self._held_since.values(), default=None)

    def record(self, outcomes: Iterable[Outcome]) -> None:
        """Count settled outcomes and keep them for the next status message, numbered in the order
        given (the commit order); unparked outcomes are parked events resolved without a delivery, so
        they count as unparked and not as redelivered."""
        now = utc_now_iso()
        counted = dict.fromkeys(COUNTERS, 0)
        for outcome in outcomes:
            counted[_COUNTER_OF.get(outcome.kind, outcome.kind)] += 1
            if outcome.unparked:
                counted["unparked"] += 1
            elif outcome.delivery.delivery_count > 1:
                counted["redelivered"] += 1
            self._seq += 1
            entry = report_of(outcome.delivery).settled(self._seq, outcome.kind, now, **_facts(outcome.facts))
            self._recent.append(entry)
            self.last_outcome = entry
        self.counters += Counts(**counted)

    def take_recent(self) -> tuple[DeliveryReport, ...]:
        """The outcomes settled since the last call: each goes out in one status message."""
        recent = tuple(self._recent)
        self._recent.clear()
        return recent

    def status_fields(self, waiting: list[Delivery] | None = None) -> dict[str, Any]:
        """What the status message says of this activity, with the events `waiting` for a worker (a
        partitioned listener's queues); the outcomes settled since the last call go once."""
        held = self.in_flight + (waiting or [])
        return {
            "counters": self.counters,
            "in_flight_count": len(held),
            "in_flight": tuple(report_of(d) for d in held[:MAX_STATUS_IN_FLIGHT]),
            "in_flight_since": self.in_flight_since,
            "last_event": self.last_outcome,
            "deliveries": self.take_recent(),
        }
