"""The slow user form: one user whose every event takes a while to process, in every listener of every
group (docs/design.md, "Listener control": `slow-user USER MS`), or 0 ms to make them normal again."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Static

from dashboard.ui.screens.publish_form import UserIdValidator, start_hint

MAX_SLOW_MS = 3_600_000  # what the lab's host takes (dashboard/lab/service.py)
DEFAULT_SLOW_MS = 2000


@dataclass(frozen=True, slots=True)
class SlowUserRequest:
    user_id: str
    ms: int  # per event; 0: normal again


class MillisecondsValidator(Validator):
    def validate(self, value: str) -> ValidationResult:
        if not value.isdigit() or int(value) > MAX_SLOW_MS:
            return self.failure(f"ms: a whole number of milliseconds, 0 to {MAX_SLOW_MS}")
        return self.success()


class SlowUserForm(ModalScreen[SlowUserRequest | None]):
    """User and milliseconds per event; Enter sends, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, user_id: str = "", ms: int = DEFAULT_SLOW_MS) -> None:
        super().__init__()
        self.user_id = user_id
        self.ms = ms

    def compose(self) -> ComposeResult:
        # The publish form's ids, so its styles (app.tcss): one look for the forms.
        with Vertical(id="publish-form"):
            yield Label("Slow user (every listener of every group)", id="publish-title")
            yield Label("User (the last one used)" if self.user_id else "User")
            yield Input(self.user_id, placeholder="user id, like jim", id="user", validators=[UserIdValidator()])
            yield Label("Milliseconds per event (0: normal again)")
            yield Input(str(self.ms), placeholder="like 2000", id="ms", validators=[MillisecondsValidator()])
            yield Static("", id="publish-error")
            yield Static(
                f"{start_hint(self.user_id, 'Milliseconds')} Milliseconds: how long each event of the user takes in"
                " every listener; 0 = back to normal. A partition waits for its slow user's events; the other groups"
                " go on with the rest. Enter sends · Esc cancels",
                id="publish-hint",
            )

    def on_mount(self) -> None:
        self.query_one("#ms" if self.user_id else "#user", Input).focus()

    def show_error(self, message: str) -> None:
        self.query_one("#publish-error", Static).update(Text(message))  # quotes what was typed

    @on(Input.Changed)
    def validated_while_typing(self, event: Input.Changed) -> None:
        result = event.validation_result
        self.show_error(result.failure_descriptions[0] if event.value and result and not result.is_valid else "")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        user, ms = self.query_one("#user", Input), self.query_one("#ms", Input)
        if event.input is user and user.is_valid and not ms.value:
            ms.focus()
            return
        for field in (user, ms):
            result = field.validate(field.value)
            if result is not None and not result.is_valid:
                self.show_error(result.failure_descriptions[0])
                field.focus()
                return
        self.dismiss(SlowUserRequest(user.value, int(ms.value)))

    def action_cancel(self) -> None:
        self.dismiss(None)
