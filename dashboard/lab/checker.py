"""The checker: does the account database hold its invariants (docs/design.md, "Checker invariants")?

For every user, after the system drains, the guarded database must have applied exactly the numbers
1..N that were published, each once, in increasing order, with the balance the business rule gives;
every stored event must be applied or recorded as poison, and nothing may be left unpublished. The
naive database is measured the same way and reported, never fatal.

`check_data` is pure (hand-made inputs in unit tests); `run_check` gathers the inputs from the stream
and the three databases.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from dashboard.lab.history import StoredEvent, read_history
from listeners.accounts import ACCOUNTS_DB, NAIVE_ACCOUNTS_DB
from publisher.events import AccountEvent, apply_business_rule, format_cents
from publisher.sqlite import fetch_all, read_only


@dataclass(frozen=True, slots=True)
class AppliedRow:
    user_id: str
    number: int
    outcome: str


@dataclass(slots=True)
class DatabaseState:
    """What one account database holds: accounts, processed events in commit order, poison seqs."""

    accounts: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (last_number, balance)
    applied: list[AppliedRow] = field(default_factory=list)
    poison_seqs: set[int] = field(default_factory=set)
    present: bool = True
    _by_user: dict[str, list[AppliedRow]] | None = field(default=None, repr=False, compare=False)

    def applied_by_user(self) -> dict[str, list[AppliedRow]]:
        """Processed events per user, in commit order; grouped once, not once per user."""
        if self._by_user is None:
            self._by_user = {}
            for row in self.applied:
                self._by_user.setdefault(row.user_id, []).append(row)
        return self._by_user


@dataclass(slots=True)
class UserVerdict:
    """One user in one database."""

    last_number: int | None
    balance_cents: int | None
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0

    @property
    def ok_counts(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0 and self.unexpected == 0


@dataclass(slots=True)
class UserReport:
    user_id: str
    expected_last: int
    expected_balance_cents: int
    unpublished: int
    gap_at: int | None
    guarded: UserVerdict
    naive: UserVerdict | None

    def guarded_ok(self) -> bool:
        verdict = self.guarded
        return (
            verdict.ok_counts
            and self.unpublished == 0
            and self.gap_at is None
            and (verdict.last_number or 0) == self.expected_last
            and (verdict.balance_cents or 0) == self.expected_balance_cents
        )

    def naive_ok(self) -> bool:
        verdict = self.naive
        if verdict is None:
            return True
        return (
            verdict.ok_counts
            and (verdict.last_number or 0) == self.expected_last
            and (verdict.balance_cents or 0) == self.expected_balance_cents
        )


@dataclass(slots=True)
class Totals:
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    wrong_balance: int = 0

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0 and self.wrong_balance == 0


@dataclass(slots=True)
class CheckReport:
    users: list[UserReport]
    stream_events: int
    poison_in_stream: int
    unrecorded_poison: int
    unpublished: int
    guarded: Totals
    naive: Totals | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def verdict_line(self) -> str:
        g = self.guarded
        line = (
            f"guarded: lost={g.lost} duplicated={g.duplicated} out_of_order={g.out_of_order}"
            f" wrong_balance={g.wrong_balance} poison={self.poison_in_stream} unpublished={self.unpublished}"
        )
        if self.naive is not None:
            n = self.naive
            line += (
                f" | naive: lost={n.lost} duplicated={n.duplicated} out_of_order={n.out_of_order}"
                f" wrong_balance={n.wrong_balance}"
            )
        return line + (" | OK" if self.ok else " | FAILED")


def format_report(report: CheckReport) -> str:
    """The report as a table (user, expected, guarded, naive; `!` marks a wrong row) and its verdict."""
    lines = [f"{'user':<16} {'expected':>14} {'guarded':>22} {'naive':>22}"]
    for user in report.users:
        expected = f"#{user.expected_last} {format_cents(user.expected_balance_cents)}"
        guarded = f"#{user.guarded.last_number or 0} {format_cents(user.guarded.balance_cents or 0)}"
        guarded += "" if user.guarded_ok() else " !"
        naive = "-"
        if user.naive is not None:
            naive = f"#{user.naive.last_number or 0} {format_cents(user.naive.balance_cents or 0)}"
            naive += "" if user.naive_ok() else " !"
        lines.append(f"{user.user_id:<16} {expected:>14} {guarded:>22} {naive:>22}")
    lines += [f"problem: {problem}" for problem in report.problems]
    lines.append(report.verdict_line())
    return "\n".join(lines)


def _expected_events(
    stream: list[StoredEvent], published: list[AccountEvent]
) -> tuple[dict[str, dict[int, AccountEvent]], list[StoredEvent]]:
    """Per user, number -> event, from the stream and the published transactions; and the poison."""
    expected: dict[str, dict[int, AccountEvent]] = {}
    poison: list[StoredEvent] = []
    for stored in stream:
        if stored.event is None:
            poison.append(stored)
            continue
        expected.setdefault(stored.event.user_id, {}).setdefault(stored.event.number, stored.event)
    for event in published:  # published but missing from the stream (purged, lost) is still expected
        expected.setdefault(event.user_id, {}).setdefault(event.number, event)
    return expected, poison


def _judge(user: str, expected_numbers: set[int], state: DatabaseState) -> UserVerdict:
    rows = state.applied_by_user().get(user, [])
    last, balance = state.accounts.get(user, (None, None))
    verdict = UserVerdict(last, balance)
    counts = Counter(row.number for row in rows)
    verdict.duplicated = sum(count - 1 for count in counts.values() if count > 1)
    verdict.lost = len(expected_numbers - counts.keys())
    verdict.unexpected = len(counts.keys() - expected_numbers)
    highest = 0
    for row in rows:
        if row.number < highest:
            verdict.out_of_order += 1
        highest = max(highest, row.number)
    return verdict


def check_data(
    stream: list[StoredEvent],
    published: list[AccountEvent],
    unpublished: list[AccountEvent],
    guarded: DatabaseState,
    naive: DatabaseState | None,
) -> CheckReport:
    expected, poison = _expected_events(stream, published)
    unpublished_by_user = Counter(event.user_id for event in unpublished)
    users = sorted(set(expected) | set(unpublished_by_user) | set(guarded.accounts) | set(naive.accounts if naive else ()))
    reports: list[UserReport] = []
    problems: list[str] = []
    totals = Totals()
    naive_totals = Totals() if naive is not None else None
    for user in users:
        numbers = expected.get(user, {})
        balance = 0
        last = 0
        gap_at = None
        for number in sorted(numbers):
            if number != last + 1:
                gap_at = last + 1
                break
            balance, _ = apply_business_rule(balance, numbers[number])
            last = number
        applicable = set(range(1, last + 1))
        report = UserReport(
            user,
            last,
            balance,
            unpublished_by_user.get(user, 0),
            gap_at,
            _judge(user, applicable, guarded),
            _judge(user, applicable, naive) if naive is not None else None,
        )
        reports.append(report)
        for verdict, total in ((report.guarded, totals), (report.naive, naive_totals)):
            if verdict is None or total is None:
                continue
            total.lost += verdict.lost
            total.duplicated += verdict.duplicated + verdict.unexpected
            total.out_of_order += verdict.out_of_order
            if (verdict.balance_cents or 0) != balance or (verdict.last_number or 0) != last:
                total.wrong_balance += 1
        if gap_at is not None:
            problems.append(f"{user}: number {gap_at} is missing from the stream; later events cannot be applied")
        if not report.guarded_ok() and gap_at is None:
            g = report.guarded
            problems.append(
                f"{user}: guarded has last={g.last_number or 0} balance={g.balance_cents or 0}, expected"
                f" last={last} balance={balance} (lost={g.lost} duplicated={g.duplicated + g.unexpected}"
                f" out_of_order={g.out_of_order} unpublished={report.unpublished})"
            )
    unrecorded = [stored for stored in poison if stored.stream_seq not in guarded.poison_seqs]
    if unrecorded:
        problems.append(
            f"{len(unrecorded)} malformed events are not recorded as poison (first at stream seq {unrecorded[0].stream_seq})"
        )
    total_unpublished = sum(unpublished_by_user.values())
    return CheckReport(
        reports, len(stream), len(poison), len(unrecorded), total_unpublished, totals, naive_totals, problems
    )


async def read_accounts(path: Path) -> dict[str, tuple[int, int]]:
    """user -> (last_number, balance_cents), read without writing; only the accounts table."""
    if not path.exists():
        return {}
    async with read_only(path) as db:
        try:
            rows = await fetch_all(db, "SELECT user_id, last_number, balance_cents FROM accounts")
        except sqlite3.OperationalError:  # created but not yet given its schema
            return {}
    return {user: (last, balance) for user, last, balance in rows}


async def read_database(path: Path) -> DatabaseState:
    """Read an account database without changing it; a missing one reads as empty."""
    if not path.exists():
        return DatabaseState(present=False)
    # One read transaction, so the tables agree: listeners commit batches while this reads, and
    # accounts read before a batch beside its applied_events read after it look like a broken guard.
    async with read_only(path, snapshot=True) as db:
        tables = {row[0] for row in await fetch_all(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "accounts" not in tables:
            return DatabaseState(present=False)
        state = DatabaseState()
        rows = await fetch_all(db, "SELECT user_id, last_number, balance_cents FROM accounts")
        state.accounts = {user: (last, balance) for user, last, balance in rows}
        rows = await fetch_all(db, "SELECT user_id, number, outcome FROM applied_events ORDER BY rowid")
        state.applied = [AppliedRow(*row) for row in rows]
        state.poison_seqs = {row[0] for row in await fetch_all(db, "SELECT stream_seq FROM poison_events")}
        return state


async def read_transactions(path: Path) -> tuple[list[AccountEvent], list[AccountEvent]]:
    """(published, unpublished) transactions; a missing database has none."""
    if not path.exists():
        return [], []
    async with read_only(path) as db:
        try:
            rows = await fetch_all(
                db,
                "SELECT id, type, user_id, amount_cents, number, created_at, published_at FROM transactions"
                " ORDER BY user_id, number",
            )
        except sqlite3.OperationalError:  # created but not yet given its schema
            return [], []
    published = [AccountEvent(*row[:6]) for row in rows if row[6] is not None]
    unpublished = [AccountEvent(*row[:6]) for row in rows if row[6] is None]
    return published, unpublished


async def run_check(nc: NATS, data_dir: Path) -> CheckReport:
    stream = await read_history(nc)
    published, unpublished = await read_transactions(data_dir / "transactions.db")
    guarded = await read_database(data_dir / ACCOUNTS_DB)
    naive = await read_database(data_dir / NAIVE_ACCOUNTS_DB)
    return check_data(stream, published, unpublished, guarded, naive if naive.present else None)
