"""`natslab check`: the account databases against the event history (docs/design.md, "Checker invariants")."""

from __future__ import annotations

import argparse
import json
import sys

from dashboard.commands import loops
from dashboard.commands.args import add_common, require_url, seconds
from dashboard.lab.check_format import format_report
from dashboard.lab.history import HistoryError
from dashboard.lab.settings import Settings
from dashboard.lab.snapshot import run_check, wait_settled
from dashboard.lab.waits import close_quietly, connect_with_retry
from publisher.sqlite import DatabaseUnavailable

HELP = "check the account databases against the event history"

# Exit codes: verified, an invariant is broken, the check could not be made, events still pending.
EXIT_OK, EXIT_FAILED, EXIT_CANNOT_CHECK, EXIT_PENDING = 0, 1, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--wait",
        type=seconds(0, 3600),
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for the guarded and partitioned groups to process what is pending"
        " (default 0)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    return loops.run(check(args, settings), settings.loop)


async def check(args: argparse.Namespace, settings: Settings) -> int:
    url = require_url(settings)
    nc = await connect_with_retry(url, "natslab-check", timeout=5.0)
    try:
        if args.wait:
            left = await wait_settled(nc, settings.data_dir, args.wait, _progress)
            if left:
                print(f"natslab check: {left} events still pending after {args.wait:g} s; checking anyway", file=sys.stderr)
        report = await run_check(nc, settings.data_dir)
    except (HistoryError, DatabaseUnavailable) as exc:
        print(f"natslab check: cannot check: {exc}", file=sys.stderr)
        return EXIT_CANNOT_CHECK
    finally:
        await close_quietly(nc)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(report))
    if report.problems:
        return EXIT_FAILED
    return EXIT_PENDING if report.pending else EXIT_OK


def _progress(left: int, elapsed: float) -> None:
    print(f"natslab check: waiting for {left} pending events ({elapsed:.0f} s)", file=sys.stderr, flush=True)
