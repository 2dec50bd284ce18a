"""What every `natslab` subcommand shares: argument types, common options, settings, usage errors.

Each argument type refuses bad input with a one-line reason; argparse prints it and exits 2.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from dashboard.lab.settings import Settings, default_data_dir
from listeners.groups import DEFAULT_ACK_WAIT_S
from listeners.guard import GAP_TIMEOUT_ACK_WAITS
from publisher.jetstream import DEFAULT_NATS_TIMEOUT_S

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit code 2, nothing written."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors exit with EXIT_USAGE."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


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
gap_timeout_seconds = seconds(0.1, 86400)


def port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port")
    return int(text)


LISTENER_NAME_HELP = "1-32 characters of A-Z, a-z, 0-9, '_' or '-'"


def listener_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", text):
        raise argparse.ArgumentTypeError(f"listener name must be {LISTENER_NAME_HELP}")
    return text


def add_common(parser: argparse.ArgumentParser, nats: bool = True) -> None:
    """`--data-dir`, and for commands that talk to NATS `--nats-url` and `--nats-timeout`.

    Unset, an option leaves no attribute (SUPPRESS), so `natslab --data-dir D check` and
    `natslab check --data-dir D` mean the same: a subcommand's unset option does not hide the main one.
    """
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"where the store, databases and logs live (env NATSLAB_DATA_DIR; default {default_data_dir()})",
    )
    if nats:
        parser.add_argument(
            "--nats-url",
            default=argparse.SUPPRESS,
            help="use this NATS server instead of the embedded one (env NATSLAB_NATS_URL)",
        )
        parser.add_argument(
            "--nats-timeout",
            type=nats_timeout_seconds,
            default=argparse.SUPPRESS,
            help="seconds to keep trying an unreachable NATS before giving up"
            f" (env NATSLAB_NATS_TIMEOUT; default {DEFAULT_NATS_TIMEOUT_S:g})",
        )


def add_ack_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ack-wait",
        type=ack_wait_seconds,
        default=argparse.SUPPRESS,
        help=f"seconds before an unacknowledged event is redelivered (env NATSLAB_ACK_WAIT; default {DEFAULT_ACK_WAIT_S:g})",
    )


def add_gap_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gap-timeout",
        type=gap_timeout_seconds,
        default=argparse.SUPPRESS,
        help="seconds a user may wait for a missing number before the guard parks the events behind it"
        f" (default {GAP_TIMEOUT_ACK_WAITS} ack waits)",
    )


def _from_env(name: str, parse: Callable[[str], float], default: float) -> float:
    try:
        return parse(os.environ.get(name, str(default)))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{name}: {exc}") from None


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings of a command: its flags, else the environment, else the defaults."""
    ack_wait = getattr(args, "ack_wait", None)
    if ack_wait is None:
        ack_wait = _from_env("NATSLAB_ACK_WAIT", ack_wait_seconds, DEFAULT_ACK_WAIT_S)
    nats_timeout = getattr(args, "nats_timeout", None)
    if nats_timeout is None:
        nats_timeout = _from_env("NATSLAB_NATS_TIMEOUT", nats_timeout_seconds, DEFAULT_NATS_TIMEOUT_S)
    return Settings(
        data_dir=(getattr(args, "data_dir", None) or default_data_dir()).expanduser(),
        nats_url=getattr(args, "nats_url", None),
        ack_wait_s=ack_wait,
        listeners=getattr(args, "listeners", 2),
        naive=getattr(args, "naive", 1),
        defer=getattr(args, "defer", "nak"),
        nats_timeout_s=nats_timeout,
        gap_timeout_s=getattr(args, "gap_timeout", None),
    )


def require_url(settings: Settings) -> str:
    """The NATS server a command talks to; a usage error naming the ways to get one when there is none."""
    url = settings.discovered_nats_url()
    if not url:
        raise UsageError(
            f"no NATS server: start one with `natslab` or `natslab server --data-dir {settings.data_dir}`, or pass --nats-url"
        )
    return url
