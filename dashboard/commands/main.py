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

from dashboard.commands import bench, chaos, check, down, listener, publish, scenario, server, up, web
from dashboard.commands.args import (
    EXIT_USAGE,
    DataDirError,
    Parser,
    UsageError,
    add_common,
    add_lab_options,
    apply_connection_options,
    require_writable,
    settings_from,
)
from dashboard.lab.natsserver import ServerError
from dashboard.lab.waits import LabError, describe_error
from publisher.jetstream import NatsRefused
from publisher.sqlite import DatabaseUnavailable

COMMANDS: dict[str, ModuleType] = {
    "up": up,
    "down": down,
    "web": web,
    "server": server,
    "listener": listener,
    "publish": publish,
    "scenario": scenario,
    "chaos": chaos,
    "bench": bench,
    "check": check,
}
# The commands that write in the data dir (None: the dashboard); each refuses one it cannot write.
WRITERS = (None, "up", "web", "server", "listener", "publish")


def build_parser() -> Parser:
    """The dashboard's options, then one subparser per command. Every option before the command's
    name leaves no attribute unless given, so `misplaced` can tell what was given there; the
    dashboard's own (`--listeners`, `--naive`, `--defer`) have dests no command shares."""
    parser = Parser(prog="natslab", description="A lab for concurrency in event-based services on NATS JetStream.")
    add_common(parser)
    add_lab_options(parser)
    parser.add_argument(
        "--attach", action="store_true", default=argparse.SUPPRESS,
        help="attach to the lab running on the data dir (or at --nats-url) and never start one; wait for it",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.HELP)
        module.add_arguments(command)
        command.set_defaults(command_options=command.options())
    return parser


def misplaced(parser: Parser, args: argparse.Namespace) -> str | None:
    """An option given before the command's name that the command does not take, which would
    otherwise be dropped without a word (`natslab --listeners 3 bench`)."""
    if args.command is None:
        return None
    takes: dict[str, str] = args.command_options
    for dest, flag in parser.options().items():
        if hasattr(args, dest) and dest not in takes:
            command = f"natslab {args.command}"
            if flag in takes.values():  # an option of its own by that name, given after the name
                return f"`{command}` does not take {flag} before its name; give it after: {command} {flag} ..."
            return f"`{command}` does not take {flag}"
    return None


def run_dashboard(args: argparse.Namespace, settings) -> int:
    from dashboard.ui.run import run_dashboard as run_ui

    return run_ui(settings)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Commands that set up no log file must not spill library warnings (nats reconnect noise) on stderr.
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        problem = misplaced(parser, args)
        if problem is not None:
            raise UsageError(problem)
        if args.command in (None, "up", "web") and hasattr(args, "sync") and hasattr(args, "nats_url"):
            raise UsageError("--sync sets natslab's own server; with --nats-url that server's configuration decides")
        if args.command in (None, "up", "web") and hasattr(args, "cluster") and hasattr(args, "nats_url"):
            raise UsageError("--cluster starts natslab's own nodes; with --nats-url, list every node's URL there instead")
        settings = settings_from(args)
        # Before anything connects or starts a process: all of them find the credentials there. The
        # variables are checked for every command: even one that runs its own server hands them on
        # to its listeners, and nats-py would fail on a bad seed file with a traceback.
        apply_connection_options(args)
        if args.command in WRITERS:
            require_writable(settings, args)
        command = COMMANDS.get(args.command)
        return command.run(args, settings) if command is not None else run_dashboard(args, settings)
    except UsageError as exc:
        print(f"natslab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except (DataDirError, LabError, NatsRefused, ServerError, DatabaseUnavailable, OSError) as exc:
        # A bare timeout (asyncio's is an OSError) says nothing by itself: name it at least.
        print(f"natslab: {describe_error(exc)}", file=sys.stderr)
        return 1
