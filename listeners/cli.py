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


def run(args: argparse.Namespace, nats_url: str, data_dir: Path) -> int:
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
    )
    setup_file_logging(data_dir, f"listener-{args.name}")
    logging.getLogger(__name__).info("listener %s starting (%s, %s)", config.name, config.mode, nats_url)
    try:
        asyncio.run(AccountListener(config).run())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"natslab listener: cannot reach NATS at {nats_url}: {exc}", file=sys.stderr)
        return 1
    return 0
