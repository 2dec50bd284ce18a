"""`natslab`: the dashboard, and the headless commands around the same system.

Every command takes `--data-dir` (env `NATSLAB_DATA_DIR`) and those that talk to NATS take `--nats-url`
(env `NATSLAB_NATS_URL`); without one, they use the embedded server that a running `natslab` or
`natslab server` started on the same data dir. Textual is imported only for the dashboard itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from dashboard.commands.bench import add_arguments as bench_arguments
from dashboard.lab.chaos import add_arguments as chaos_arguments
from dashboard.lab.settings import Settings, UsageError, default_data_dir
from dashboard.commands import listener as listener_cli
from dashboard.commands.listener import ack_wait_seconds, nats_timeout_seconds, positive_int, whole_number
from listeners.groups import DEFAULT_ACK_WAIT_S
from publisher.events import KINDS, EventError, format_cents, parse_amount, validate_user_id
from publisher.jetstream import DEFAULT_NATS_TIMEOUT_S
from publisher.sqlite import DatabaseUnavailable

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

EXIT_USAGE = 2


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port")
    return int(text)


def _common(parser: argparse.ArgumentParser, nats: bool = True) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"where the store, databases and logs live (env NATSLAB_DATA_DIR; default {default_data_dir()})",
    )
    if nats:
        parser.add_argument(
            "--nats-url",
            default=None,
            help="use this NATS server instead of the embedded one (env NATSLAB_NATS_URL)",
        )
        parser.add_argument(
            "--nats-timeout",
            type=nats_timeout_seconds,
            default=None,
            help="seconds to keep trying an unreachable NATS before giving up"
            f" (env NATSLAB_NATS_TIMEOUT; default {DEFAULT_NATS_TIMEOUT_S:g})",
        )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="natslab", description="A lab for concurrency in event-based services on NATS JetStream.")
    _common(parser)
    parser.add_argument("--listeners", type=whole_number, default=2, help="guarded listeners to start (default 2)")
    parser.add_argument("--naive", type=whole_number, default=1, help="naive listeners to start (default 1)")
    parser.add_argument(
        "--ack-wait",
        type=ack_wait_seconds,
        default=None,
        help=f"seconds before an unacknowledged event is redelivered (env NATSLAB_ACK_WAIT; default {DEFAULT_ACK_WAIT_S:g})",
    )
    parser.add_argument("--defer", choices=("nak", "ack-wait"), default="nak", help="how guarded listeners defer early events")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    server = sub.add_parser("server", help="run the embedded nats-server in the foreground")
    _common(server, nats=False)
    server.add_argument("--port", type=_port, default=None, help="client port (default: a free one)")

    listener = sub.add_parser("listener", help="run one Account Service listener")
    _common(listener)
    listener_cli.add_arguments(listener)

    publish = sub.add_parser("publish", help="publish deposits and withdrawals through the transactions service")
    _common(publish)
    publish.add_argument("kind", nargs="?", help="deposit or withdraw")
    publish.add_argument("user", nargs="?", help="user id, [A-Za-z0-9_-]{1,64}")
    publish.add_argument("amount", nargs="?", help="dollars, like 70 or 70.50")
    publish.add_argument("--random", type=positive_int, metavar="N", help="publish N random transactions")
    publish.add_argument("--users", type=positive_int, default=5, help="users for --random (default 5)")
    publish.add_argument("--seed", type=int, default=None, help="random seed for --random")
    publish.add_argument("--rate", type=float, default=None, help="events per second for --random (default: as fast as possible)")
    publish.add_argument(
        "--crash",
        choices=("before-publish", "after-publish"),
        default=None,
        help="fault injection: exit right after writing the transaction, or after its PubAck but before the outbox update",
    )

    scenario = sub.add_parser("scenario", help="run a failure scenario on a fresh embedded server")
    scenario.add_argument("name", nargs="?", help="scenario name (see --list)")
    scenario.add_argument("--list", action="store_true", help="list the scenarios")
    scenario.add_argument("--json", action="store_true", help="print the result as JSON")
    scenario.add_argument("--ack-wait", type=ack_wait_seconds, default=None, help="ack wait in seconds")
    scenario.add_argument("--seed", type=int, default=None, help="random seed for the scenario's choices")

    chaos = sub.add_parser("chaos", help="publish while killing, pausing and restarting at random; then check")
    chaos_arguments(chaos)

    bench = sub.add_parser("bench", help="measure the pipeline against the raw transport, then check")
    bench_arguments(bench)

    check = sub.add_parser("check", help="check the account databases against the event history")
    _common(check)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _from_env(name: str, parse: Callable[[str], float], default: float) -> float:
    try:
        return parse(os.environ.get(name, str(default)))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{name}: {exc}") from None


def settings_from(args: argparse.Namespace) -> Settings:
    ack_wait = getattr(args, "ack_wait", None)
    if ack_wait is None:
        ack_wait = _from_env("NATSLAB_ACK_WAIT", ack_wait_seconds, DEFAULT_ACK_WAIT_S)
    nats_timeout = getattr(args, "nats_timeout", None)
    if nats_timeout is None:
        nats_timeout = _from_env("NATSLAB_NATS_TIMEOUT", nats_timeout_seconds, DEFAULT_NATS_TIMEOUT_S)
    return Settings(
        data_dir=(args.data_dir or default_data_dir()).expanduser(),
        nats_url=getattr(args, "nats_url", None),
        ack_wait_s=ack_wait,
        listeners=getattr(args, "listeners", 2),
        naive=getattr(args, "naive", 1),
        defer=getattr(args, "defer", "nak"),
        nats_timeout_s=nats_timeout,
    )


def _require_url(settings: Settings) -> str:
    url = settings.discovered_nats_url()
    if not url:
        raise UsageError(
            f"no NATS server: start one with `natslab` or `natslab server --data-dir {settings.data_dir}`, or pass --nats-url"
        )
    return url


# -- server ----------------------------------------------------------------------------------------


async def _serve(settings: Settings, port: int | None) -> int:
    from dashboard.lab.natsserver import EmbeddedServer

    server = EmbeddedServer(settings.store_dir, settings.logs_dir / "nats-server.log", port=port)
    url = await server.start()
    settings.url_file.write_text(url + "\n")
    print(url, flush=True)
    print(f"JetStream store: {settings.store_dir}; log: {server.log_file}; Ctrl-C stops", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set() and server.running:
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
    finally:
        await server.stop()
        settings.url_file.unlink(missing_ok=True)
    return 0


# -- publish ---------------------------------------------------------------------------------------


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // total
    rate = done / max(time.monotonic() - started, 1e-6)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:,.0f}/s")
    sys.stderr.flush()


async def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from publisher.jetstream import ensure_stream
    from publisher.service import CRASH_EXIT_CODE, Publisher
    from publisher.transactions import TransactionsDB
    from dashboard.lab.lab import connect_with_retry

    if args.random is not None:
        if args.crash:
            raise UsageError("--crash works with a single KIND USER AMOUNT publish")
        if args.kind or args.user or args.amount:
            raise UsageError("give either KIND USER AMOUNT or --random N, not both")
        if args.rate is not None and args.rate <= 0:
            raise UsageError("--rate must be greater than zero")
        requests = None
    else:
        if not (args.kind and args.user and args.amount):
            raise UsageError("usage: natslab publish deposit|withdraw USER AMOUNT, or natslab publish --random N")
        if args.kind not in KINDS:
            raise UsageError(f"kind must be deposit or withdraw, got {args.kind!r}")
        try:
            validate_user_id(args.user, "user")
            cents = parse_amount(args.amount)
        except EventError as exc:
            raise UsageError(str(exc)) from None
        requests = [(args.kind, args.user, cents)]
    url = _require_url(settings)
    nc = await connect_with_retry(url, "natslab-publish", timeout=5.0)
    db = await TransactionsDB.open(settings.transactions_db)
    try:
        await ensure_stream(nc)
        publisher = Publisher(db, nc)
        if requests is not None:
            kind, user, cents = requests[0]
            if args.crash == "before-publish":
                event = await publisher.record(kind, user, cents)
                print(f"{event.user_id} #{event.number} written to the outbox; crashing before publishing", flush=True)
                os._exit(CRASH_EXIT_CODE)
            publisher.crash_after_send = args.crash == "after-publish"
            result = await publisher.publish(kind, user, cents)
            event = result.event
            where = f"stream seq {result.stream_seq}" if result.stream_seq else "in the outbox (NATS unreachable; sent later)"
            print(f"{event.user_id} #{event.number} {kind} {format_cents(cents)} id={event.id} {where}")
            return 0 if result.stream_seq else 1
        rng = random.Random(args.seed)
        users = [f"user{i + 1}" for i in range(args.users)]
        started = time.monotonic()
        for index in range(args.random):
            kind = "deposit" if rng.random() < 0.6 else "withdraw"
            await publisher.record(kind, rng.choice(users), rng.randint(1, 200) * 100)
            if args.rate:
                delay = started + (index + 1) / args.rate - time.monotonic()
                if delay > 0:
                    await publisher.relay_once()
                    await asyncio.sleep(delay)
            if index % 100 == 99 or index + 1 == args.random:
                await publisher.relay_once()
                _progress(index + 1, args.random, started)
            if publisher.stalled_for() > settings.nats_timeout_s:
                break
        else:
            await publisher.relay_once()
        sys.stderr.write("\n")
        left = await db.count_unpublished()
        if publisher.stalled_for() > settings.nats_timeout_s:
            print(
                f"natslab publish: NATS at {url} unreachable for {settings.nats_timeout_s:g} s; gave up after"
                f" recording {index + 1} of {args.random} events. {left} wait in the outbox and go out with the next"
                " relay (a running natslab, or the next natslab publish).",
                file=sys.stderr,
            )
            return 1
        print(f"published {publisher.published_count} events for {args.users} users; {left} left in the outbox")
        return 0 if left == 0 else 1
    finally:
        await db.close()
        await _close_quietly(nc)


async def _close_quietly(nc: NATS) -> None:
    """Close a NATS connection whose server may be gone; the command's result is already decided."""
    try:
        await nc.close()
    except Exception as exc:
        logging.getLogger(__name__).debug("close: %r", exc)


# -- check -----------------------------------------------------------------------------------------


async def _check(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard.lab.checker import format_report, run_check
    from dashboard.lab.lab import connect_with_retry

    url = _require_url(settings)
    nc = await connect_with_retry(url, "natslab-check", timeout=5.0)
    try:
        report = await run_check(nc, settings.data_dir)
    finally:
        await _close_quietly(nc)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1


# -- entry -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Commands that set up no log file must not spill library warnings (nats reconnect noise) on stderr.
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        settings = settings_from(args)
        if args.command == "server":
            return asyncio.run(_serve(settings, args.port))
        if args.command == "listener":
            return listener_cli.run(args, _require_url(settings), settings.data_dir, settings.nats_timeout_s)
        if args.command == "publish":
            return asyncio.run(_publish(args, settings))
        if args.command == "check":
            return asyncio.run(_check(args, settings))
        if args.command == "bench":
            from dashboard.commands.bench import run_cli as run_bench_cli

            return run_bench_cli(args, settings)
        if args.command == "chaos":
            from dashboard.lab.chaos import run_cli as run_chaos_cli

            return run_chaos_cli(args, settings)
        if args.command == "scenario":
            from dashboard.lab.scenarios import run_scenario_cli

            return run_scenario_cli(args, settings)
        from dashboard.ui.app import run_dashboard

        return run_dashboard(settings)
    except UsageError as exc:
        print(f"natslab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from dashboard.lab.lab import LabError
        from dashboard.lab.natsserver import ServerError

        if isinstance(exc, (LabError, ServerError, DatabaseUnavailable, OSError)):
            print(f"natslab: {exc}", file=sys.stderr)
            return 1
        raise
