"""The account database pane: Name, Last number processed, Balance, guarded and naive side by side."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import ScrollableContainer
from textual.widgets import Static

from dashboard.view import AccountLine, LabView
from publisher.events import format_cents

DIFFERS = "on #5f1f1f"
SETTLING = "on #4a3f10"  # differs while events are still in flight: may resolve by itself


def _pair(last: int | None, balance: int | None, width: int, style: str) -> Text:
    """`Last number` and `Balance` of one database, as one cell under one title."""
    if last is None or balance is None:
        return Text(f"{'-':>4} {'-':>{width}}", style or "dim")
    return Text(f"{last:>4} {format_cents(balance):>{width}}", style)


def accounts_table(lines: list[AccountLine], checked: bool) -> Table:
    """Name, then Last and Balance for the guarded database, the naive one and the checker's expectation."""
    balances = [row.balance_cents for line in lines for row in (line.guarded, line.naive) if row is not None]
    balances += [line.expected[1] for line in lines if line.expected is not None]
    width = max([len("Balance"), *(len(format_cents(cents)) for cents in balances)])
    table = Table(box=None, padding=(0, 0, 0, 1), header_style="bold", show_edge=False)
    table.add_column("\nName", no_wrap=True, overflow="ellipsis", max_width=12)
    for title in ("guarded", "naive", "expected"):
        table.add_column(f"{title}\n{'Last':>4} {'Balance':>{width}}", no_wrap=True, min_width=5 + width)
    for line in lines:
        differs = line.guarded_differs or line.naive_differs
        guarded, naive = line.guarded, line.naive
        if line.expected is not None:
            expected = _pair(*line.expected, width, "cyan")
        else:
            expected = Text(f"{'…' if not checked else '-':>4}", "dim")
        table.add_row(
            Text(line.user_id),  # from the network: a Text, never markup
            _pair(
                guarded and guarded.last_number,
                guarded and guarded.balance_cents,
                width,
                "bold red" if line.guarded_differs else "",
            ),
            _pair(
                naive and naive.last_number,
                naive and naive.balance_cents,
                width,
                "bold red" if line.naive_differs else "",
            ),
            expected,
            style=(SETTLING if line.settling else DIFFERS) if differs else None,
        )
    return table


class AccountsPane(ScrollableContainer):
    """Both account databases against the checker's expectation; a differing row is highlighted."""

    def compose(self) -> ComposeResult:
        yield Static(id="accounts-table")

    def on_mount(self) -> None:
        self.border_title = "Account database"
        self.border_subtitle = "guarded: accounts.db · naive: accounts-naive.db"

    def show(self, view: LabView) -> None:
        lines = view.account_lines()
        body = self.query_one("#accounts-table", Static)
        if not lines:
            body.update(Text("no accounts yet: d deposits, w withdraws, b bursts", "dim"))
            return
        body.update(accounts_table(lines, view.report is not None))
