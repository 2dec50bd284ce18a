"""`natslab`: the dashboard, and the headless commands around the same system.

One module per subcommand in this package (`natslab publish` is `publish.py`), each with
`add_arguments(parser)` and `run(args, settings) -> exit code`. Without a subcommand, `natslab` runs
the dashboard; Textual is imported only then. The command line is described in docs/design.md,
"Command line".
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from dashboard.commands import bench, chaos, check, listener, publish, scenario, server
from dashboard.commands.args import (
    EXIT_USAGE,
    Parser,
    UsageError,
    add_ack_wait,
    add_common,
    add_gap_timeout,
    settings_from,
    whole_number,
)
from dashboard.lab.natsserver import ServerError
from dashboard.lab.waits import LabError
from publisher.sqlite import DatabaseUnavailable

COMMANDS: dict[str, ModuleType] = {
    "server": server,
    "listener": listener,
    "publish": publish,
    "scenario": scenario,
    "chaos": chaos,
    "bench": bench,
    "check": check,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="natslab", description="A lab for concurrency in event-based services on NATS JetStream.")
    add_common(parser)
    parser.add_argument("--listeners", type=whole_number, default=2, help="guarded listeners to start (default 2)")
    parser.add_argument("--naive", type=whole_number, default=1, help="naive listeners to start (default 1)")
    add_ack_wait(parser)
    add_gap_timeout(parser)
    parser.add_argument(
        "--defer", choices=("nak", "ack-wait"), default="nak", help="how guarded listeners defer early events"
    )
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def run_dashboard(args: argparse.Namespace, settings) -> int:
    from dashboard.ui.run import run_dashboard as run_ui

    return run_ui(settings)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Commands that set up no log file must not spill library warnings (nats reconnect noise) on stderr.
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        settings = settings_from(args)
        command = COMMANDS.get(args.command)
        return command.run(args, settings) if command is not None else run_dashboard(args, settings)
    except UsageError as exc:
        print(f"natslab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except (LabError, ServerError, DatabaseUnavailable, OSError) as exc:
        print(f"natslab: {exc}", file=sys.stderr)
        return 1
