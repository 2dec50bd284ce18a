"""What `Lab.control` says a fault did, from what the listener's status said it held.

The same against real listener processes is in tests/integration/test_fault_hints.py."""

from __future__ import annotations

import pytest

from dashboard.lab.lab import held_hint
from listeners.status import DeliveryReport, ListenerStatus


def holding(*numbers: int) -> ListenerStatus:
    held = tuple(DeliveryReport(n, 1, f"e{n}", "jim", n, "account:deposit", 4000) for n in numbers)
    return ListenerStatus("B", 42, "guarded", "account-service", "slow", in_flight_count=len(numbers), in_flight=held)


@pytest.mark.parametrize(
    ("action", "numbers", "sentence"),
    [
        ("kill", (), "its last report held nothing, so likely nothing comes back; what it fetched since comes back after the ack wait (5 s)"),
        ("restart", (), "its last report held nothing, so likely nothing comes back; what it fetched since comes back after the ack wait (5 s)"),
        ("kill", (2,), "it held 1 event (jim #2 deposit $40); it comes back after the ack wait (5 s)"),
        ("restart", (2, 3), "it held 2 events (jim #2 deposit $40 and jim #3 deposit $40); they come back after the ack wait (5 s)"),
        ("kill", (2, 3, 4, 5, 6), "it held 5 events (jim #2 deposit $40, jim #3 deposit $40, jim #4 deposit $40 and 2 more);"
         " they come back after the ack wait (5 s)"),
        ("pause", (), "its last report held nothing; what it fetched since goes to the other listeners after the ack wait (5 s)"),
        ("pause", (2,), "it holds 1 event (jim #2 deposit $40); past the ack wait (5 s) it goes to the other listeners"),
        ("crash", (), "it holds nothing now: it dies on the next event it commits, which comes back after the ack wait (5 s)"),
        ("crash", (2,), "it holds 1 event (jim #2 deposit $40); once it dies, it comes back after the ack wait (5 s)"),
    ],
)  # fmt: skip
def test_a_fault_says_what_the_listener_held(action: str, numbers: tuple[int, ...], sentence: str) -> None:
    assert held_hint(action, holding(*numbers), 5.0) == sentence  # type: ignore[arg-type]
