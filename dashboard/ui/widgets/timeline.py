"""The delivery timeline: every delivery of every event, to which listener, and what came of it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from dashboard.ui.view import TIMELINE_LIMIT, LabView, TimelineEntry
from dashboard.ui.widgets.cached_lines import CachedLines
from dashboard.ui.widgets.styles import outcome_style

# (title, width, align) per column; an event longer than its column (a long user id) is cut.
COLUMNS = (("time", 12, "<"), ("event", 24, "<"), ("by", 3, "<"), ("n", 3, ">"), ("outcome", 9, "<"), ("seq", 5, ">"))
EVENT_COLUMN = 1
ROW_WIDTH = sum(width for _, width, _ in COLUMNS) + len(COLUMNS) - 1


def timeline_row(entry: TimelineEntry) -> Text:
    """One delivery on one line; a redelivery's count stands out and its event is bold."""
    again = entry.redelivery
    cells = (
        (entry.clock, "dim"),
        (entry.event, "bold" if again else ""),  # from the network: a Text, never markup
        (entry.listener, "bold"),
        (f"×{entry.delivery_count}", "bold black on yellow" if again else "dim"),
        (entry.outcome, outcome_style(entry.outcome)),
        (str(entry.stream_seq), "dim"),
    )
    row = Text(no_wrap=True)
    for index, ((value, style), (_, width, align)) in enumerate(zip(cells, COLUMNS, strict=True)):
        if index:
            row.append(" ")
        if index == EVENT_COLUMN:
            value = value if len(value) <= width else value[: width - 1] + "…"
        padding = " " * max(0, width - len(value))
        if align == ">":
            row.append(padding)
        row.append(value, style)  # only the value is styled, so a highlight hugs the text
        if align == "<":
            row.append(padding)
    return row


def header_row() -> Text:
    return Text(" ".join(f"{title:{align}{width}}" for title, width, align in COLUMNS), "bold", no_wrap=True)


class DeliveryLines(CachedLines[TimelineEntry]):
    """The rows, drawn line by line: only what is on screen is rendered, however busy the lab."""

    def row_key(self, row: TimelineEntry) -> tuple[str, int, int]:
        return row.key

    def render_row(self, row: TimelineEntry) -> Text:
        return timeline_row(row)

    def extend(self, fresh: list[TimelineEntry]) -> None:
        follow = self.scroll_y >= self.max_scroll_y - 1
        # Statuses arrive listener by listener; within one redraw, show the deliveries in time order.
        self.set_rows((list(self.rows) + sorted(fresh, key=lambda entry: entry.at))[-TIMELINE_LIMIT:], ROW_WIDTH)
        if follow:
            self.scroll_end(animate=False, immediate=False)


class DeliveryTimeline(Vertical):
    """The last `TIMELINE_LIMIT` deliveries, newest at the bottom; redeliveries stand out."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown = 0

    def compose(self) -> ComposeResult:
        yield Static(header_row(), id="timeline-header")
        yield DeliveryLines()

    def on_mount(self) -> None:
        self.border_title = "Delivery timeline"
        self.border_subtitle = "time UTC"

    def show(self, view: LabView) -> None:
        new = view.timeline_total - self._shown
        if new <= 0:
            return
        self._shown = view.timeline_total
        self.query_one(DeliveryLines).extend(list(view.timeline)[-min(new, len(view.timeline)) :])
