"""The partitioned group in the dashboard's view: who owns each partition, its lag, the guard's count,
the third accounts column and its verdict; no Textual, no I/O."""

from __future__ import annotations

from dashboard_fakes import JIM_AND_MARY, database, partition, report, rows, status

from dashboard.lab.observe import PartitionsSeen
from dashboard.lab.supervisor import Member
from dashboard.ui.account_view import partitioned_ok
from dashboard.ui.partitions_view import FAILING_OVER, IDLE, NO_LISTENER, UNKNOWN, guard_acted, partition_rows
from dashboard.ui.view import LabView
from dashboard.ui.widgets.status_line import partitioned_verdict
from listeners.accounts import AccountRow
from listeners.groups import group_for_mode


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


def test_a_partitioned_row_is_judged_only_where_timing_cannot_explain_a_difference() -> None:
    expected = (3, 1000)
    assert partitioned_ok(AccountRow("jim", 3, 1000), expected, caught_up=False) is True
    # The same number with another balance is wrong whatever is still on its way.
    assert partitioned_ok(AccountRow("jim", 3, 11000), expected, caught_up=False) is False
    # Past the check's snapshot: events it has not seen, nothing to judge.
    assert partitioned_ok(AccountRow("jim", 4, 0), expected, caught_up=True) is None
    # Behind, or missing: on its way while the group has work, lost once it has none.
    assert partitioned_ok(AccountRow("jim", 2, 11000), expected, caught_up=False) is None
    assert partitioned_ok(AccountRow("jim", 2, 11000), expected, caught_up=True) is False
    assert partitioned_ok(None, expected, caught_up=False) is None
    assert partitioned_ok(None, expected, caught_up=True) is False


def checked_lab(partitioned: dict[str, tuple[int, int]], *, lag: int, caught_up: bool) -> LabView:
    """Jim and Mary checked (Jim expected at #3, $10); the partitioned rows and partitions as given."""
    view = partitioned_lab()
    accounts = {"jim": (3, 1000), "mary": (1, 4000)}
    applied = [("mary", 1, "applied"), ("jim", 1, "applied"), ("jim", 2, "applied"), ("jim", 3, "applied")]
    view.apply_report(report(JIM_AND_MARY, database(accounts, applied), database(accounts, applied)))
    view.apply_partitions(PartitionsSeen(3, (partition(0, "pin-0"), partition(1, "pin-1"), partition(2, "pin-2", pending=lag))))
    view.apply_accounts(rows(accounts), rows(accounts), rows(partitioned), caught_up)
    return view


def test_the_accounts_pane_and_the_status_line_say_when_the_partitioned_balance_disagrees() -> None:
    on_its_way = checked_lab({"jim": (1, 7000), "mary": (1, 4000)}, lag=2, caught_up=False)
    jim = on_its_way.account_lines()[0]
    assert (jim.user_id, jim.partitioned_ok, jim.partitioned_differs) == ("jim", None, False)
    assert partitioned_verdict(on_its_way, short=False).plain == "partitioned … backlog 2 wrong balance 0"

    # Caught up before the rows were read, and still at #1: Jim's #2 and #3 never came.
    stuck = checked_lab({"jim": (1, 7000), "mary": (1, 4000)}, lag=0, caught_up=True)
    assert stuck.account_lines()[0].partitioned_differs
    assert partitioned_verdict(stuck, short=True).plain == "partitioned ✗ bal 1"

    # Lag 0 now, but the last rows were read before the group caught up: look again first.
    not_yet = checked_lab({"jim": (1, 7000), "mary": (1, 4000)}, lag=0, caught_up=False)
    assert "⟳ checking" in partitioned_verdict(not_yet, short=False).plain

    right = checked_lab({"jim": (3, 1000), "mary": (1, 4000)}, lag=0, caught_up=True)
    assert [line.partitioned_ok for line in right.account_lines()] == [True, True]
    assert partitioned_verdict(right, short=False).plain == "partitioned ✓ wrong balance 0"
