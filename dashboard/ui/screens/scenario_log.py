"""The scenario log: every caption of the last scenario run, numbered, and what it showed."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from dashboard.ui.view import ScenarioLog


def log_text(scenario: ScenarioLog) -> Text:
    text = Text()
    text.append(f"Scenario {scenario.name}\n", "bold")
    text.append(f"{scenario.summary}\n\n", "dim")
    for number, caption in enumerate(scenario.steps, 1):
        text.append(f"{number:>2}  ", "bold cyan")
        text.append(f"{caption}\n")
    if scenario.error is not None:
        text.append(f"\nStopped: {scenario.error}\n", "bold red")
    elif scenario.finished:
        text.append("\nWhat it showed: ", "bold")
        text.append(f"{scenario.lesson}\n")
    else:
        text.append("\n(still running)\n", "dim")
    return text


class ScenarioLogScreen(ModalScreen[None]):
    """Esc or l closes it."""

    BINDINGS = [Binding("escape", "close", "close"), Binding("l", "close", "close")]
    DEFAULT_CSS = """
    ScenarioLogScreen { align: center middle; }
    ScenarioLogScreen #scenario-log {
        width: 96%; max-width: 110; height: auto; max-height: 96%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    ScenarioLogScreen #scenario-log-hint { color: $text-muted; }
    """

    def __init__(self, scenario: ScenarioLog) -> None:
        super().__init__()
        self.scenario = scenario

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="scenario-log"):
            yield Static(log_text(self.scenario))
            yield Static("Esc or l closes this", id="scenario-log-hint")

    def action_close(self) -> None:
        self.dismiss(None)
