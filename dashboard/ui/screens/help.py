"""The help screen: every key the dashboard answers to, taken from its bindings, and the settings the
status line shows."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from dashboard.lab.natsserver import SYNC_INTERVAL

# What the words on the status line, the cards and the account pane mean.
LEGEND = (
    ("✓  …  ✗", "the check of each group: nothing wrong · nothing wrong yet, `backlog N` events still to process · something wrong"),
    ("lost dup order", "events never applied · applied twice · applied after a later number (bal: users whose balance is wrong)"),
    ("✓ ✗ = ↻ ☠ ≠ ‖", "a card's last outcome: applied · rejected (balance too low) · duplicate skipped · deferred (came early) · poison · conflict · parked"),
    ("conflict", "a different event came with a number already used: recorded, never applied"),
    ("parked", "events behind a number that never came (gap timeout): set aside, applied once it comes"),
    ("missing #N since T", "a user's event N has not come since T (UTC): the guard holds the later ones back until it does"),
    ("ack wait", "how long NATS waits for an acknowledgement before it delivers an event again"),
    ("sync always", "the embedded server writes each event to disk before acknowledging it"),
    (f"sync every {SYNC_INTERVAL}", "it writes in the background: a power loss can take what was acknowledged since"),
)


def help_rows(bindings: list[Binding], explanations: dict[str, str]) -> list[tuple[str, str, str]]:
    """(key, description, explanation) for every binding the footer shows.

    `explanations` is keyed by the whole action (`control('kill')`), or by its name without arguments
    (`select` for `select(3)`); a hidden binding is covered by a shown one, like `1` displayed as `1-9`
    for `2` to `9`.
    """
    return [
        (
            binding.key_display or binding.key,
            binding.description,
            explanations.get(binding.action) or explanations.get(binding.action.split("(", 1)[0], ""),
        )
        for binding in bindings
        if binding.show
    ]


class HelpScreen(ModalScreen[None]):
    """A list of keys; Esc or ? closes it."""

    BINDINGS = [Binding("escape", "close", "close"), Binding("question_mark", "close", "close", key_display="?")]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2, 0, 0), show_header=False)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for keys, description, explanation in self.rows:
            table.add_row(keys, description, explanation)
        with Vertical(id="help"):
            yield Static(Text("natslab keys", "bold"), id="help-title")
            yield Static(table)
            legend = Table(box=None, padding=(0, 2, 0, 0), show_header=False, title="Words", title_style="bold", title_justify="left")
            legend.add_column(style="bold", no_wrap=True)
            legend.add_column()
            for word, meaning in LEGEND:
                legend.add_row(word, meaning)
            yield Static(legend, id="help-legend")
            yield Static(
                Text(
                    "Tab moves between the scrollable panes, arrows and PgUp/PgDn scroll them. Esc or ? closes this.",
                    "dim",
                ),
                id="help-hint",
            )

    def action_close(self) -> None:
        self.dismiss(None)
