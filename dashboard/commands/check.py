"""`natslab check`: the account databases against the event history (docs/design.md, "Checker invariants")."""

from __future__ import annotations

import argparse
import asyncio
import json

from dashboard.commands.args import add_common, require_url
from dashboard.lab.checker import format_report, run_check
from dashboard.lab.settings import Settings
from dashboard.lab.waits import close_quietly, connect_with_retry

HELP = "check the account databases against the event history"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(check(args, settings))


async def check(args: argparse.Namespace, settings: Settings) -> int:
    url = require_url(settings)
    nc = await connect_with_retry(url, "natslab-check", timeout=5.0)
    try:
        report = await run_check(nc, settings.data_dir)
    finally:
        await close_quietly(nc)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1
