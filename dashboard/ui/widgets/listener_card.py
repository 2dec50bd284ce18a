"""One listener's card: its durable subscription as the server sees it, and its own counters."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from dashboard.ui.view import ConsumerView, LabView, ListenerView
from dashboard.ui.widgets.styles import OUTCOME_MARKS, outcome_style, state_style
from listeners.status import DeliveryReport


def counts_grid(*rows: tuple[tuple[str, int], tuple[str, int]], dim: bool = False) -> Table:
    """Two `label value` pairs per row, aligned."""
    table = Table.grid(padding=(0, 1))
    for _ in range(2):
        table.add_column(style="dim" if dim else "", no_wrap=True)
        table.add_column(no_wrap=True, min_width=4)
    for (label, value), (other_label, other_value) in rows:
        table.add_row(
            label,
            Text(str(value), "bold" if value else ""),
            other_label,
            Text(str(other_value), "bold" if other_value else ""),
        )
    return table


def server_view(consumer: ConsumerView | None) -> list[Any]:
    """The group's durable consumer in the words of `nats consumer info`."""
    if consumer is None:
        return [Text("server: waiting for consumer info…", "dim")]
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(justify="right", no_wrap=True, min_width=8)
    table.add_column(justify="right", no_wrap=True, min_width=6)
    table.add_row(Text("server", "dim underline"), Text("consumer", "dim"), Text("stream", "dim"))
    table.add_row("delivered", str(consumer.delivered_consumer_seq), str(consumer.delivered_stream_seq))
    table.add_row("ack floor", str(consumer.ack_floor_consumer_seq), str(consumer.ack_floor_stream_seq))
    return [
        table,
        counts_grid(
            (("ack pending", consumer.ack_pending), ("redelivered", consumer.redelivered)),
            (("pending", consumer.pending), ("waiting pulls", consumer.waiting)),
            dim=True,
        ),
    ]


class ListenerCard(Static):
    """A card per listener process; numbered for the `1`-`9` keys, coloured by state."""

    def __init__(self, name: str) -> None:
        super().__init__(classes="listener-card")
        self.listener_name = name

    def show(self, view: LabView, listener: ListenerView, number: int) -> None:
        state = listener.state
        self.border_title = f"{number if number <= 9 else '·'} {listener.name} · {listener.mode}"
        self.border_subtitle = listener.group
        self.set_class(listener.name == view.selected, "-selected")
        self.set_class(listener.gone, "-gone")
        self.set_class(state == "paused", "-paused")
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"pid {listener.pid or '-'}  ", "dim")
        head.append(state, state_style(state))
        member = listener.member
        if state == "crashed" and member is not None and member.exit_code is not None:
            head.append(f" (exit {member.exit_code})", state_style(state))
        if listener.slow_ms:
            head.append(f" {listener.slow_ms} ms/event", "yellow")
        if listener.crash_armed:
            head.append(f"  crash {listener.crash_armed}", "bold red")
        total = listener.total
        # Rare and always wrong, so they take no row of their own: they appear, in red, when they happen.
        for counter in ("conflicts", "parked"):
            if total(counter):
                head.append(f"  {counter} {total(counter)}", "bold red")
        self.update(
            Group(
                head,
                *server_view(view.consumers.get(listener.group)),
                counts_grid(
                    (("applied", total("applied")), ("rejected", total("rejected"))),
                    (("dup acked", total("duplicates")), ("deferred", total("deferred"))),
                    (("poison", total("poison")), ("redelivered", total("redelivered"))),
                ),
                self._in_flight(listener),
                self._held_or_last(view, listener),
            ),
            layout=False,  # a card's size never depends on its text
        )

    @staticmethod
    def _in_flight(listener: ListenerView) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        held = listener.in_flight
        if not held:
            text.append("idle", "dim")
            return text
        text.append("▶ ", "yellow")
        text.append(held[0].describe())  # from the network: a Text, never markup
        count = held[0].delivery_count
        if count > 1:
            text.append(f" ×{count}", "bold yellow")
        more = listener.in_flight_count - 1
        if more > 0:
            text.append(f" +{more}", "dim")
        return text

    @classmethod
    def _held_or_last(cls, view: LabView, listener: ListenerView) -> Text:
        """For a killed or paused holder, what becomes of what it holds; for a crashed listener, why it
        ended; else its last outcome."""
        note = view.held_note(listener)
        member = listener.member
        if note is None and listener.state == "crashed" and member is not None and member.reason:
            # The process's own last words on stderr: a Text, never markup.
            return Text(f"✗ {member.reason}", "red", no_wrap=True, overflow="ellipsis")
        if note is None:
            return cls._last(listener.last_event if listener.fresh or listener.gone else None)
        if note.taken_over is not None:
            return Text(f"  {note.short()}", outcome_style(note.taken_over.outcome), no_wrap=True, overflow="ellipsis")
        return Text(f"  {note.long()}", "bold yellow", no_wrap=True, overflow="ellipsis")

    @staticmethod
    def _last(last: DeliveryReport | None) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if last is None:
            text.append("no outcome yet", "dim")
            return text
        outcome = last.outcome or "?"
        text.append(f"{OUTCOME_MARKS.get(outcome, '?')} ", outcome_style(outcome))
        text.append(last.describe())
        text.append(f" {outcome}", outcome_style(outcome))
        count = last.delivery_count
        if count > 1:
            text.append(f" ×{count}", "bold yellow")
        return text
