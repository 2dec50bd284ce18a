"""The scenario picker: choose a scenario to run on this lab, step by step or straight through."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


@dataclass(frozen=True, slots=True)
class ScenarioChoice:
    name: str
    step_mode: bool


class ScenarioPicker(ModalScreen[ScenarioChoice | None]):
    """A list of (name, summary). Enter runs the highlighted one step by step (Space runs each step),
    g runs it straight through, Esc cancels."""

    BINDINGS = [
        Binding("escape", "cancel", "cancel"),
        Binding("g", "run_through", "run straight through"),
    ]
    DEFAULT_CSS = """
    ScenarioPicker { align: center middle; }
    ScenarioPicker #scenario-picker {
        width: 96%; max-width: 110; height: auto; max-height: 96%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    ScenarioPicker OptionList { height: auto; max-height: 14; border: none; text-wrap: nowrap; text-overflow: ellipsis; }
    ScenarioPicker #scenario-hint { color: $text-muted; }
    """

    def __init__(self, scenarios: list[tuple[str, str]]) -> None:
        super().__init__()
        self.scenarios = scenarios

    def compose(self) -> ComposeResult:
        width = max(len(name) for name, _ in self.scenarios)
        options = []
        for name, summary in self.scenarios:
            # One line per scenario: a long summary is cut, never wrapped under the names.
            prompt = Text(no_wrap=True, overflow="ellipsis")
            prompt.append(f"{name:<{width}}  ", "bold")
            prompt.append(summary)
            options.append(Option(prompt, id=name))
        with Vertical(id="scenario-picker"):
            yield Static(Text("Run a scenario on this lab", "bold"))
            yield OptionList(*options, id="scenarios")
            hint = Text(no_wrap=True, overflow="ellipsis")
            hint.append("Enter", "bold")
            hint.append(" runs it step by step (each caption waits for Space) · ")
            hint.append("g", "bold")
            hint.append(" runs it straight through · ")
            hint.append("Esc", "bold")
            hint.append(" cancels")
            yield Static(hint, id="scenario-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        assert event.option.id is not None
        self.dismiss(ScenarioChoice(event.option.id, step_mode=True))

    def action_run_through(self) -> None:
        option_list = self.query_one(OptionList)
        if option_list.highlighted is None:
            return
        option = option_list.get_option_at_index(option_list.highlighted)
        assert option.id is not None
        self.dismiss(ScenarioChoice(option.id, step_mode=False))

    def action_cancel(self) -> None:
        self.dismiss(None)
