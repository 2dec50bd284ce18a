"""The checker's report as text: the table `natslab check`, `scenario` and `chaos` print (docs/design.md,
"Checker invariants")."""

from __future__ import annotations

from dashboard.lab.checker import CheckReport, UserReport, UserVerdict
from publisher.events import format_cents


def format_report(report: CheckReport) -> str:
    """The report as a table (user, expected, guarded, partitioned when it has a database, naive; `!`
    marks a wrong row, `…` one with events pending) and its verdict."""
    partitioned = report.partitioned is not None
    header = f"{'user':<16} {'expected':>14} {'guarded':>22}"
    header += f" {'partitioned':>22}" if partitioned else ""
    lines = [f"{header} {'naive':>22}"]
    for user in report.users:
        expected = f"#{user.expected_last} {format_cents(user.expected_balance_cents)}"
        line = f"{user.user_id:<16} {expected:>14} {_cell(user, user.guarded, user.guarded_ok()):>22}"
        if partitioned:
            line += f" {_cell(user, user.partitioned, user.partitioned_ok()):>22}"
        lines.append(f"{line} {_cell(user, user.naive, user.naive_ok()):>22}")
    lines += [f"problem: {problem}" for problem in report.problems]
    if report.pending and not report.problems:
        groups = f"{report.guarded.pending} with the guarded group"
        if report.partitioned is not None:
            groups += f", {report.partitioned.pending} with the partitioned group"
        lines.append(
            f"pending: {report.pending} events not processed yet ({groups}, {report.unpublished} in the outbox);"
            " `natslab check --wait S` waits for them first"
        )
    lines.append(report.verdict_line())
    return "\n".join(lines)


def _cell(user: UserReport, verdict: UserVerdict | None, ok: bool) -> str:
    if verdict is None:
        return "-"
    cell = f"#{verdict.last_number or 0} {format_cents(verdict.balance_cents or 0)}"
    if not ok:
        return cell + " !"
    return cell if user.settled(verdict) else cell + " …"
