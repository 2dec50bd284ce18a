"""The scenario picker: choose a failure scenario to run, as a captioned walk-through, on this lab."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class ScenarioPicker(ModalScreen[str | None]):
    """A list of (name, summary); Enter runs the highlighted one, Esc cancels. Returns the name."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = """
    ScenarioPicker { align: center middle; }
    ScenarioPicker #scenario-picker {
        width: 90%; max-width: 110; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    ScenarioPicker OptionList { height: auto; max-height: 16; border: none; }
    ScenarioPicker #scenario-hint { color: $text-muted; }
    """

    def __init__(self, scenarios: list[tuple[str, str]]) -> None:
        super().__init__()
        self.scenarios = scenarios

    def compose(self) -> ComposeResult:
        width = max(len(name) for name, _ in self.scenarios)
        options = [
            Option(Text.assemble((f"{name:<{width}}  ", "bold"), summary), id=name) for name, summary in self.scenarios
        ]
        with Vertical(id="scenario-picker"):
            yield Static(Text("Run a scenario on this lab", "bold"))
            yield OptionList(*options, id="scenarios")
            yield Static("Enter runs it step by step with a caption per step · Esc cancels", id="scenario-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
