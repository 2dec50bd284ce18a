"""The publish form: a deposit or withdrawal for one user, validated as it is typed."""

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

from publisher.events import EventError, parse_amount, validate_user_id


@dataclass(frozen=True, slots=True)
class PublishRequest:
    kind: str  # deposit or withdraw
    user_id: str
    amount_cents: int


class UserIdValidator(Validator):
    def validate(self, value: str) -> ValidationResult:
        try:
            validate_user_id(value, "user")
        except EventError as exc:
            return self.failure(str(exc))
        return self.success()


class AmountValidator(Validator):
    def validate(self, value: str) -> ValidationResult:
        try:
            parse_amount(value)
        except EventError as exc:
            return self.failure(str(exc))
        return self.success()


def start_hint(user_id: str, other: str) -> str:
    """Which field the cursor starts in: the other one when the user is filled in already. The form is
    50 columns wide inside, so this goes on the hint line, which wraps (a label is cut)."""
    return f"The cursor starts in {other} (Tab: User)." if user_id else "The cursor starts in User."


class PublishForm(ModalScreen[PublishRequest | None]):
    """User and amount; Enter sends, Esc cancels. Returns the request, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, kind: str, user_id: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.user_id = user_id

    def compose(self) -> ComposeResult:
        with Vertical(id="publish-form"):
            yield Label(f"{self.kind.capitalize()} (account:{self.kind})", id="publish-title")
            yield Label("User (the last one used)" if self.user_id else "User")
            yield Input(self.user_id, placeholder="user id, like jim", id="user", validators=[UserIdValidator()])
            yield Label("Amount in dollars")
            yield Input(placeholder="like 70 or 70.50", id="amount", validators=[AmountValidator()])
            yield Static("", id="publish-error")
            yield Static(f"{start_hint(self.user_id, 'Amount')} Enter sends · Esc cancels", id="publish-hint")

    def on_mount(self) -> None:
        self.query_one("#amount" if self.user_id else "#user", Input).focus()

    def show_error(self, message: str) -> None:
        # The message quotes what was typed: a Text, never markup.
        self.query_one("#publish-error", Static).update(Text(message))

    @on(Input.Changed)
    def validated_while_typing(self, event: Input.Changed) -> None:
        result = event.validation_result
        if event.value and result is not None and not result.is_valid:
            self.show_error(result.failure_descriptions[0])
        else:
            self.show_error("")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        user = self.query_one("#user", Input)
        amount = self.query_one("#amount", Input)
        if event.input is user and user.is_valid and not amount.value:
            amount.focus()
            return
        for field in (user, amount):
            result = field.validate(field.value)
            if result is not None and not result.is_valid:
                self.show_error(result.failure_descriptions[0])
                field.focus()
                return
        self.dismiss(PublishRequest(self.kind, user.value, parse_amount(amount.value)))

    def action_cancel(self) -> None:
        self.dismiss(None)
