"""The partitioned group in the dashboard's view: who owns each partition, its lag, the guard's count,
the third accounts column and its verdict, both the checker's; no Textual, no I/O."""

from __future__ import annotations

from dashboard_fakes import JIM_AND_MARY, JIM_AND_MARY_APPLIED, channels, database, partition, report, rows, status

from dashboard.lab.observe import PartitionsSeen
from dashboard.lab.supervisor import Member
from dashboard.ui.partitions_view import FAILING_OVER, IDLE, NO_LISTENER, UNKNOWN, guard_acted, partition_rows
from dashboard.ui.view import LabView
from dashboard.ui.widgets.status_line import verdict_text
from listeners.groups import PARTITIONED_GROUP, group_for_mode


def member(name: str, mode: str, pid: int, state: str = "running") -> Member:
    return Member(name, mode, group_for_mode(mode).name, pid, state, 0)  # type: ignore[arg-type]


def partitioned_lab() -> LabView:
    """P1 owns p0 and p2, P2 owns p1, as their statuses and the server's pins say."""
    view = LabView()
    view.apply_members([member("P1", "partitioned", 11), member("P2", "partitioned", 12)])
    view.apply_status(status("P1", 11, "partitioned", partitions={0: "pin-0", 2: "pin-2"}))
    view.apply_status(status("P2", 12, "partitioned", partitions={1: "pin-1"}))
    return view


def owners(view: LabView) -> list[tuple[str, str, int]]:
    return [(row.label, row.owner_words(), row.lag) for row in partition_rows(view)]


def test_each_partition_names_the_listener_whose_status_holds_the_servers_pin() -> None:
    view = partitioned_lab()
    assert partition_rows(view) == []  # no poll yet: nothing to say who owns what
    view.apply_partitions(
        PartitionsSeen(3, (partition(0, "pin-0", delivered=4), partition(1, "pin-1", pending=3), partition(2, "pin-2")))
    )
    assert owners(view) == [("p0", "P1", 0), ("p1", "P2", 3), ("p2", "P1", 0)]
    assert view.partitions.lag == 3


def test_a_killed_owner_keeps_its_pin_a_moment_then_its_partition_fails_over() -> None:
    view = partitioned_lab()
    view.apply_members([member("P1", "partitioned", 11, "killed")])
    # The server still pins p2 to the dead P1 (no pull for less than the priority timeout yet).
    view.apply_partitions(PartitionsSeen(3, (partition(0, None), partition(1, "pin-1"), partition(2, "pin-2", pending=2))))
    rows_now = partition_rows(view)
    assert owners(view) == [("p0", IDLE, 0), ("p1", "P2", 0), ("p2", "P1 killed", 2)]
    assert [row.waiting_for_owner for row in rows_now] == [False, False, True]
    # Unpinned, with events waiting: a standby (P2) is about to take it.
    view.apply_partitions(PartitionsSeen(3, (partition(0, None), partition(1, "pin-1"), partition(2, None, pending=2))))
    assert owners(view)[2] == ("p2", FAILING_OVER, 2)
    assert partition_rows(view)[2].owner_words(short=True) == "failing over"
    # P2 took it: the server pinned it to P2 before P2's status said so, then P2's status names the pin.
    view.apply_partitions(PartitionsSeen(3, (partition(0, None), partition(1, "pin-1"), partition(2, "pin-2b"))))
    assert owners(view)[2] == ("p2", UNKNOWN, 0)
    view.apply_status(status("P2", 12, "partitioned", partitions={1: "pin-1", 2: "pin-2b"}))
    assert owners(view)[2] == ("p2", "P2", 0)


def test_with_no_listener_of_the_group_running_nobody_can_take_a_partition_over() -> None:
    view = partitioned_lab()
    view.apply_members([member("P1", "partitioned", 11, "killed"), member("P2", "partitioned", 12, "paused")])
    view.apply_partitions(PartitionsSeen(1, (partition(0, None, pending=4),)))
    assert owners(view) == [("p0", NO_LISTENER, 4)]


def test_the_keys_number_guarded_then_naive_then_partitioned_listeners() -> None:
    view = LabView()
    view.apply_members(
        [member("P1", "partitioned", 11), member("N1", "naive", 3), member("A", "guarded", 1), member("N10", "naive", 5)]
    )
    view.apply_members([member("B", "guarded", 2), member("P2", "partitioned", 12)])
    assert [listener.name for listener in view.ordered_listeners()] == ["A", "B", "N1", "N10", "P1", "P2"]


def test_the_guard_acted_count_sums_the_groups_guard_counters_over_restarts() -> None:
    view = partitioned_lab()
    assert guard_acted(view) == 0
    view.apply_status(status("P1", 11, "partitioned", counters={"applied": 9, "duplicates": 1, "redelivered": 1}))
    view.apply_status(status("P1", 21, "partitioned", counters={"deferred": 2, "parked": 1}))  # restarted
    view.apply_status(status("P2", 12, "partitioned", counters={"conflicts": 1, "rejected": 4}))
    view.apply_status(status("A", 1, counters={"duplicates": 7}))  # another group's guard
    assert guard_acted(view) == 1 + 2 + 1 + 1


def checked_lab(
    partitioned: dict[str, tuple[int, int]],
    applied: list[tuple[str, int, str]],
    *,
    lag: int,
    floors: tuple[int, int, int] = (4, 4, 4),
    snapshot_seq: int | None = None,
) -> LabView:
    """Jim and Mary (Jim expected at #3, $10; Jim is in p2, Mary in p1), checked with the partitioned
    database as given, its partitions acknowledged up to `floors` and `lag` events left in p2."""
    view = partitioned_lab()
    accounts = {"jim": (3, 1000), "mary": (1, 4000)}
    view.apply_partitions(PartitionsSeen(3, (partition(0, "pin-0"), partition(1, "pin-1"), partition(2, "pin-2", pending=lag))))
    view.apply_accounts(rows(accounts), rows(accounts), rows(partitioned))
    all_applied = list(JIM_AND_MARY_APPLIED)
    view.apply_report(
        report(
            JIM_AND_MARY,
            database(accounts, all_applied),
            database(accounts, all_applied),
            database(partitioned, applied),
            floors,
            snapshot_seq,
        )
    )
    return view


def status_verdict(view: LabView, short: bool = False) -> str:
    return verdict_text(view, PARTITIONED_GROUP.name, PARTITIONED_GROUP.mode, view.verdict("partitioned"), short).plain


def test_the_partitioned_column_and_verdict_are_the_checkers() -> None:
    behind = {"jim": (1, 7000), "mary": (1, 4000)}
    mary_and_jim_1 = [("mary", 1, "applied"), ("jim", 1, "applied")]
    # Jim's #2 and #3 are above p2's ack floor: on their way, not judged wrong.
    on_its_way = checked_lab(behind, mary_and_jim_1, lag=2, floors=(0, 1, 2))
    jim = on_its_way.account_lines()[0]
    assert (jim.user_id, jim.partitioned_ok, jim.partitioned_differs) == ("jim", True, False)
    assert status_verdict(on_its_way) == "partitioned … backlog 2 lost 0 applied twice 0 out of order 0 wrong balance 0"

    # p2 acknowledged them, yet the database never applied them: lost, the checker says.
    lost = checked_lab(behind, mary_and_jim_1, lag=0)
    assert lost.account_lines()[0].partitioned_differs and not lost.account_lines()[1].partitioned_differs
    assert status_verdict(lost, short=True) == "partitioned ✗ lost 2 twice 0 order 0 bal 1"

    # The stream has grown past that check: it may be out of date, so look again first.
    lost.apply_channels(channels({"jim": 3, "mary": 1}, {"jim": 1}, (5, 4)), 0.0)
    assert status_verdict(lost, short=True) == "partitioned ⟳ checking lost 2 twice 0 order 0 bal 1"

    # Applied twice: the figures match, the row is still red (the checker saw it in applied_events).
    twice = checked_lab({"jim": (3, 1000), "mary": (1, 4000)}, [*JIM_AND_MARY_APPLIED, ("jim", 3, "applied")], lag=0)
    assert [line.partitioned_ok for line in twice.account_lines()] == [False, True]
    assert status_verdict(twice, short=True) == "partitioned ✗ lost 0 twice 1 order 0 bal 0"

    right = checked_lab({"jim": (3, 1000), "mary": (1, 4000)}, list(JIM_AND_MARY_APPLIED), lag=0)
    assert [line.partitioned_ok for line in right.account_lines()] == [True, True]
    assert status_verdict(right) == "partitioned ✓ lost 0 applied twice 0 out of order 0 wrong balance 0"


def test_without_a_partitioned_database_the_group_is_not_judged() -> None:
    view = partitioned_lab()
    accounts = {"jim": (3, 1000)}
    applied = [("jim", 1, "applied")]
    view.apply_report(report(JIM_AND_MARY, database(accounts, applied), database(accounts, applied)))
    assert view.verdict("partitioned") is None
    assert [line.partitioned_ok for line in view.account_lines()] == [None, None]
    assert status_verdict(view) == "partitioned …"


def test_a_partition_taken_over_by_a_standby_gets_a_timeline_row() -> None:
    view = partitioned_lab()
    view.phase = "running"
    pins = {0: "pin-0", 1: "pin-1", 2: "pin-2"}
    view.apply_partitions(PartitionsSeen(3, tuple(partition(p, pin) for p, pin in pins.items())))
    view.apply_members([member("P1", "partitioned", 11, "killed")])
    view.apply_partitions(PartitionsSeen(3, (partition(0, None), partition(1, "pin-1"), partition(2, None, pending=2))))
    view.apply_status(status("P2", 12, "partitioned", partitions={1: "pin-1", 2: "pin-2b"}))
    view.apply_partitions(PartitionsSeen(3, (partition(0, None), partition(1, "pin-1"), partition(2, "pin-2b", pending=2))))
    lab_rows = [entry.event for entry in view.timeline if entry.lab_event]
    assert lab_rows == [
        "P1 killed (SIGKILL) holding nothing",
        "p2 has no owner (its owner P1 stopped pulling)",
        "p2 now owned by P2 (was P1: a standby took it over)",
    ]
