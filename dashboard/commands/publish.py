"""`natslab publish`: deposits and withdrawals through the transactions service (write, then publish).

One transaction (`natslab publish deposit jim 70`) prints its user, number, id and where its row says
it is: its stream sequence (also when another relay sent it first), or in the outbox and why;
`--random N` records N random ones with a progress bar and relays them. A single publish gives up
when NATS does not answer within 5 s, before it records anything; `--random` gives up on a server that
stays unreachable for `--nats-timeout`, leaving what it recorded in the outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time

from dashboard.commands import loops
from dashboard.commands.args import UsageError, add_common, positive_int, require_url
from dashboard.lab.settings import Settings
from dashboard.lab.traffic import random_requests, user_names
from dashboard.lab.waits import close_quietly, connect_with_retry
from publisher.credentials import redact_url
from publisher.events import KINDS, EventError, format_cents, parse_amount, validate_user_id
from publisher.jetstream import ensure_stream
from publisher.service import Publisher
from publisher.transactions import TransactionsDB

HELP = "publish deposits and withdrawals through the transactions service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("kind", nargs="?", help="deposit or withdraw")
    parser.add_argument("user", nargs="?", help="user id, [A-Za-z0-9_-]{1,64}")
    parser.add_argument("amount", nargs="?", help="dollars, like 70 or 70.50")
    parser.add_argument("--random", type=positive_int, metavar="N", help="publish N random transactions")
    parser.add_argument("--users", type=positive_int, default=5, help="users for --random (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for --random")
    parser.add_argument(
        "--rate", type=float, default=None, help="events per second for --random (default: as fast as possible)"
    )
    parser.add_argument(
        "--crash",
        choices=("before-publish", "after-publish"),
        default=None,
        help="fault injection: exit right after writing the transaction, or after its PubAck but before the outbox update",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    return loops.run(publish(args, settings), settings.loop)


def _one_request(args: argparse.Namespace) -> tuple[str, str, int] | None:
    """The single transaction asked for, or None for `--random`; UsageError for anything else."""
    if args.random is not None:
        if args.crash:
            raise UsageError("--crash works with a single KIND USER AMOUNT publish")
        if args.kind or args.user or args.amount:
            raise UsageError("give either KIND USER AMOUNT or --random N, not both")
        if args.rate is not None and args.rate <= 0:
            raise UsageError("--rate must be greater than zero")
        return None
    if not (args.kind and args.user and args.amount):
        raise UsageError("usage: natslab publish deposit|withdraw USER AMOUNT, or natslab publish --random N")
    if args.kind not in KINDS:
        raise UsageError(f"kind must be deposit or withdraw, got {args.kind!r}")
    try:
        validate_user_id(args.user, "user")
        return args.kind, args.user, parse_amount(args.amount)
    except EventError as exc:
        raise UsageError(str(exc)) from None


async def publish(args: argparse.Namespace, settings: Settings) -> int:
    request = _one_request(args)
    url = require_url(settings)
    nc = await connect_with_retry(url, "natslab-publish", timeout=5.0)
    try:
        db = await TransactionsDB.open(settings.transactions_db)
    except BaseException:
        await close_quietly(nc)
        raise
    try:
        await ensure_stream(nc)
        publisher = Publisher(db, nc)
        if request is not None:
            return await _publish_one(publisher, request, args.crash)
        return await _publish_random(publisher, db, args, settings, url)
    finally:
        await db.close()
        await close_quietly(nc)


async def _publish_one(publisher: Publisher, request: tuple[str, str, int], crash: str | None) -> int:
    kind, user, cents = request
    if crash == "before-publish":
        event = await publisher.record(kind, user, cents)
        print(f"{event.user_id} #{event.number} written to the outbox; crashing before publishing", flush=True)
        os._exit(os.EX_SOFTWARE)
    publisher.crash_after_send = crash == "after-publish"
    result = await publisher.publish(kind, user, cents)
    event = result.event
    print(f"{event.user_id} #{event.number} {kind} {format_cents(cents)} id={event.id} {result.where()}")
    return 0 if result.stream_seq is not None else 1


async def _publish_random(
    publisher: Publisher, db: TransactionsDB, args: argparse.Namespace, settings: Settings, url: str
) -> int:
    total = args.random
    requests = random_requests(random.Random(args.seed), user_names(args.users), total)
    started = time.monotonic()
    recorded = 0
    for kind, user, cents in requests:
        await publisher.record(kind, user, cents)
        recorded += 1
        if args.rate:
            delay = started + recorded / args.rate - time.monotonic()
            if delay > 0:
                await publisher.relay_once()
                await asyncio.sleep(delay)
        if recorded % 100 == 0 or recorded == total:
            await publisher.relay_once()
            _progress(recorded, total, started)
        if publisher.stalled_for() > settings.nats_timeout_s:
            break
    else:
        await publisher.relay_once()
    sys.stderr.write("\n")
    left = await db.count_unpublished()
    if publisher.stalled_for() > settings.nats_timeout_s:
        print(
            f"natslab publish: NATS at {redact_url(url)} unreachable for {settings.nats_timeout_s:g} s; gave up after"
            f" recording {recorded} of {total} events. {left} wait in the outbox and go out with the next"
            " relay (a running natslab, or the next natslab publish).",
            file=sys.stderr,
        )
        return 1
    print(f"published {publisher.published_count} events for {args.users} users; {left} left in the outbox")
    return 0 if left == 0 else 1


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // total
    rate = done / max(time.monotonic() - started, 1e-6)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:,.0f}/s")
    sys.stderr.flush()
