"""The timeline rows for a partition's owner moving (`owner_moves`), from plain rows as the dashboard
folds each poll: a standby taking over, a hand-back, a partition left with events and no owner; and
no row for the first pins or an idle pin expiring."""

from __future__ import annotations

from dashboard.ui.partitions_view import OwnerTrack, PartitionRow, owner_moves

RUNNING = {"P1": "running", "P2": "running"}
P1_KILLED = {"P1": "killed", "P2": "running"}


def row(partition: int, owner: str | None, *, pinned: bool | None = None, lag: int = 0, state: str = "running") -> PartitionRow:
    pinned = owner is not None if pinned is None else pinned
    return PartitionRow(partition, owner, state if owner else None, pinned, lag)


def looks(*polls: tuple[list[PartitionRow], dict[str, str]]) -> list[str]:
    tracks: dict[int, OwnerTrack] = {}
    return [move for rows, states in polls for move in owner_moves(tracks, rows, states)]


def test_the_first_pins_at_start_make_no_row() -> None:
    # p0 and p2 idle and unpinned at first, then the first events pin them to their home listeners.
    assert looks(
        ([row(0, None), row(1, None), row(2, None)], RUNNING),
        ([row(0, None, pinned=True, lag=1), row(1, "P2"), row(2, None)], RUNNING),  # P1 has not reported its pin yet
        ([row(0, "P1"), row(1, "P2"), row(2, "P1")], RUNNING),
    ) == []


def test_a_dashboard_attached_to_a_running_lab_says_nothing_of_moves_it_did_not_see() -> None:
    assert looks(([row(0, "P2"), row(1, "P2")], RUNNING)) == []


def test_a_killed_owners_partition_with_events_goes_to_a_standby_and_back() -> None:
    assert looks(
        ([row(0, "P1"), row(1, "P2"), row(2, "P1")], RUNNING),
        ([row(0, "P1", state="killed"), row(1, "P2"), row(2, "P1", lag=2, state="killed")], P1_KILLED),  # pin kept a moment
        ([row(0, None), row(1, "P2"), row(2, None, lag=2)], P1_KILLED),  # p0 idle: its pin just expires
        ([row(0, None), row(1, "P2"), row(2, None, pinned=True, lag=2)], P1_KILLED),  # P2's status not in yet
        ([row(0, None), row(1, "P2"), row(2, "P2", lag=2)], P1_KILLED),
        ([row(0, None), row(1, "P2"), row(2, "P2")], {"P1": "starting", "P2": "running"}),
        ([row(0, "P1"), row(1, "P2"), row(2, "P2")], RUNNING),  # P1 back: p0's next event pins it to P1 again
        ([row(0, "P1"), row(1, "P2"), row(2, None)], RUNNING),  # P2 hands p2 back: idle, no row
        ([row(0, "P1"), row(1, "P2"), row(2, "P1")], RUNNING),
    ) == [
        "p2 has no owner (its owner P1 stopped pulling)",
        "p2 now owned by P2 (was P1: a standby took it over)",
        "p2 back with P1 (handed back by P2)",
    ]


def test_a_killed_owner_of_an_idle_partition_makes_a_row_only_when_it_moves() -> None:
    assert looks(
        ([row(1, "P2")], RUNNING),
        ([row(1, "P2", state="killed")], {"P1": "running", "P2": "killed"}),
        ([row(1, None)], {"P1": "running", "P2": "killed"}),  # idle: the pin expires, nothing waits
        ([row(1, None, lag=1)], {"P1": "running", "P2": "killed"}),  # an event comes: now it needs an owner
        ([row(1, None, lag=1)], {"P1": "running", "P2": "killed"}),  # said once
        ([row(1, "P1", lag=1)], {"P1": "running", "P2": "killed"}),
    ) == ["p1 has no owner (its owner P2 stopped pulling)", "p1 now owned by P1 (was P2: a standby took it over)"]


def test_an_owner_that_gets_its_partition_again_after_a_gap_says_so() -> None:
    # The server forgot the pins (a restart) while events wait; the home listener asks first and gets it back.
    assert looks(
        ([row(0, "P1")], RUNNING),
        ([row(0, None, lag=3)], RUNNING),
        ([row(0, "P1", lag=3)], RUNNING),
        ([row(0, None)], RUNNING),  # idle again, the pin expires: no row
        ([row(0, "P1")], RUNNING),
    ) == ["p0 has no owner (the server dropped P1's pin)", "p0 owned by P1 again"]


def test_a_home_listener_taking_back_from_a_standby_that_died_says_who_stopped() -> None:
    assert looks(
        ([row(0, "P1")], RUNNING),
        ([row(0, "P2")], P1_KILLED),
        ([row(0, "P2", state="killed")], {"P1": "running", "P2": "killed"}),
        ([row(0, "P1")], {"P1": "running", "P2": "killed"}),
    ) == ["p0 now owned by P2 (was P1: a standby took it over)", "p0 back with P1 (was P2, which stopped pulling)"]
