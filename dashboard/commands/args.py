"""What every `natslab` subcommand shares: argument types, common options, settings, usage errors.

Each argument type refuses bad input with a one-line reason; argparse prints it and exits 2. The
`NATSLAB_*` variables go through the same types, so a bad one is refused the same way, named.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import urlsplit

from dashboard.commands.loops import LOOP_VARIABLE, default_loop, loop_name
from dashboard.lab.cluster import CLUSTER_SIZES
from dashboard.lab.natsserver import DEFAULT_SYNC, SYNC_INTERVAL, SYNC_MODES
from dashboard.lab.settings import Settings, default_data_dir, unwritable_reason
from listeners.groups import DEFAULT_ACK_WAIT_S
from listeners.guard import GAP_TIMEOUT_ACK_WAITS
from listeners.partitions import DEFAULT_PARTITIONS, MAX_PARTITIONS
from publisher.credentials import ENV, Credentials, CredentialsError, redact_url, unreadable_reason
from publisher.jetstream import DEFAULT_NATS_TIMEOUT_S

T = TypeVar("T")

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit code 2, nothing written."""


class DataDirError(Exception):
    """The data dir cannot be written: one line, exit 1, found before anything is written."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors exit with EXIT_USAGE."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def options(self) -> dict[str, str]:
        """dest -> the first spelling of each option this parser takes (`--ack-wait`)."""
        return {action.dest: action.option_strings[0] for action in self._actions if action.option_strings}


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


def nats_url(text: str) -> str:
    """Server URLs as nats-py takes them, one or several comma-joined (the servers of one cluster):
    each nats:// or tls://, a host, and a port if not the default; credentials in one
    (`nats://user:password@host`) are taken and never repeated in an error."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 1 and not all(parts):
        raise argparse.ArgumentTypeError(f"{redact_url(text)!r} has an empty URL between its commas")
    for part in parts:
        try:
            parsed = urlsplit(part)
            port = parsed.port  # ValueError unless a number in 0-65535
        except ValueError:
            port = 0
        if port == 0 or parsed.scheme not in ("nats", "tls") or not parsed.hostname or parsed.path not in ("", "/"):
            raise argparse.ArgumentTypeError(
                f"{redact_url(part)!r} is not a NATS URL like nats://127.0.0.1:4222 (or tls://...)"
            )
    return ",".join(parts)


def readable_file(text: str) -> Path:
    """A file natslab can read (a key, a certificate): its absolute path, which child processes
    started elsewhere still find."""
    path = Path(text).expanduser()
    reason = unreadable_reason(path)
    if reason is not None:
        raise argparse.ArgumentTypeError(f"{text}: {reason}")
    return path.absolute()


def cluster_size(text: str) -> int:
    if not text.isdigit() or int(text) not in CLUSTER_SIZES:
        sizes = " or ".join(map(str, CLUSTER_SIZES))
        raise argparse.ArgumentTypeError(f"{text!r} is not a cluster size; a JetStream cluster here has {sizes} nodes")
    return int(text)


def add_cluster(parser: argparse.ArgumentParser) -> None:
    """`--cluster N`, for the commands that start their own server."""
    parser.add_argument(
        "--cluster", type=cluster_size, default=argparse.SUPPRESS, metavar="N",
        help="run a JetStream cluster of N embedded nodes (3 or 5) instead of one server; the stream and"
        " consumers get N replicas (env NATSLAB_CLUSTER)",
    )  # fmt: skip


def partition_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PARTITIONS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a partition count; use 1 to {MAX_PARTITIONS}")
    return int(text)


def add_partitions(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--partitions", type=partition_count, default=argparse.SUPPRESS, metavar="N",
        help=f"partitions the partitioned group splits users into (default {DEFAULT_PARTITIONS}); fixed for"
        " the life of a data dir's events",
    )  # fmt: skip


def sync_mode(text: str) -> str:
    if text not in SYNC_MODES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a sync mode; use always or interval")
    return text


LISTENER_NAME_HELP = "1-32 characters of A-Z, a-z, 0-9, '_' or '-'"


def listener_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", text):
        raise argparse.ArgumentTypeError(f"listener name must be {LISTENER_NAME_HELP}")
    return text


def add_common(parser: argparse.ArgumentParser, nats: bool = True) -> None:
    """`--data-dir`, and for commands that talk to NATS `--nats-url`, `--nats-timeout` and the
    credential and TLS options.

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
        add_nats_connection(parser)


# field of `Credentials` -> (flag, metavar, help). Their dests are the fields' names with "nats_" in
# front where the flag has it (`--nats-user` -> nats_user, `--tls-ca` -> tls_ca).
CONNECTION_FLAGS = {
    "user": ("--nats-user", "NAME", "user name, with --nats-password"),
    "password": ("--nats-password", "SECRET", "password for --nats-user (others can see a flag in ps; prefer the variable)"),
    "token": ("--nats-token", "SECRET", "authentication token (others can see a flag in ps; prefer the variable)"),
    "nkey": ("--nats-nkey", "FILE", "NKEY seed file (a line starting with SU)"),
    "creds": ("--nats-creds", "FILE", "NATS .creds file (user JWT and seed)"),
    "tls_ca": ("--tls-ca", "FILE", "CA certificate(s) to trust the server's TLS certificate by (default the system's)"),
    "tls_cert": ("--tls-cert", "FILE", "client certificate for TLS (PEM; with its key unless --tls-key)"),
    "tls_key": ("--tls-key", "FILE", "the client certificate's unencrypted private key (PEM)"),
}
FILE_FIELDS = {"nkey", "creds", "tls_ca", "tls_cert", "tls_key"}


def connection_dest(field_name: str) -> str:
    return CONNECTION_FLAGS[field_name][0].removeprefix("--").replace("-", "_")


def add_nats_connection(parser: argparse.ArgumentParser) -> None:
    """`--nats-url`, `--nats-timeout`, and the credentials and TLS files, in a group of their own.

    No default is shown: a secret must not reach the screen, and the variables are read only later.
    """
    group = parser.add_argument_group(
        "NATS connection",
        "Each flag has a variable of the same name (--nats-user: NATSLAB_NATS_USER, --tls-ca: NATSLAB_TLS_CA);"
        " credentials may also be in the URL (nats://user:password@host:4222). Processes natslab starts get"
        " them through their environment, never on their command line.",
    )
    group.add_argument(
        "--nats-url", type=nats_url, default=argparse.SUPPRESS, metavar="URL[,URL...]",
        help="use this NATS server (or the servers of one cluster, comma-joined) instead of the embedded one"
        " (env NATSLAB_NATS_URL)",
    )  # fmt: skip
    group.add_argument(
        "--nats-timeout",
        type=nats_timeout_seconds,
        default=argparse.SUPPRESS,
        help="seconds to keep trying an unreachable NATS before giving up"
        f" (env NATSLAB_NATS_TIMEOUT; default {DEFAULT_NATS_TIMEOUT_S:g})",
    )
    for field_name, (flag, metavar, text) in CONNECTION_FLAGS.items():
        group.add_argument(
            flag, dest=connection_dest(field_name), type=readable_file if field_name in FILE_FIELDS else str,
            default=argparse.SUPPRESS, metavar=metavar, help=f"{text} (env {ENV[field_name]})",
        )  # fmt: skip


def apply_connection_options(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Credentials:
    """Write the credential and TLS flags given into the environment (`environ`, by default this
    process's), where `connect()` and every process this one starts find them, and check what the
    environment then holds. A flag overrides its variable; the one line of a UsageError names
    whichever of the two was given."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    for field_name in CONNECTION_FLAGS:
        value = getattr(args, connection_dest(field_name), None)
        if value is not None:
            environ[ENV[field_name]] = str(value)
    try:
        credentials = Credentials.from_env(environ)
        credentials.check()
    except CredentialsError as exc:
        given = getattr(args, connection_dest(exc.field), None) is not None
        hint = f" ({CONNECTION_FLAGS[exc.missing][0]} or {ENV[exc.missing]})" if exc.missing else ""
        raise UsageError(f"{CONNECTION_FLAGS[exc.field][0] if given else ENV[exc.field]}: {exc}{hint}") from None
    return credentials


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


def add_sync(parser: argparse.ArgumentParser) -> None:
    """`--sync`, for the commands that start their own server."""
    parser.add_argument(
        "--sync",
        type=sync_mode,
        default=argparse.SUPPRESS,
        metavar="always|interval",
        help="when the embedded server writes events to disk: before it acknowledges each one, or every"
        f" {SYNC_INTERVAL} (env NATSLAB_SYNC; default {DEFAULT_SYNC})",
    )


# dest -> flag of the options that only set up a new lab.
LAB_OPTIONS = (
    ("dashboard_listeners", "--listeners"),
    ("dashboard_naive", "--naive"),
    ("dashboard_partitioned", "--partitioned"),
    ("partitions", "--partitions"),
    ("dashboard_defer", "--defer"),
    ("ack_wait", "--ack-wait"),
    ("gap_timeout", "--gap-timeout"),
    ("sync", "--sync"),
    ("cluster", "--cluster"),
)


def add_lab_options(parser: argparse.ArgumentParser) -> None:
    """What a lab is started with: the dashboard's options, and `natslab up`'s. Their dests are the
    dashboard's own (`dashboard_listeners`...), so `misplaced` can tell them from a command's."""
    parser.add_argument(
        "--listeners", dest="dashboard_listeners", type=whole_number, default=argparse.SUPPRESS, metavar="N",
        help="guarded listeners to start (default 2)",
    )  # fmt: skip
    parser.add_argument(
        "--naive", dest="dashboard_naive", type=whole_number, default=argparse.SUPPRESS, metavar="N",
        help="naive listeners to start (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--partitioned", dest="dashboard_partitioned", type=whole_number, default=argparse.SUPPRESS, metavar="N",
        help="partitioned listeners to start (default 2)",
    )  # fmt: skip
    add_partitions(parser)
    add_ack_wait(parser)
    add_gap_timeout(parser)
    parser.add_argument(
        "--defer", dest="dashboard_defer", choices=("nak", "ack-wait"), default=argparse.SUPPRESS,
        help="how guarded listeners defer early events (default nak)",
    )  # fmt: skip
    add_sync(parser)
    add_cluster(parser)


def _from_env(name: str, parse: Callable[[str], T], default: T) -> T:
    """A `NATSLAB_*` variable through its flag's type; unset or empty is the default."""
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{name}: {exc}") from None


def _option(args: argparse.Namespace, dest: str, env: str, parse: Callable[[str], T], default: T) -> T:
    """A flag's value if it was given (before or after the subcommand's name), else its variable's."""
    value = getattr(args, dest, None)
    return value if value is not None else _from_env(env, parse, default)


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings of a command: its flags, else the environment, else the defaults.

    Each variable is checked when its flag is not given, so a bad one fails with its name before
    anything runs (and a flag still overrides it).
    """
    return Settings(
        data_dir=(getattr(args, "data_dir", None) or default_data_dir()).expanduser(),
        nats_url=getattr(args, "nats_url", None),
        env_nats_url=_from_env("NATSLAB_NATS_URL", nats_url, None),
        ack_wait_s=_option(args, "ack_wait", "NATSLAB_ACK_WAIT", ack_wait_seconds, DEFAULT_ACK_WAIT_S),
        listeners=getattr(args, "dashboard_listeners", 2),
        naive=getattr(args, "dashboard_naive", 1),
        partitioned=getattr(args, "dashboard_partitioned", 2),
        partitions=getattr(args, "partitions", DEFAULT_PARTITIONS),
        defer=getattr(args, "dashboard_defer", "nak"),
        nats_timeout_s=_option(args, "nats_timeout", "NATSLAB_NATS_TIMEOUT", nats_timeout_seconds, DEFAULT_NATS_TIMEOUT_S),
        sync=_option(args, "sync", "NATSLAB_SYNC", sync_mode, DEFAULT_SYNC),
        cluster=_option(args, "cluster", "NATSLAB_CLUSTER", cluster_size, 0),
        loop=_from_env(LOOP_VARIABLE, loop_name, default_loop()),
        gap_timeout_s=getattr(args, "gap_timeout", None),
        attach=getattr(args, "attach", False),
        lab_options=tuple(flag for dest, flag in LAB_OPTIONS if getattr(args, dest, None) is not None),
    )


def require_writable(settings: Settings, args: argparse.Namespace) -> None:
    """Refuse a data dir that cannot be written (or created), before anything is written there."""
    reason = unwritable_reason(settings.data_dir)
    if reason is not None:
        if getattr(args, "data_dir", None):
            source = ""
        else:
            source = " (from NATSLAB_DATA_DIR)" if os.environ.get("NATSLAB_DATA_DIR") else " (the default)"
        raise DataDirError(f"data dir {settings.data_dir}{source} is not writable: {reason}")


def require_url(settings: Settings) -> str:
    """The NATS server a command talks to; a usage error naming the ways to get one when there is none."""
    url = settings.discovered_nats_url()
    if not url:
        raise UsageError(
            f"no NATS server: start one with `natslab` or `natslab server --data-dir {settings.data_dir}`, or pass --nats-url"
        )
    return url
