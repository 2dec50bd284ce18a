"""The account pane's lines: each group's row for a user beside what the check expects, and the
checker's verdicts on them. Plain data (no Textual, no I/O), read from a `LabView`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dashboard.ui.view_items import AccountLine, guard_waiting
from listeners.groups import ALL_GROUPS

if TYPE_CHECKING:
    from dashboard.ui.view import LabView


def account_lines(view: LabView) -> list[AccountLine]:
    """A line per user of any database or of the check, by name. Every verdict is the checker's, from
    the same pass as the rows (a group without a database is not judged: None)."""
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
        lines.append(
            AccountLine(
                name,
                guarded.get(name),
                naive.get(name),
                (user.expected_last, user.expected_balance_cents),
                user.guarded_ok(),
                user.naive_ok(),
                settling,
                waiting,
                stuck,
                third,
                user.partitioned_ok() if user.partitioned is not None else None,
            )
        )
    return lines
