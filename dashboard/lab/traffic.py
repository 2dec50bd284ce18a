"""Random traffic: the one generator of deposits and withdrawals behind `b` (burst), the trickle,
`publish --random`, scenarios, chaos runs and the benchmark.

Deposits outnumber withdrawals, so balances grow and most withdrawals succeed; a withdrawal larger
than the balance is rejected by the business rule, which is part of what the lab shows.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator, Sequence

from publisher.events import AccountEvent
from publisher.service import Publisher

DEPOSIT_SHARE = 0.6
MAX_DOLLARS = 200

# The trickle's default pace. A burst of 50 is applied in about 30 ms, so a kill "while events flow"
# finds nothing in flight; at 5 events/s a slowed or busy listener is caught holding one most of the
# time, and a person can still follow each event on the timeline.
TRICKLE_RATE = 5.0

Request = tuple[str, str, int]  # (kind, user id, amount in cents)


def user_names(count: int) -> list[str]:
    """`user1`, `user2`, ... `user<count>`."""
    return [f"user{index + 1}" for index in range(count)]


def random_requests(rng: random.Random, users: Sequence[str], count: int) -> Iterator[Request]:
    """`count` requests for users drawn from `users`: whole dollars from $1 to $MAX_DOLLARS."""
    for _ in range(count):
        kind = "deposit" if rng.random() < DEPOSIT_SHARE else "withdraw"
        yield kind, rng.choice(users), rng.randint(1, MAX_DOLLARS) * 100


async def record_random(publisher: Publisher, rng: random.Random, users: Sequence[str], count: int) -> None:
    """Record `count` random transactions through the outbox; the relay publishes them."""
    for kind, user, cents in random_requests(rng, users, count):
        await publisher.record(kind, user, cents)


def next_due(due: float, period: float, now: float) -> float:
    """When the trickle's next event is due, after the one due at `due` was recorded at `now`.

    Due times are counted from the start (`due + period`), not from when a sleep happened to end, so
    late wake-ups do not add up to a slower rate. After a stall longer than one period (a busy SQLite,
    a loaded machine), the missed events are skipped rather than sent in a burst to catch up: the
    trickle keeps a pace, it does not fill a quota.
    """
    following = due + period
    return following if following >= now - period else now


async def trickle(
    publisher: Publisher,
    rng: random.Random,
    users: Sequence[str],
    rate: float = TRICKLE_RATE,
    *,
    on_recorded: Callable[[AccountEvent], object] | None = None,
) -> None:
    """Record random transactions for `users` at `rate` a second, through the outbox, until cancelled.

    The first one is recorded at once. `on_recorded` is called with each event once it is committed
    (the relay publishes it shortly after). Cancelling it while it records still leaves that
    transaction written (see `Publisher.record`); the cancellation then ends the trickle.
    """
    if not rate > 0:
        raise ValueError(f"the trickle's rate must be positive, not {rate!r}")
    if not users:
        raise ValueError("the trickle needs at least one user")
    period = 1.0 / rate
    due = time.monotonic()
    while True:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        kind, user, cents = next(random_requests(rng, users, 1))
        event = await publisher.record(kind, user, cents)
        if on_recorded is not None:
            on_recorded(event)
        due = next_due(due, period, time.monotonic())
