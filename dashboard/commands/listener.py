"""`natslab listener`: run one Account Service listener process in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from listeners.account_listener import AccountListener, ListenerConfig
from listeners.groups import DEFAULT_ACK_WAIT_S
from listeners.status import failure_prefix
from publisher.sqlite import DatabaseUnavailable

NAME_RE_HELP = "1-32 characters of A-Z, a-z, 0-9, '_' or '-'"


def _name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", text):
        raise argparse.ArgumentTypeError(f"listener name must be {NAME_RE_HELP}")
    return text


# Argument types shared by every natslab command: each refuses bad input with a one-line reason.


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def whole_number(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def seconds(low: float, high: float) -> Callable[[str], float]:
    """A number of seconds in [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g} seconds")
        return value

    return parse


ack_wait_seconds = seconds(0.5, 3600)
nats_timeout_seconds = seconds(1, 3600)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", type=_name, required=True, help="listener name, e.g. A")
    parser.add_argument("--mode", choices=("guarded", "naive"), default="guarded")
    parser.add_argument(
        "--defer",
        choices=("nak", "ack-wait"),
        default="nak",
        help="early events: nak with a growing delay, or leave unacknowledged until the ack wait",
    )
    parser.add_argument(
        "--ack-wait",
        type=ack_wait_seconds,
        default=float(os.environ.get("NATSLAB_ACK_WAIT", DEFAULT_ACK_WAIT_S)),
        help="consumer ack wait in seconds (env NATSLAB_ACK_WAIT)",
    )
    parser.add_argument("--batch", type=positive_int, default=100, help="events fetched per pull")
    parser.add_argument("--slow-ms", type=int, default=0, help="start slowed down by this many ms per event")
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)


def setup_file_logging(data_dir: Path, name: str) -> Path:
    """Log to `logs/<name>.log` in the data dir: never to the terminal a dashboard may own."""
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{name}.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def run(args: argparse.Namespace, nats_url: str, data_dir: Path, nats_timeout_s: float) -> int:
    """Run the listener; 0 when it was told to stop, 1 with one line on stderr when it could not go on.

    The line on stderr is what the supervisor shows as the reason a listener process ended.
    """
    config = ListenerConfig(
        name=args.name,
        mode=args.mode,
        nats_url=nats_url,
        data_dir=data_dir,
        ack_wait_s=args.ack_wait,
        defer=args.defer,
        batch=args.batch,
        slow_ms=args.slow_ms,
        parent_pid=args.parent_pid,
        nats_timeout_s=nats_timeout_s,
    )
    setup_file_logging(data_dir, f"listener-{args.name}")
    log = logging.getLogger(__name__)
    log.info("listener %s starting (%s, %s)", config.name, config.mode, nats_url)
    listener = AccountListener(config)
    try:
        asyncio.run(listener.run())
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
