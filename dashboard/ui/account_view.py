"""The account pane's lines: each group's row for a user beside what the check expects, and the
verdicts. Plain data (no Textual, no I/O), read from a `LabView`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dashboard.ui.view_items import AccountLine, guard_waiting
from listeners.accounts import AccountRow
from listeners.groups import ALL_GROUPS

if TYPE_CHECKING:
    from dashboard.ui.view import LabView


def partitioned_ok(row: AccountRow | None, expected: tuple[int, int], caught_up: bool) -> bool | None:
    """The partitioned group's row for a user against what the check expects; None when it cannot be
    told yet.

    The checker judges the guarded and naive databases from its own snapshot; the partitioned rows are
    read right after it (docs/design.md, "Dashboard"). A row at the expected number must have the
    expected balance: the guard applies a user's numbers in order, once each. A row past it holds
    events the check has not seen yet: not judged. A row behind it (or missing) is wrong only if the
    group had processed everything by the time the rows were read (`caught_up`); else it is on its way.
    """
    last, balance = expected
    if row is None:
        return False if caught_up and last > 0 else None
    if row.last_number > last:
        return None
    if row.last_number == last:
        return row.balance_cents == balance
    return False if caught_up else None


def account_lines(view: LabView) -> list[AccountLine]:
    """A line per user of any database or of the check, by name."""
    verdicts = {user.user_id: user for user in view.report.users} if view.report is not None else {}
    guarded, naive, partitioned = view.accounts["guarded"], view.accounts["naive"], view.accounts["partitioned"]
    settling = any(view.settling(group.name) for group in ALL_GROUPS)
    lines = []
    for name in sorted(set(guarded) | set(naive) | set(partitioned) | set(verdicts)):
        user = verdicts.get(name)
        waiting, stuck = guard_waiting(guarded.get(name), view.now)
        third = partitioned.get(name)
        if user is None:
            lines.append(
                AccountLine(name, guarded.get(name), naive.get(name), None, waiting=waiting, stuck=stuck, partitioned=third)
            )
            continue
        expected = (user.expected_last, user.expected_balance_cents)
        lines.append(
            AccountLine(
                name,
                guarded.get(name),
                naive.get(name),
                expected,
                user.guarded_ok(),
                user.naive_ok(),
                settling,
                waiting,
                stuck,
                third,
                partitioned_ok(third, expected, view.partitioned_caught_up),
            )
        )
    return lines


def partitioned_wrong(view: LabView) -> int:
    """Users whose partitioned row disagrees with what the last check expects (see `partitioned_ok`)."""
    rows = view.accounts["partitioned"]
    users = view.report.users if view.report is not None else []
    return sum(
        partitioned_ok(rows.get(user.user_id), (user.expected_last, user.expected_balance_cents), view.partitioned_caught_up)
        is False
        for user in users
    )
