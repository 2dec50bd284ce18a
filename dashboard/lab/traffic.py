"""Random traffic: the one generator of deposits and withdrawals behind `b` (burst), `publish --random`,
scenarios, chaos runs and the benchmark.

Deposits outnumber withdrawals, so balances grow and most withdrawals succeed; a withdrawal larger
than the balance is rejected by the business rule, which is part of what the lab shows.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from publisher.service import Publisher

DEPOSIT_SHARE = 0.6
MAX_DOLLARS = 200

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
