"""`natslab listener`: run one Account Service listener process in the foreground.

The supervisor starts listeners this way; the process contract (exit codes, the one line on stderr)
is in docs/design.md, "Listener process".
"""

from __future__ import annotations

import argparse
import logging
import sys

from dashboard.commands import loops
from dashboard.commands.args import (
    add_ack_wait,
    add_common,
    add_gap_timeout,
    add_partitions,
    listener_name,
    positive_int,
    require_url,
)
from dashboard.lab.logs import listener_log, log_to_file
from dashboard.lab.settings import Settings
from listeners.account_listener import AccountListener, ListenerConfig
from listeners.outcomes import MODES
from listeners.status import failure_prefix
from publisher.credentials import redact_url
from publisher.sqlite import DatabaseUnavailable

HELP = "run one Account Service listener"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--name", type=listener_name, required=True, help="listener name, e.g. A")
    parser.add_argument("--mode", choices=MODES, default="guarded")
    add_partitions(parser)
    parser.add_argument(
        "--home", type=partition_list, default=(), metavar="P,P",
        help="partitioned mode: the partitions this listener pulls from the start (others it only stands by for)",
    )  # fmt: skip
    parser.add_argument(
        "--defer",
        choices=("nak", "ack-wait"),
        default="nak",
        help="early events: nak with a growing delay, or leave unacknowledged until the ack wait",
    )
    add_ack_wait(parser)
    add_gap_timeout(parser)
    parser.add_argument("--batch", type=positive_int, default=100, help="events fetched per pull")
    parser.add_argument("--slow-ms", type=int, default=0, help="start slowed down by this many ms per event")
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)


def partition_list(text: str) -> tuple[int, ...]:
    """`0,2` -> (0, 2); empty -> ()."""
    parts = [part for part in text.split(",") if part]
    if not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of partitions like 0,2")
    return tuple(int(part) for part in parts)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the listener; 0 when it was told to stop, 1 with one line on stderr when it could not go on.

    The line on stderr is what the supervisor shows as the reason a listener process ended.
    """
    nats_url = require_url(settings)
    config = ListenerConfig(
        name=args.name,
        mode=args.mode,
        nats_url=nats_url,
        data_dir=settings.data_dir,
        ack_wait_s=settings.ack_wait_s,
        defer=args.defer,
        batch=args.batch,
        slow_ms=args.slow_ms,
        parent_pid=args.parent_pid,
        nats_timeout_s=settings.nats_timeout_s,
        gap_timeout_s=settings.gap_timeout_s,
        partitions=settings.partitions,
        home=tuple(p for p in args.home if p < settings.partitions),
    )
    log_to_file(listener_log(settings.data_dir, args.name))
    log = logging.getLogger(__name__)
    log.info("listener %s starting (%s, %s, %s loop)", config.name, config.mode, redact_url(nats_url), settings.loop)
    listener = AccountListener(config)
    try:
        loops.run(listener.run(), settings.loop)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        log.exception("listener %s failed", config.name)
        failure = str(exc) if isinstance(exc, DatabaseUnavailable) else f"{type(exc).__name__}: {exc}"
    else:
        failure = listener.failure
    if failure is None:
        return 0
    print(f"{failure_prefix(config.name)}{failure}", file=sys.stderr, flush=True)
    return 1
