"""Questions the partitioned scenarios ask a running lab (see `partition_scenarios`): which users
share a partition, who owns each partition now, and when each event was applied and how long after
it was created (the check judges the partitioned database: docs/design.md, "Checker invariants").

Times come from the databases, not from polling: each `applied_events` row has the time its batch
was decided (after any slowness), and each event the time the publisher stamped on it, both UTC on
this machine. So a figure does not depend on how often a scenario looks, nor on a reader's pauses.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from dashboard.lab.lab import Lab
from dashboard.lab.probes import alive, wait_listeners_ready
from listeners.accounts import Mode, accounts_db_name
from listeners.partitions import partition_of, partition_owners, partition_states
from publisher.events import AccountEvent
from publisher.sqlite import DatabaseUnavailable, fetch_all, read_only


def unix_time(iso: str) -> float:
    """`2026-11-28T20:05:59.123456Z` -> seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def at_least(lab: Lab, mode: Mode, count: int) -> list[str]:
    """At least `count` live listeners of `mode` (added when the lab has fewer), ready; their names."""
    while len(alive(lab, mode)) < count:
        await lab.control("add", mode=mode)
    await wait_listeners_ready(lab)
    return alive(lab, mode)


def pick_users(bases: Sequence[str], count: int, fits: Callable[[str], bool], taken: set[str]) -> list[str]:
    """`count` users that `fits` accepts and `taken` does not hold: each base, then base2, base3...
    in turn. The chosen ones are added to `taken`, so the next pick gives others."""
    chosen: list[str] = []
    suffix = 1
    while len(chosen) < count:
        for base in bases:
            name = base if suffix == 1 else f"{base}{suffix}"
            if name not in taken and fits(name):
                chosen.append(name)
                taken.add(name)
                if len(chosen) == count:
                    break
        suffix += 1
    return chosen


def in_partition(partition: int, partitions: int) -> Callable[[str], bool]:
    return lambda user: partition_of(user, partitions) == partition


async def owners(lab: Lab) -> dict[int, str | None]:
    """Partition -> the listener the server pinned it to now (a dead one's last status still names its
    pin until the server lets it go); None when nobody holds it."""
    assert lab.nc is not None
    states = await partition_states(lab.nc, lab.settings.partitions)
    return partition_owners(states, lab.statuses.values())


async def owner_of(lab: Lab, partition: int) -> str | None:
    return (await owners(lab)).get(partition)


def held_count(lab: Lab, name: str) -> int:
    """How many events listener `name` said it holds, as of its last status."""
    status = lab.statuses.get(name)
    return status.in_flight_count if status is not None else 0


# -- what the databases say -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    """One processed event, from a group's `applied_events`."""

    user_id: str
    number: int
    listener: str
    delivery_count: int
    at: float  # Unix time of the batch that processed it


async def applied_rows(lab: Lab, mode: Mode, users: Iterable[str]) -> list[Applied]:
    """What group `mode` processed of `users`, in commit order."""
    path = lab.settings.data_dir / accounts_db_name(mode)
    wanted = sorted(set(users))
    if not path.exists() or not wanted:
        return []
    marks = ", ".join("?" for _ in wanted)
    try:
        async with read_only(path) as db:
            rows = await fetch_all(
                db,
                "SELECT user_id, number, listener, delivery_count, applied_at FROM applied_events"
                f" WHERE user_id IN ({marks}) ORDER BY rowid",
                wanted,
            )
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(path, exc) from exc
    return [Applied(user, number, listener, count, unix_time(at)) for user, number, listener, count, at in rows]


def first_applied(rows: Iterable[Applied]) -> dict[tuple[str, int], Applied]:
    """(user, number) -> the row that first processed it (a duplicate is never a second row, but a
    naive group's could be)."""
    first: dict[tuple[str, int], Applied] = {}
    for row in rows:
        first.setdefault((row.user_id, row.number), row)
    return first


def latencies(events: Iterable[AccountEvent], rows: Iterable[Applied]) -> list[float]:
    """Seconds from each event's creation (the publisher's stamp) to the batch that applied it, for
    the events that were applied."""
    first = first_applied(rows)
    return [
        first[(event.user_id, event.number)].at - unix_time(event.created_at)
        for event in events
        if (event.user_id, event.number) in first
    ]


def done_after(rows: Iterable[Applied], users: Iterable[str], since: float) -> float:
    """Seconds from `since` to the last processed event of `users`."""
    wanted = set(users)
    return max((row.at for row in rows if row.user_id in wanted), default=since) - since


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    longest: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), max(values)) if values else cls(0.0, 0.0)

    def __str__(self) -> str:
        return f"median {self.median:.2f} s, longest {self.longest:.1f} s"
