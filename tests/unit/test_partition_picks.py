"""What the partitioned scenarios compute without a lab: users picked by partition, names in
captions, and times from the databases' rows."""

from __future__ import annotations

from dashboard.lab.partition_probes import Applied, Spread, done_after, in_partition, latencies, pick_users, unix_time
from dashboard.lab.partition_scenarios import NAMES, listing, ownership
from listeners.partitions import partition_of
from publisher.events import AccountEvent


def test_picks_are_fresh_names_that_fit_and_are_remembered() -> None:
    taken = {"amy"}
    assert pick_users(["amy", "bob"], 3, lambda user: True, taken) == ["bob", "amy2", "bob2"]
    assert {"amy2", "bob2"} <= taken
    mates = pick_users(NAMES, 3, in_partition(partition_of("hot", 3), 3), taken)
    assert len(set(mates)) == 3 and all(partition_of(user, 3) == partition_of("hot", 3) for user in mates)
    assert not {"bob", "amy2", "bob2"} & set(mates)


def test_captions_name_users_and_owners_in_plain_words() -> None:
    assert listing(["amy"]) == "Amy"
    assert listing(["amy", "bob", "cat"]) == "Amy, Bob and Cat"
    users_of = {0: ["amy", "dan"], 1: ["bob"], 2: ["cat"], 3: []}
    found = {0: "P1", 1: "P2", 2: "P1", 3: None}
    assert ownership(found, users_of) == "P1 owns p0 (Amy and Dan) and p2 (Cat); P2 owns p1 (Bob)"


def test_times_come_from_the_event_stamp_and_the_first_batch_that_applied_it() -> None:
    created = "2026-11-28T20:00:00.000000Z"
    at = unix_time(created)
    events = [
        AccountEvent("e1", "account:deposit", "amy", 100, 1, created),
        AccountEvent("e2", "account:deposit", "amy", 100, 2, created),
    ]
    rows = [
        Applied("amy", 1, "P1", 1, at + 0.5),
        Applied("amy", 2, "P2", 2, at + 3.0),
        Applied("amy", 2, "N1", 3, at + 9.0),
    ]
    assert latencies(events, rows) == [0.5, 3.0]
    assert done_after(rows[:2], ["amy"], at) == 3.0
    assert str(Spread.of([0.5, 3.0, 1.0])) == "median 1.00 s, longest 3.0 s"
    assert Spread.of([]) == Spread(0.0, 0.0)
