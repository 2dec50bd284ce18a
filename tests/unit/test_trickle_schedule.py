"""The trickle's schedule: due times count from the start, a stall is skipped, not made up in a burst.

The trickle against a real publisher and server is in tests/integration/test_trickle.py."""

from __future__ import annotations

import random

import pytest

from dashboard.lab.traffic import next_due, trickle


def test_the_trickle_keeps_its_schedule_when_every_wake_up_is_late() -> None:
    """Each due time counts from the start: 100 wake-ups, each 60 ms late, still end at 100 periods."""
    period, due = 0.2, 0.0
    for _ in range(100):
        due = next_due(due, period, now=due + 0.06)
    assert due == pytest.approx(100 * period)


def test_the_trickle_catches_up_a_short_delay_and_skips_a_stall() -> None:
    # Late by less than a period: the next one is still due at its own time (sent at once).
    assert next_due(0.0, 0.2, now=0.35) == pytest.approx(0.2)
    # After a 5 s stall, no burst of 25 to catch up: the pace starts again from now.
    assert next_due(0.0, 0.2, now=5.0) == pytest.approx(5.0)


@pytest.mark.parametrize(("rate", "users"), [(0.0, ["ann"]), (-1.0, ["ann"]), (5.0, [])])
async def test_the_trickle_refuses_a_rate_or_users_it_cannot_keep(rate: float, users: list[str]) -> None:
    with pytest.raises(ValueError):
        await trickle(None, random.Random(1), users, rate)  # type: ignore[arg-type]
