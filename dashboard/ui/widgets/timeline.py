"""The timeline: every delivery of every event, to which listener, what came of it and the rule that
decided it, in the order the listeners' databases took them; and, as rows of their own, what the lab
did (kills, pauses, restarts, server restarts)."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from dashboard.ui.view import TIMELINE_LIMIT, LabView, TimelineEntry
from dashboard.ui.widgets.cached_lines import CachedLines
from dashboard.ui.widgets.styles import outcome_style

# (title, width, align) per column; an event longer than its column (a long user id) is cut.
# A narrow pane drops the time.
WIDE = (("time", 12, "<"), ("by", 3, "<"), ("event", 25, "<"), ("n", 3, ">"), ("outcome", 9, "<"), ("why", 32, "<"))
NARROW = (("by", 3, "<"), ("event", 22, "<"), ("n", 3, ">"), ("outcome", 9, "<"), ("why", 34, "<"))
WIDE_FROM = sum(width + 1 for _, width, _ in WIDE)


def _cells(entry: TimelineEntry) -> dict[str, tuple[str, str]]:
    again = entry.redelivery
    return {
        "time": (entry.clock, "dim"),
        "by": (entry.listener, "bold"),
        "event": (entry.event, "bold" if again else ""),  # from the network: a Text, never markup
        "n": (f"×{entry.delivery_count}", "bold black on yellow" if again else "dim"),
        "outcome": (entry.outcome, outcome_style(entry.outcome)),
        "why": (entry.rule, ""),
        "seq": (str(entry.stream_seq), "dim"),
    }


def timeline_row(entry: TimelineEntry, columns: tuple[tuple[str, int, str], ...] = WIDE) -> Text:
    """One delivery on one line; a redelivery's count stands out and its event is bold."""
    row = Text(no_wrap=True)
    if entry.lab_event:
        if columns[0][0] == "time":
            row.append(f"{entry.clock:<12} ", "dim")
        row.append(f"── {entry.event} ──", "bold cyan")  # what the lab did, in its own words
        return row
    cells = _cells(entry)
    for index, (title, width, align) in enumerate(columns):
        value, style = cells[title]
        if index:
            row.append(" ")
        if len(value) > width:
            value = value[: width - 1] + "…"
        padding = " " * max(0, width - len(value))
        if align == ">":
            row.append(padding)
        row.append(value, style)  # only the value is styled, so a highlight hugs the text
        if align == "<":
            row.append(padding)
    return row


def header_row(columns: tuple[tuple[str, int, str], ...] = WIDE) -> Text:
    return Text(" ".join(f"{title:{align}{width}}" for title, width, align in columns), "bold", no_wrap=True)


class DeliveryLines(CachedLines[TimelineEntry]):
    """The rows, drawn line by line: only what is on screen is rendered, however busy the lab."""

    columns = WIDE

    def row_key(self, row: TimelineEntry) -> tuple[str, int, int, int]:
        return (*row.key, len(self.columns))

    def render_row(self, row: TimelineEntry) -> Text:
        return timeline_row(row, self.columns)

    def set_columns(self, columns: tuple[tuple[str, int, str], ...]) -> None:
        if columns is not self.columns:
            self.columns = columns
            self.set_rows(self.rows, self._width())

    def _width(self) -> int:
        return sum(width + 1 for _, width, _ in self.columns)

    def extend(self, fresh: list[TimelineEntry]) -> None:
        follow = self.scroll_y >= self.max_scroll_y - 1
        # Statuses arrive listener by listener; within one redraw, show them in time order. Each
        # listener lists a batch in commit order with one timestamp, and the sort keeps that order.
        self.set_rows((list(self.rows) + sorted(fresh, key=lambda entry: entry.at))[-TIMELINE_LIMIT:], self._width())
        if follow:
            self.scroll_end(animate=False, immediate=False)


class DeliveryTimeline(Vertical):
    """The last `TIMELINE_LIMIT` deliveries and lab events, newest at the bottom; redeliveries stand out."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown = 0

    def compose(self) -> ComposeResult:
        yield Static(header_row(), id="timeline-header")
        yield DeliveryLines()

    def on_mount(self) -> None:
        self.border_title = "Timeline: deliveries in the order they took effect"
        self.border_subtitle = "time UTC · why: the rule that decided"

    def on_resize(self, _: events.Resize) -> None:
        columns = WIDE if self.size.width >= WIDE_FROM else NARROW
        lines = self.query_one(DeliveryLines)
        lines.set_columns(columns)
        self.query_one("#timeline-header", Static).update(header_row(columns))
        lines.scroll_end(animate=False, immediate=False)  # the newest rows stay in sight

    def show(self, view: LabView) -> None:
        new = view.timeline_total - self._shown
        if new <= 0:
            return
        self._shown = view.timeline_total
        self.query_one(DeliveryLines).extend(list(view.timeline)[-min(new, len(view.timeline)) :])
