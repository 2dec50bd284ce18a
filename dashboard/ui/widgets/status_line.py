"""The status line: server and connection, ack wait and sync mode, the stream, and per queue group what
it has done, what it still has to do and the checker's verdict.

A group's verdict is ✓ when the check found nothing wrong, `… backlog N` while the group's consumer
(the partitioned group: its partitions) still has events to deliver or to see acknowledged, `⟳ checking`
when the last check is older than the stream, and ✗ (red) only when a check that saw everything the
group was given found something wrong. Every verdict is the checker's and shows the same fields, zero
or not; a narrow terminal gets the same fields in short words.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from dashboard.lab.checker import Totals
from dashboard.lab.natsserver import sync_label
from dashboard.lab.traffic import TRICKLE_RATE
from dashboard.ui.partitions_view import has_partitioned
from dashboard.ui.view import LabView
from listeners.groups import ALL_GROUPS, PARTITIONED_GROUP
from publisher.credentials import short_url

SEPARATOR = (" │ ", "dim")
# (short words, what each group has done), longest first.
WORDINGS = ((False, True), (False, False), (True, False))
# (field, long words, short words): "applied twice" is the checker's duplicated, never a card's
# "skipped duplicate".
FIELDS = (
    ("lost", "lost", "lost"),
    ("duplicated", "applied twice", "twice"),
    ("out_of_order", "out of order", "order"),
    ("wrong_balance", "wrong balance", "bal"),
)


def last_seq(view: LabView) -> int:
    """The stream's last sequence as the latest poll saw it."""
    return max((channel.stats.last_seq or 0 for channel in view.channels.values()), default=0)


def backlog(view: LabView, group: str) -> int | None:
    """Events the group's consumer has not had acknowledged yet: not delivered, or delivered and
    still unacknowledged (the partitioned group: its partitions' lag, and events not yet copied into
    its stream). None before the first consumer info."""
    if group == PARTITIONED_GROUP.name:
        return view.partitions.lag
    consumer = view.consumers.get(group)
    return None if consumer is None else consumer.pending + consumer.ack_pending


def done(view: LabView, group: str) -> int | None:
    """Events of the stream the group has acknowledged (processed, or set aside)."""
    waiting = backlog(view, group)
    return None if waiting is None else max(0, view.published() - waiting)


def check_is_current(view: LabView) -> bool:
    """The checker's last report saw the stream as far as the latest poll did."""
    return view.report is not None and view.report.snapshot_seq >= last_seq(view)


def counts_text(totals: Totals, conflicts: int, short: bool, alarm: str) -> Text:
    """The four counts, always, in long or short words; conflicts and parked events when there are
    any. `alarm` is the style of a count that is not zero."""
    counts = Text()
    for index, (name, word, short_word) in enumerate(FIELDS):
        value = getattr(totals, name)
        counts.append(f"{' ' if index else ''}{short_word if short else word} {value}", alarm if value else "")
    for label, value in (("conflict", conflicts), ("parked", totals.parked)):
        if value:
            counts.append(f" {label} {value}", alarm)
    return counts


def verdict_text(view: LabView, group: str, mode: str, totals: Totals | None, short: bool) -> Text:
    text = Text(no_wrap=True)
    text.append(f"{mode} ", "bold")
    if totals is None:
        text.append("…", "dim")
        return text
    # A number used by two events fails the groups held to the invariants (UserReport.guarded_ok, partitioned_ok).
    conflicts = view.report.conflicts if view.report is not None and mode != "naive" else 0
    backlog_now = backlog(view, group)
    wrong = not totals.clean or conflicts > 0
    if backlog_now or (not wrong and totals.pending):
        # Events the group has not finished yet: what looks wrong now may be right once they are done.
        text.append(f"… backlog {backlog_now or totals.pending} ", "yellow")
        text.append_text(counts_text(totals, conflicts, short, ""))
    elif wrong and not check_is_current(view):
        text.append("⟳ checking ", "yellow")
        text.append_text(counts_text(totals, conflicts, short, ""))
    elif wrong:
        text.append("✗ ", "bold red")
        text.append_text(counts_text(totals, conflicts, short, "bold red"))  # only what is not zero is red
    else:
        text.append("✓ ", "bold green")
        text.append_text(counts_text(totals, conflicts, short, ""))
    return text


def slow_user_now(view: LabView) -> tuple[str, int] | None:
    """The user every listener was told to take slowly, and how long per event, as the running
    listeners report it; None when nobody is slow."""
    for listener in view.ordered_listeners():
        status = listener.live_status
        if status is not None and status.slow_user and status.slow_user_ms:
            return status.slow_user, status.slow_user_ms
    return None


class StatusLine(Widget):
    """Is the lab reachable, and is it right: the server on one line, the verdicts on the next."""

    DEFAULT_CSS = """
    StatusLine {
        height: 2;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.server = Text()
        # The verdicts from the longest wording to the shortest; the first that fits is shown.
        self.verdicts: tuple[Text, ...] = (Text(),)

    def show(self, view: LabView) -> None:
        server = Text(no_wrap=True, overflow="ellipsis")
        if view.phase == "lost":
            server.append("● lab stopped, waiting for the next one", "bold yellow")
        elif view.phase == "waiting":
            server.append("● waiting for a lab", "bold yellow")
        elif view.phase == "starting" and view.connected is False and view.server_state != "unreachable":
            server.append("● starting", "bold cyan")
        elif view.server_state in ("restarting", "down") and view.phase == "running":
            server.append(f"● NATS {view.server_state}", "bold yellow")
        elif not view.connected:
            server.append("✖ NATS unreachable, reconnecting", "bold white on red")
        else:
            server.append("●", "bold green")
            server.append(f" NATS {view.server_state}" if view.embedded else " NATS external", "dim")
        if view.phase not in ("lost", "waiting"):
            server.append(f" {short_url(view.url) if view.url else 'nats://…'}")
            if view.host is not None:
                server.append(f" · lab of {view.host}", "cyan")
            elif view.phase == "running":
                server.append(" · lab started here", "dim")
        server.append(*SEPARATOR)
        server.append(f"ack wait {view.ack_wait_s:g}s")
        if view.sync is not None:
            server.append(f" · sync {sync_label(view.sync)}")
        server.append(*SEPARATOR)
        server.append(f"stream {view.published()} events")
        if view.trickling:
            server.append(f" · trickle {TRICKLE_RATE:g}/s (t stops)", "cyan")
        if (slow := slow_user_now(view)) is not None:
            server.append(f" · {slow[0]} slow: {slow[1] / 1000:g} s/event (u)", "yellow")  # slow[0]: a Text, not markup
        if view.outbox_error:
            server.append(f" (outbox waiting: {view.outbox_error})", "yellow")
        if view.checking:
            server.append(" ⟳", "cyan")
        if view.poll_error:
            server.append(*SEPARATOR)
            server.append(f"poll failed: {view.poll_error}", "yellow")
        self.server = server
        self.verdicts = tuple(self._verdicts(view, *wording) for wording in WORDINGS)
        self.refresh()

    @staticmethod
    def _verdicts(view: LabView, short: bool, with_done: bool = False) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        for index, group in enumerate(ALL_GROUPS):
            totals = view.verdict(group.mode)
            if group is PARTITIONED_GROUP and not has_partitioned(view):
                continue
            if group.mode == "naive" and (view.report is None or totals is None) and not view.group_members(group.name):
                continue
            verdict = verdict_text(view, group.name, group.mode, totals, short)
            if index:
                line.append(*SEPARATOR)
            line.append_text(verdict)
            done_now = done(view, group.name)
            if done_now is not None and with_done:
                line.append(f" · done {done_now}", "dim")
        return line

    def render(self) -> Text:
        width = self.size.width or 10_000
        verdicts = next((line for line in self.verdicts if line.cell_len <= width), self.verdicts[-1])
        lines = [self.server.copy(), verdicts.copy()]
        # Each line is cut to the width here: a renderable's no_wrap does not keep Textual from wrapping.
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return Text("\n").join(lines)
