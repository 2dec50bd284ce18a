"""The sequence guard's decision table."""

from __future__ import annotations

import pytest

from listeners.guard import Decision, SequenceGuard


@pytest.mark.parametrize(
    ("number", "last", "decision"),
    [
        (1, 0, Decision.APPLY),
        (4, 3, Decision.APPLY),
        (3, 3, Decision.DUPLICATE),
        (1, 3, Decision.DUPLICATE),
        (3, 1, Decision.DEFER),
        (2, 0, Decision.DEFER),
    ],
)
def test_decision_table(number: int, last: int, decision: Decision) -> None:
    assert SequenceGuard.decide(number, last) is decision


def test_defer_delay_grows_and_is_capped() -> None:
    guard = SequenceGuard(base_delay_s=0.02, max_delay_s=1.0)
    delays = [guard.defer_delay(n) for n in range(1, 12)]
    assert delays[0] == 0.02
    assert all(a <= b for a, b in zip(delays, delays[1:]))
    assert delays[-1] == 1.0
    assert guard.defer_delay(10**6) == 1.0
