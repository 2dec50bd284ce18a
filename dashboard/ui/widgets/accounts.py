"""The account database pane: Name, Last number processed, Balance, guarded, naive and (when the lab
has it) partitioned side by side, then what the stream says they should be.

Drawn line by line (Textual's line API): a lab with thousands of users costs the rows on screen, not
a table of every user re-rendered and re-laid out at each redraw.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.css.scalar import Scalar
from textual.widgets import Static

from dashboard.ui.partitions_view import has_partitioned
from dashboard.ui.view import AccountLine, LabView
from dashboard.ui.widgets.cached_lines import CachedLines
from publisher.events import format_cents

DIFFERS = "on #5f1f1f"
SETTLING = "on #4a3f10"  # differs while events are still in flight: may resolve by itself
MAX_NAME_WIDTH = 12
EMPTY = "no accounts yet: d deposits, w withdraws, b bursts"
# The pane's share of a wide screen, beside the timeline: at least, and at most.
NARROWEST, WIDEST = 0.40, 0.55
SUBTITLES = {
    False: "guarded: accounts.db · naive: accounts-naive.db",
    True: "accounts.db · accounts-naive.db · accounts-partitioned.db",
}


def balance_width(lines: list[AccountLine]) -> int:
    """The widest balance of any database or expectation, so the columns line up."""
    cents = [
        row.balance_cents for line in lines for row in (line.guarded, line.naive, line.partitioned) if row is not None
    ]
    cents += [line.expected[1] for line in lines if line.expected is not None]
    return max([len("Balance"), *(len(format_cents(value)) for value in cents)])


def name_width(lines: list[AccountLine]) -> int:
    """As wide as the longest name, up to MAX_NAME_WIDTH; longer ones are cut with an ellipsis."""
    return min(MAX_NAME_WIDTH, max([len("Name"), *(len(line.user_id) for line in lines)]))


def titles(partitioned: bool) -> tuple[str, ...]:
    return ("guarded", "naive", "partitioned", "expected") if partitioned else ("guarded", "naive", "expected")


def header_text(names: int, width: int, partitioned: bool = False) -> Text:
    pair = 5 + width
    columns = titles(partitioned)
    text = Text(no_wrap=True, style="bold")
    text.append(" " * (names + 1))
    text.append(" ".join(f"{title:<{pair}}" for title in columns))
    text.append(
        "\n" + f"{'Name':<{names}} " + " ".join(f"{'Last':>4} {'Balance':>{width}}" for _ in range(len(columns)))
    )
    return text


def _pair(last: int | None, balance: int | None, width: int) -> str:
    if last is None or balance is None:
        return f"{'-':>4} {'-':>{width}}"
    return f"{last:>4} {format_cents(balance):>{width}}"


def account_row(line: AccountLine, names: int, width: int, checked: bool, partitioned: bool = False) -> Text:
    """One user: name, then Last and Balance for the guarded database, the naive one, the partitioned
    one (when the lab has that group) and the expectation."""
    differs = line.guarded_differs or line.naive_differs or (partitioned and line.partitioned_differs)
    row = Text(no_wrap=True, style=(SETTLING if line.settling else DIFFERS) if differs else "")
    name = line.user_id if len(line.user_id) <= names else line.user_id[: names - 1] + "…"
    row.append(f"{name:<{names}}")  # from the network: a Text, never markup
    databases = [(line.guarded, line.guarded_differs), (line.naive, line.naive_differs)]
    if partitioned:
        databases.append((line.partitioned, line.partitioned_differs))
    for database, wrong in databases:
        row.append(" ")
        if database is None:
            row.append(_pair(None, None, width))
            continue
        # Red on the figure that is not what the stream gives; a row whose figures match but whose
        # events were processed wrong (twice, out of order) keeps only the row's red background.
        expected = line.expected
        last_red = wrong and expected is not None and database.last_number != expected[0]
        balance_red = wrong and expected is not None and database.balance_cents != expected[1]
        row.append(f"{database.last_number:>4}", "bold red" if last_red else "")
        row.append(" ")
        row.append(f"{format_cents(database.balance_cents):>{width}}", "bold red" if balance_red else "")
    row.append(" ")
    if line.expected is not None:
        row.append(_pair(*line.expected, width), "cyan")
    else:
        row.append(f"{'…' if not checked else '-':>4}", "dim")
    if line.waiting:
        row.append(f"  {line.waiting}", "bold red" if line.stuck else "yellow")
    return row


def _row_key(line: AccountLine, names: int, width: int, checked: bool, partitioned: bool) -> tuple:
    guarded, naive, third = line.guarded, line.naive, line.partitioned
    return (
        line.user_id,
        guarded and (guarded.last_number, guarded.balance_cents),
        naive and (naive.last_number, naive.balance_cents),
        third and (third.last_number, third.balance_cents),
        line.expected,
        line.guarded_ok,
        line.naive_ok,
        line.partitioned_ok,
        line.settling,
        line.waiting,
        names,
        width,
        checked,
        partitioned,
    )


class AccountLines(CachedLines[AccountLine]):
    """The rows; only those on screen are rendered, and a row is rendered again only when it changed."""

    def __init__(self) -> None:
        super().__init__()
        self.names = len("Name")
        self.width_cells = len("Balance")
        self.checked = False
        self.partitioned = False

    def row_key(self, row: AccountLine) -> tuple:
        return _row_key(row, self.names, self.width_cells, self.checked, self.partitioned)

    def render_row(self, row: AccountLine) -> Text:
        return account_row(row, self.names, self.width_cells, self.checked, self.partitioned)

    def set_lines(self, lines: list[AccountLine], names: int, width: int, checked: bool, partitioned: bool) -> None:
        self.names, self.width_cells, self.checked, self.partitioned = names, width, checked, partitioned
        notes = max((len(line.waiting) + 2 for line in lines), default=0)
        self.set_rows(lines, names + len(titles(partitioned)) * (6 + width) + notes)


class AccountsPane(Vertical):
    """Each group's account database against the checker's expectation; a differing row is highlighted."""

    DEFAULT_CSS = """
    AccountsPane #accounts-header {
        height: 2;
    }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text(EMPTY, "dim"), id="accounts-header")
        yield AccountLines()

    def on_mount(self) -> None:
        self.border_title = "Account database"
        self.border_subtitle = "guarded: accounts.db · naive: accounts-naive.db"

    def show(self, view: LabView) -> None:
        lines = view.account_lines()
        partitioned = has_partitioned(view)
        header = self.query_one("#accounts-header", Static)
        names, width = name_width(lines), balance_width(lines)
        header.update(header_text(names, width, partitioned) if lines else Text(EMPTY, "dim"), layout=False)
        self.query_one(AccountLines).set_lines(lines, names, width, view.report is not None, partitioned)
        self.border_subtitle = SUBTITLES[partitioned]
        self.fit(names + len(titles(partitioned)) * (6 + width) if lines else 0)

    def fit(self, content: int) -> None:
        """Beside the timeline, as wide as its columns (a fourth one, long names or large balances) but
        at least its share and at most WIDEST of the screen, so the expected column stays in view;
        stacked above the timeline on a narrow terminal, the stylesheet's full width."""
        screen = self.screen.size.width
        if not self.screen.has_class("-wide") or not screen:
            if self.styles.has_rule("width"):
                self.styles.width = None
            return
        chrome = self.styles.gutter.width + 1  # border and padding, and a vertical scrollbar's room
        width = max(int(screen * NARROWEST), min(int(screen * WIDEST), content + chrome))
        if self.styles.width != Scalar.parse(str(width)):
            self.styles.width = width
