"""What the dashboard knows about the partitioned group's partitions: plain data for the queue groups
pane (no Textual, no I/O).

The driver polls the partition consumers (`dashboard.lab.observe.partitions_seen`); this folds what
it saw with the listeners' statuses into one row per partition: who owns it now (the listener whose
status names the pin the server reports, docs/design.md "The partitioned group"), and its lag.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dashboard.lab.observe import PartitionsSeen
from listeners.groups import PARTITIONED_GROUP
from listeners.partitions import partition_owners
from listeners.status import ListenerStatus

if TYPE_CHECKING:
    from dashboard.ui.view import LabView

# The counters that say the number guard had to act: in a clean run a partitioned listener only ever
# gets each user's next number, so all of these stay 0.
GUARD_COUNTERS = ("duplicates", "deferred", "conflicts", "parked")

# What a partition's owner column says when no listener holds it.
FAILING_OVER = "none — failing over"
FAILING_OVER_SHORT = "failing over"
NO_LISTENER = "none — no listener runs"
IDLE = "—"
UNKNOWN = "new owner…"  # pinned to a listener that has not reported the pin yet
# A listener in one of these states pulls: it keeps what it owns, or stands by to take a partition over.
PULLING = frozenset({"running", "slow", "starting"})


@dataclass(frozen=True, slots=True)
class PartitionRow:
    """One partition as the pane shows it."""

    partition: int
    owner: str | None  # the listener that holds it now; None: nobody does
    owner_state: str | None  # that listener's state (running, killed, paused…) as the lab reports it
    pinned: bool  # the server has pinned it to someone (who may not have reported yet)
    lag: int
    # No live listener of the group: an unpinned partition with events has nobody to fail over to.
    orphaned: bool = False

    @property
    def label(self) -> str:
        return f"p{self.partition}"

    @property
    def owner_pulls(self) -> bool:
        """The owner runs (a killed or paused one keeps its pin until the server's priority timeout)."""
        return self.owner is not None and (self.owner_state is None or self.owner_state in PULLING)

    def owner_words(self, short: bool = False) -> str:
        """`P1`, `P1 killed` (the server keeps the pin for a moment), or who would take it."""
        if self.owner is not None:
            return self.owner if self.owner_pulls else f"{self.owner} {self.owner_state}"
        if self.pinned:
            return UNKNOWN
        if self.lag > 0:
            return NO_LISTENER if self.orphaned else FAILING_OVER_SHORT if short else FAILING_OVER
        return IDLE

    @property
    def waiting_for_owner(self) -> bool:
        """Events wait and no running listener takes them: a failover is under way (or cannot happen)."""
        owner_down = self.owner is not None and not self.owner_pulls
        return self.lag > 0 and (self.owner is None and not self.pinned or owner_down)


@dataclass(slots=True)
class OwnerTrack:
    """What the timeline knows of one partition's owner, so that it says only the real moves."""

    home: str | None = None  # the first listener seen owning it: the server pins a partition to its home first
    last: str | None = None  # the last listener seen owning it
    dropped: bool = False  # `last` was seen not pulling (killed, paused, stopped) since it took the partition
    said_none: bool = False  # a row said the partition has no owner while events wait

    def see(self, row: PartitionRow, states: dict[str, str]) -> str | None:
        """The timeline row for what changed about the partition's owner, if it is worth one."""
        if self.last is not None and states.get(self.last) not in PULLING:
            self.dropped = True
        owner = row.owner
        if owner is None:
            if row.pinned or self.last is None or row.lag == 0 or self.said_none:
                # a new owner has not reported its pin yet; nobody ever held it; or an idle partition's pin
                # merely expired: nothing waits for an owner
                return None
            self.said_none = True
            return f"{row.label} has no owner ({self.why_none()})"
        if self.last is None:  # nobody -> its first owner: the first events pin it to its home listener
            self.home = self.home or owner
            self.last = owner
            return None
        was, again, dropped = self.last, self.said_none, self.dropped
        self.last, self.dropped, self.said_none = owner, not row.owner_pulls, False
        if owner == was:
            return f"{row.label} owned by {owner} again" if again else None
        if owner == self.home:
            return f"{row.label} back with {owner} " + (f"(was {was}, which stopped pulling)" if dropped else f"(handed back by {was})")
        return f"{row.label} now owned by {owner} (was {was}" + (": a standby took it over)" if dropped else ")")

    def why_none(self) -> str:
        if self.dropped:
            return f"its owner {self.last} stopped pulling"
        if self.last != self.home:
            return f"{self.last} is handing it back"
        return f"the server dropped {self.last}'s pin"


def owner_moves(tracks: dict[int, OwnerTrack], rows: Iterable[PartitionRow], states: dict[str, str]) -> list[str]:
    """Timeline rows for the partitions whose owner changed since the last look (`tracks`, updated).
    A partition seen for the first time only starts its track: a dashboard attached to a running lab
    says nothing of the moves it did not see."""
    moves = []
    for row in rows:
        track = tracks.get(row.partition)
        if track is None:
            tracks[row.partition] = OwnerTrack(row.owner, row.owner)
        elif (move := track.see(row, states)) is not None:
            moves.append(move)
    return moves


@dataclass(slots=True)
class PartitionsView:
    """The partitioned group's partitions as the latest poll saw them; `seen` None: no partitioned
    stream (a lab without the group), or no poll yet."""

    seen: PartitionsSeen | None = None
    polled: bool = False  # a poll has answered, with or without the stream
    owners: dict[int, OwnerTrack] = field(default_factory=dict)  # what the timeline said of each owner

    def apply(self, seen: PartitionsSeen | None) -> bool:
        """Take a poll's answer; whether it changed what the pane shows."""
        changed = seen != self.seen or not self.polled
        self.seen, self.polled = seen, True
        return changed

    @property
    def count(self) -> int | None:
        return self.seen.count if self.seen is not None else None

    @property
    def lag(self) -> int | None:
        return self.seen.lag if self.seen is not None else None

    def rows(self, statuses: Iterable[ListenerStatus], states: dict[str, str]) -> list[PartitionRow]:
        """One row per partition; `statuses` are the group's listeners' last statuses, `states` their
        process states by name (a killed owner keeps its pin until the server's priority timeout)."""
        if self.seen is None:
            return []
        owners = partition_owners(self.seen.states, statuses)
        orphaned = not any(state in PULLING for state in states.values())
        rows = []
        for state in self.seen.states:
            owner = owners.get(state.partition)
            owner_state = states.get(owner) if owner is not None else None
            rows.append(PartitionRow(state.partition, owner, owner_state, state.pinned_id is not None, state.lag, orphaned))
        return rows



def has_partitioned(view: LabView) -> bool:
    """The lab has the partitioned group: its stream exists, or listeners of it run."""
    return view.partitions.seen is not None or bool(view.group_members(PARTITIONED_GROUP.name))


def partition_rows(view: LabView) -> list[PartitionRow]:
    members = view.group_members(PARTITIONED_GROUP.name)
    statuses = [member.status for member in members if member.status is not None]
    return view.partitions.rows(statuses, {member.name: member.state for member in members})


def partition_moves(view: LabView) -> list[str]:
    """Timeline rows for the partitions whose owner changed since the last poll (see `OwnerTrack`)."""
    states = {member.name: member.state for member in view.group_members(PARTITIONED_GROUP.name)}
    return owner_moves(view.partitions.owners, partition_rows(view), states)


def guard_acted(view: LabView, group: str = PARTITIONED_GROUP.name) -> int:
    """How often the number guard had to act in a group, over every process of its listeners:
    duplicates skipped, early events deferred, conflicts and parked events."""
    return sum(member.total(counter) for member in view.group_members(group) for counter in GUARD_COUNTERS)
