"""The queue groups pane: each group's durable consumer and the listener processes sharing it."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from dashboard.ui.view import LabView
from dashboard.ui.widgets.styles import state_style
from listeners.groups import GROUPS


class QueueGroupsPane(Static):
    """`account-service` and `account-service-naive`: consumer name, members, their state and in-flight count."""

    _lines = 0

    def on_mount(self) -> None:
        self.border_title = "Queue groups"

    def show(self, view: LabView) -> None:
        numbers = {listener.name: index for index, listener in enumerate(view.ordered_listeners(), 1)}
        lines: list[Text] = []
        for group in GROUPS:
            consumer = view.consumers.get(group.name)
            header = Text(no_wrap=True, overflow="ellipsis")
            header.append(group.name, "bold")
            header.append(f" ({group.mode})", "dim")
            header.append("  consumer ", "dim")
            header.append(consumer.name if consumer is not None else "…")
            lines.append(header)
            members = view.group_members(group.name)
            if not members:
                lines.append(Text("  no members", "dim"))
            for listener in members:
                line = Text("  ", no_wrap=True, overflow="ellipsis")
                number = numbers[listener.name]
                selected = listener.name == view.selected
                line.append(f"{number if number <= 9 else ' '} ", "reverse" if selected else "dim")
                line.append(f"{listener.name:<4}", "bold")
                line.append(f"{listener.state:<13}", state_style(listener.state))
                count = listener.in_flight_count
                line.append(f"in flight {count:<4}", "bold yellow" if count and listener.gone else "")
                note = view.held_note(listener)
                if note is not None:
                    line.append(note.long(), "green" if note.taken_over else "bold yellow")
                lines.append(line)
        # The pane grows with its members: lay out again only when the number of lines changes.
        self.update(Group(*lines), layout=len(lines) != self._lines)
        self._lines = len(lines)
