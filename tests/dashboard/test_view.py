"""The dashboard's view of the lab: folding status messages, with no Textual and no I/O."""

from __future__ import annotations

import subprocess
import sys

from dashboard_fakes import delivery, held, status

from dashboard.lab.checker import CheckReport, Totals
from dashboard.lab.observe import ChannelStats
from dashboard.lab.supervisor import Member
from dashboard.ui.view import TIMELINE_LIMIT, ChannelView, ConsumerView, LabView, parse_utc
from dashboard.ui.widgets.status_line import verdict_text
from listeners.accounts import AccountRow


def guarded(name: str, pid: int, state: str = "running", restarts: int = 0) -> Member:
    return Member(name, "guarded", "account-service", pid, state, restarts)


def test_a_delivery_reported_twice_is_shown_once() -> None:
    view = LabView()
    report = status("A", 101, deliveries=[delivery(1, 2, 1, "applied", "01.000")])
    view.apply_status(report)
    view.apply_status(report)
    assert [(e.listener, e.pid, e.seq) for e in view.timeline] == [("A", 101, 1)]
    # The same per-listener seq from a restarted process is a different delivery.
    view.apply_status(status("A", 202, deliveries=[delivery(1, 2, 2, "duplicate", "09.000")]))
    assert [(e.pid, e.delivery_count, e.outcome) for e in view.timeline] == [(101, 1, "applied"), (202, 2, "duplicate")]
    assert view.timeline_total == 2


def test_the_timeline_keeps_the_last_deliveries_only() -> None:
    view = LabView()
    for seq in range(1, TIMELINE_LIMIT + 51):
        view.apply_status(status("A", 101, deliveries=[delivery(seq, 1, 1, "applied", "01.000")]))
    assert len(view.timeline) == TIMELINE_LIMIT
    assert view.timeline[0].seq == 51 and view.timeline[-1].seq == TIMELINE_LIMIT + 50
    assert view.timeline_total == TIMELINE_LIMIT + 50


def test_a_listeners_counters_only_go_up_across_restarts() -> None:
    view = LabView()
    view.apply_status(status("A", 101, counters={"applied": 5, "redelivered": 3}))
    view.apply_status(status("A", 101, counters={"applied": 6, "redelivered": 3}))
    view.apply_status(status("A", 202, counters={"applied": 1, "redelivered": 1}))
    listener = view.listeners["A"]
    assert (listener.total("applied"), listener.total("redelivered")) == (7, 4)


def test_a_killed_holder_counts_down_to_the_redelivery_then_names_who_took_over() -> None:
    view = LabView(ack_wait_s=5.0, now=1000.0)
    view.apply_members([guarded("A", 101), guarded("B", 102)])
    view.apply_status(status("A", 101, in_flight=[held(3)], in_flight_since=998.0))
    view.apply_status(status("B", 102))
    assert view.held_note(view.listeners["A"]) is None  # alive and running: nothing to announce

    view.apply_members([guarded("A", 101, "killed"), guarded("B", 102)])
    killed = view.listeners["A"]
    assert killed.state == "killed" and killed.in_flight_count == 1
    note = view.held_note(killed)
    assert note is not None and note.due == 3.0 and note.short() == "redelivery in 3.0s"

    view.apply_status(status("B", 102, deliveries=[delivery(1, 3, 2, "applied", "05.000")]))
    note = view.held_note(killed)
    assert note is not None and note.short() == "→ B ×2 applied"
    assert note.long() == "redelivered to B ×2, applied"


def test_a_restarted_listener_is_restarting_until_its_new_process_reports() -> None:
    view = LabView()
    view.apply_members([guarded("A", 101)])
    view.apply_status(status("A", 101, in_flight=[held(1)], in_flight_since=1.0))
    view.apply_members([guarded("A", 303, restarts=1)])
    listener = view.listeners["A"]
    assert listener.state == "restarting" and listener.in_flight == ()
    view.apply_status(status("A", 303))
    assert listener.state == "running"


def test_the_lab_view_stays_free_of_textual() -> None:
    # It lives among the widgets but is plain data: snapshot fakes and these tests build it by hand.
    code = (
        "import sys\n"
        "import dashboard.ui.view\n"
        "assert not any(m.split('.')[0] == 'textual' for m in sys.modules), 'textual imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_user_waiting_for_a_missing_number_is_shown_after_a_moment_and_parked_ones_as_stuck() -> None:
    since = "2026-11-28T12:03:10.000Z"
    at = parse_utc(since)
    assert at is not None
    view = LabView(now=at + 0.2)
    view.accounts["guarded"] = {"jim": AccountRow("jim", 3, 700, waiting_since=since)}
    assert view.account_lines()[0].waiting == ""  # a moment: the predecessor is usually just behind
    view.now = at + 5
    line = view.account_lines()[0]
    assert (line.waiting, line.stuck) == ("missing #4 since 12:03:10", False)
    view.accounts["guarded"] = {"jim": AccountRow("jim", 3, 700, waiting_since=since, parked=2)}
    line = view.account_lines()[0]
    assert (line.waiting, line.stuck) == ("missing #4 since 12:03:10 · 2 parked", True)


def verdict_of(
    totals: Totals, *, backlog: int = 0, snapshot_seq: int = 10, last_seq: int = 10, conflicts: int = 0
) -> str:
    """The guarded group's verdict as the status line words it, for a lab in the given state."""
    view = LabView()
    view.consumers["account-service"] = ConsumerView("account-service", ack_pending=backlog)
    view.channels["account:deposit"] = ChannelView(ChannelStats("account:deposit", last_seq, last_seq, {}))
    view.report = CheckReport([], last_seq, 0, 0, 0, totals, None, [], conflicts, snapshot_seq)
    return verdict_text(view, "account-service", "guarded", totals, short=False).plain


def test_the_status_line_calls_events_not_yet_processed_a_backlog_never_lost() -> None:
    backlog = verdict_of(Totals(pending=49))
    assert "backlog 49" in backlog and "✗" not in backlog and "lost 0" in backlog
    assert "✓" in verdict_of(Totals())
    # The same fields, zero or not, and "applied twice" for what the checker calls duplicated.
    assert "lost 0 applied twice 0 out of order 0 wrong balance 0" in verdict_of(Totals())
    conflict = verdict_of(Totals(), conflicts=1)
    assert "✗" in conflict and "conflict 1" in conflict
    assert "parked 2" in verdict_of(Totals(parked=2))


def test_no_cross_while_the_group_has_work_or_the_check_is_older_than_the_stream() -> None:
    wrong = Totals(lost=1, wrong_balance=1)
    assert "✗" in verdict_of(wrong)
    # The consumer still has 3 events to deliver or see acknowledged: what looks wrong may yet resolve.
    busy = verdict_of(wrong, backlog=3)
    assert "✗" not in busy and "backlog 3" in busy
    # The stream has grown past what the check read: it must look again before it may say wrong.
    stale = verdict_of(wrong, snapshot_seq=8, last_seq=10)
    assert "✗" not in stale and "checking" in stale
