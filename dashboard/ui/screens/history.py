"""The event history browser: every event stored in the stream, read from the stream itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from dashboard.lab.history import StoredEvent
from publisher.events import format_cents

HistoryLoader = Callable[[], Awaitable[list[StoredEvent]]]


def history_cells(stored: StoredEvent) -> tuple[Text, ...]:
    """Seq, channel, user, number, amount, time; a malformed event shows its problem instead."""
    when = Text(stored.stored_at.replace("T", " ")[:23], "dim")
    event = stored.event
    if event is None:
        return (
            Text(str(stored.stream_seq)),
            Text(stored.channel),
            Text("poison", "bold red"),
            Text(""),
            Text(stored.problem or "", "red"),  # from the network: a Text, never markup
            when,
        )
    return (
        Text(str(stored.stream_seq)),
        Text(stored.channel, "green" if event.is_deposit else "blue"),
        Text(event.user_id),
        Text(str(event.number), justify="right"),
        Text(format_cents(event.amount_cents), justify="right"),
        when,
    )


class HistoryScreen(Screen[None]):
    """Scrollable and filterable by user; `r` reads the stream again."""

    BINDINGS = [
        Binding("escape", "close", "close"),
        Binding("h", "close", "close"),
        Binding("f", "filter", "filter by user"),
        Binding("r", "reload", "reload"),
    ]

    class HistoryRead(Message):
        """The stream was read: every stored event, oldest first."""

        def __init__(self, events: list[StoredEvent]) -> None:
            super().__init__()
            self.events = events

    def __init__(self, load: HistoryLoader) -> None:
        super().__init__()
        self.load = load
        self.events: list[StoredEvent] = []

    def compose(self) -> ComposeResult:
        yield Static("Event history: reading the stream…", id="history-summary")
        yield Input(placeholder="filter by user id (f); Enter returns to the list", id="history-filter")
        yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("seq", "channel", "user", "number", "amount", "stored at (UTC)")
        table.focus()
        self.read_history()

    def read_history(self) -> None:
        # An app worker, not the screen's: its failure then reaches the app's one error handler
        # (worker state messages do not bubble) and is reported like every other.
        self.app.run_worker(
            self._read(), name="reading the event history", group="history", exclusive=True, exit_on_error=False
        )

    async def _read(self) -> None:
        self.post_message(self.HistoryRead(await self.load()))

    @on(HistoryRead)
    def history_read(self, message: HistoryRead) -> None:
        self.events = message.events
        self.show_events()

    @on(Input.Changed, "#history-filter")
    def filter_changed(self) -> None:
        self.show_events()

    @on(Input.Submitted, "#history-filter")
    def filter_submitted(self) -> None:
        self.query_one(DataTable).focus()

    def show_events(self) -> None:
        wanted = self.query_one("#history-filter", Input).value.strip().lower()
        shown = [
            stored
            for stored in self.events
            if not wanted or (stored.event is not None and wanted in stored.event.user_id.lower())
        ]
        table = self.query_one(DataTable)
        table.clear()
        for stored in shown:
            table.add_row(*history_cells(stored), key=str(stored.stream_seq))
        summary = Text(f"Event history: {len(self.events)} events stored in the stream")
        if wanted:
            summary.append(f", {len(shown)} for users matching ")
            summary.append(repr(wanted), "bold")
        self.query_one("#history-summary", Static).update(summary)

    def action_filter(self) -> None:
        self.query_one("#history-filter", Input).focus()

    def action_reload(self) -> None:
        self.query_one("#history-summary", Static).update("Event history: reading the stream…")
        self.read_history()

    def action_close(self) -> None:
        self.dismiss(None)
