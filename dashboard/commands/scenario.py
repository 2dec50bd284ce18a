"""`natslab scenario NAME`: one scripted failure on a fresh embedded server, narrated step by step.

Prints each caption, the account tables, the checker's verdict and what the run showed (the
scenario's lesson, with the run's own figures when it measured some); exits 1 when the guarded
database (or, for a scenario that runs the partitioned group, the partitioned one) breaks an
invariant, 2 for an unknown scenario.
A scenario's older name (`slides`) still runs it.
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

from dashboard.commands import loops
from dashboard.commands.args import UsageError, add_ack_wait, add_sync
from dashboard.commands.harness import scratch_data_dir
from dashboard.lab.check_format import format_report
from dashboard.lab.natsserver import sync_label
from dashboard.lab.scenarios import ALIASES, SCENARIOS, find_scenario, run_scenario
from dashboard.lab.settings import Settings
from listeners.accounts import AccountRow
from listeners.groups import GUARDED_GROUP, NAIVE_GROUP, PARTITIONED_GROUP
from publisher.events import format_cents

HELP = "run a failure scenario on a fresh embedded server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", nargs="?", help="scenario name (see --list); slides, its old name, runs overtaking-withdrawal"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_ack_wait(parser)
    add_sync(parser)
    parser.add_argument("--seed", type=int, default=None, help="random seed for the scenario's choices")


def table_lines(title: str, rows: list[AccountRow]) -> list[str]:
    lines = [title, f"  {'Name':<12} {'Last number':>11} {'Balance':>12}"]
    lines += [f"  {row.user_id:<12} {row.last_number:>11} {format_cents(row.balance_cents):>12}" for row in rows]
    return lines


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.list or not args.name:
        width = max(len(name) for name in SCENARIOS)
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:<{width}}  {scenario.summary}")
        return 0 if args.list else 2
    chosen = find_scenario(args.name)
    if chosen is None:
        raise UsageError(f"unknown scenario {args.name!r}; one of: {', '.join(SCENARIOS)} (or {', '.join(ALIASES)})")
    scenario = chosen
    steps: list[str] = []
    if not args.json:  # what the run uses, so a flag that was given can be seen to count
        uses = f"ack wait {settings.ack_wait_s:g} s, sync {sync_label(settings.sync)}"
        print(f"natslab scenario {scenario.name}: {uses}", flush=True)

    async def say(caption: str) -> None:
        steps.append(caption)
        if not args.json:
            print(f"[{len(steps)}] {caption}", flush=True)

    with scratch_data_dir("scenario", settings) as scratch:
        done = loops.run(run_scenario(scenario, settings, say, random.Random(args.seed)), settings.loop)
        if args.json:
            result = {
                "scenario": scenario.name,
                "ackWait_s": settings.ack_wait_s,
                "sync": settings.sync,
                "steps": steps,
                "lesson": done.lesson,
                "guarded": [_row(row) for row in done.guarded],
                "naive": [_row(row) for row in done.naive],
                "check": done.report.to_json(),
            }
            if scenario.partitioned:
                result["partitioned"] = [_row(row) for row in done.partitioned]
            print(json.dumps(result, indent=2))
        else:
            print()
            print("\n".join(table_lines(f"Account database (guarded, {GUARDED_GROUP.name})", done.guarded)))
            if scenario.naive or done.naive:
                print("\n".join(table_lines(f"Account database (naive, {NAIVE_GROUP.name})", done.naive)))
            if scenario.partitioned:
                title = f"Account database (partitioned, {PARTITIONED_GROUP.name})"
                print("\n".join(table_lines(title, done.partitioned)))
            print()
            print(format_report(done.report))
            print()
            print(f"What this showed: {done.lesson}")
        scratch.ok = done.ok
    return 0 if done.ok else 1


def _row(row: AccountRow) -> dict[str, Any]:
    return {"name": row.user_id, "lastNumber": row.last_number, "balanceCents": row.balance_cents}
