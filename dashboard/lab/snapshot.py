"""What the checker reads, in the order that makes it one consistent snapshot (docs/design.md,
"Checker invariants").

1. Each group consumer's ack floor: every event at or below it was acknowledged, so committed, before
   this moment; a missing one above it may still be on its way (pending), one below it is lost. The
   partitioned group has one per partition (`partition_floors`).
2. The account databases, each in one read transaction.
3. `transactions.db`.
4. The stream's last sequence S, then the history up to S, complete or not at all.

Everything the databases hold was stored in the stream before S, so nothing applied is missing from
the history; events stored after S are not read and not reported. A database that cannot be read is an
error (`DatabaseUnavailable`), never "empty": only a missing file or table means "nothing yet".
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from dashboard.lab.checker import AppliedRow, CheckReport, DatabaseState, Floor, ParkedRow, check_data
from dashboard.lab.history import HistoryError, StoredEvent, last_seq, read_history
from listeners.accounts import ACCOUNTS_DB, NAIVE_ACCOUNTS_DB, PARTITIONED_ACCOUNTS_DB, AccountRow
from listeners.accounts import SCHEMA as ACCOUNTS_SCHEMA
from listeners.groups import GROUPS, GUARDED_GROUP
from listeners.partitions import (
    PARTITIONED_STREAM,
    PartitionsError,
    partition_state,
    partitions_of_stream,
    source_sequence,
)
from publisher.events import STREAM_NAME, AccountEvent
from publisher.sqlite import DatabaseUnavailable, Schema, fetch_all, read_only, schema_problem
from publisher.transactions import SCHEMA as TRANSACTIONS_SCHEMA


@dataclass(slots=True)
class Transactions:
    published: list[AccountEvent] = field(default_factory=list)
    unpublished: list[AccountEvent] = field(default_factory=list)
    stream_seqs: dict[str, int] = field(default_factory=dict)  # event id -> stream seq of its PubAck


async def checked_tables(db, path: Path, schema: Schema) -> set[str]:
    """The tables of a database that is `schema`'s (or empty); DatabaseUnavailable for anything else."""
    problem = await schema_problem(db, schema)
    if problem:
        raise DatabaseUnavailable(path, problem)
    return {row[0] for row in await fetch_all(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}


async def read_database(path: Path) -> DatabaseState:
    """Read an account database without changing it; a missing file or one without tables is absent."""
    if not path.exists():
        return DatabaseState(present=False)
    try:
        # One read transaction, so the tables agree: listeners commit batches while this reads, and
        # accounts read before a batch beside its applied_events read after it look like a broken guard.
        async with read_only(path, snapshot=True) as db:
            tables = await checked_tables(db, path, ACCOUNTS_SCHEMA)
            if "accounts" not in tables:
                return DatabaseState(present=False)
            state = DatabaseState()
            rows = await fetch_all(db, "SELECT user_id, last_number, balance_cents FROM accounts")
            state.accounts = {user: (last, balance) for user, last, balance in rows}
            rows = await fetch_all(
                db, "SELECT user_id, number, outcome, event_id, stream_seq FROM applied_events ORDER BY rowid"
            )
            state.applied = [AppliedRow(*row) for row in rows]
            state.poison_seqs = {row[0] for row in await fetch_all(db, "SELECT stream_seq FROM poison_events")}
            if "conflict_events" in tables:  # a database of the earlier natslab has none of these yet
                state.conflict_seqs = {row[0] for row in await fetch_all(db, "SELECT stream_seq FROM conflict_events")}
            if "parked_events" in tables:
                rows = await fetch_all(
                    db,
                    "SELECT user_id, number, stream_seq, parked_at FROM parked_events"
                    " WHERE resolved_at IS NULL ORDER BY rowid",
                )
                state.parked = [ParkedRow(*row) for row in rows]
            return state
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(path, exc) from exc


async def read_transactions(path: Path) -> Transactions:
    """Published and unpublished transactions; a missing database, or one without tables, has none."""
    if not path.exists():
        return Transactions()
    try:
        async with read_only(path) as db:
            if "transactions" not in await checked_tables(db, path, TRANSACTIONS_SCHEMA):
                return Transactions()
            rows = await fetch_all(
                db,
                "SELECT id, type, user_id, amount_cents, number, created_at, published_at, stream_seq"
                " FROM transactions ORDER BY user_id, number",
            )
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(path, exc) from exc
    result = Transactions()
    for row in rows:
        event = AccountEvent(*row[:6])
        if row[6] is None:
            result.unpublished.append(event)
        else:
            result.published.append(event)
            result.stream_seqs[event.id] = row[7] or 0
    return result


async def read_accounts(path: Path) -> list[AccountRow]:
    """The account table, with who waits for a missing number; read without writing. A missing file or
    table has no accounts; a file that cannot be read is an error, not "no accounts yet"."""
    if not path.exists():
        return []
    try:
        async with read_only(path) as db:
            tables = await checked_tables(db, path, ACCOUNTS_SCHEMA)
            if "accounts" not in tables:
                return []
            return await account_rows(db, tables)
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(path, exc) from exc


async def account_rows(db, tables: set[str]) -> list[AccountRow]:
    """The account table of an open account database with `tables`, by user, with who waits for a
    missing number and how many events are parked behind it."""
    if "gaps" not in tables:  # a database of the earlier natslab, not yet opened by a listener
        rows = await fetch_all(db, "SELECT user_id, last_number, balance_cents FROM accounts ORDER BY user_id")
        return [AccountRow(*row) for row in rows]
    rows = await fetch_all(
        db,
        "SELECT a.user_id, a.last_number, a.balance_cents,"
        " CASE WHEN g.last_number = a.last_number THEN g.since END,"
        " (SELECT COUNT(*) FROM parked_events p WHERE p.user_id = a.user_id AND p.resolved_at IS NULL)"
        " FROM accounts a LEFT JOIN gaps g ON g.user_id = a.user_id ORDER BY a.user_id",
    )
    return [AccountRow(*row) for row in rows]


async def ack_floors(nc: NATS) -> dict[str, Floor]:
    """mode -> the stream sequence up to which the group's consumer has every event acknowledged; for
    the partitioned group, one per partition (`partition_floors`), when its stream exists."""
    js = nc.jetstream()
    floors: dict[str, Floor] = {}
    for group in GROUPS:
        try:
            info = await js.consumer_info(STREAM_NAME, group.name)
        except NotFoundError:  # no consumer: nothing is on its way to that group
            continue
        floors[group.mode] = info.ack_floor.stream_seq if info.ack_floor is not None else 0
    partitions = await partition_floors(nc)
    if partitions is not None:
        floors["partitioned"] = partitions
    return floors


async def partition_floors(nc: NATS) -> tuple[int | None, ...] | None:
    """Per partition of the partitioned group, the ACCOUNT_EVENTS seq up to which every event of the
    partition was acknowledged; None without a partitioned stream.

    A partition consumer's ack floor is a seq of ACCOUNT_EVENTS_P. The server sources ACCOUNT_EVENTS
    into it in order, so the events of the partition up to the one stored at the floor are the ones
    acknowledged: the floor maps to that event's seq in ACCOUNT_EVENTS (its `Nats-Stream-Source`
    header). A partition without a consumer has None (nothing is on its way: a missing event is lost);
    a floor whose message cannot be read maps to 0 (every missing event pending, never verified).
    """
    js = nc.jetstream()
    try:
        count = partitions_of_stream(await js.stream_info(PARTITIONED_STREAM))
    except NotFoundError:
        return None
    if count is None:
        return None
    floors: list[int | None] = []
    for partition in range(count):
        try:
            floor = (await partition_state(nc, partition)).ack_floor
        except NotFoundError:
            floors.append(None)
            continue
        except PartitionsError as exc:  # a JetStream error: no judgement on what cannot be read
            raise HistoryError(f"the partitioned group's consumers cannot be read: {exc}") from None
        floors.append(await _source_seq(js, floor))
    return tuple(floors)


async def _source_seq(js, seq: int) -> int:
    """The ACCOUNT_EVENTS seq of the event stored at `seq` of the partitioned stream (0: none)."""
    if seq <= 0:
        return 0
    try:
        msg = await js.get_msg(PARTITIONED_STREAM, seq)
    except NotFoundError:
        return 0
    return source_sequence(msg.headers) or 0


async def run_check(nc: NATS, data_dir: Path) -> CheckReport:
    """The check of a lab's data dir against its server, as one snapshot (see the module's docstring)."""
    floors = await ack_floors(nc)
    guarded = await read_database(data_dir / ACCOUNTS_DB)
    require_present(guarded.present, data_dir / ACCOUNTS_DB, "guarded", floors)
    naive = await read_database(data_dir / NAIVE_ACCOUNTS_DB)
    partitioned = await read_database(data_dir / PARTITIONED_ACCOUNTS_DB)
    require_present(partitioned.present, data_dir / PARTITIONED_ACCOUNTS_DB, "partitioned", floors)
    transactions = await read_transactions(data_dir / "transactions.db")
    snapshot = await last_seq(nc)
    stream = await read_history(nc, upto=snapshot)
    return check_snapshot(floors, guarded, naive, transactions, stream, snapshot, partitioned)


def require_present(present: bool, path: Path, mode: str, floors: dict[str, Floor]) -> None:
    """A missing account database is an error when its group has acknowledged events: they were
    processed into an account database somewhere, not in this data dir."""
    floor = floors.get(mode, 0)
    acknowledged = max((f or 0 for f in floor), default=0) if isinstance(floor, tuple) else floor
    if not present and acknowledged > 0:
        raise DatabaseUnavailable(
            path,
            f"missing, yet the {mode} group has acknowledged events up to stream seq {acknowledged};"
            " is this the data dir of the lab on that server?",
        )


def check_snapshot(
    floors: dict[str, Floor],
    guarded: DatabaseState,
    naive: DatabaseState,
    transactions: Transactions,
    stream: list[StoredEvent],
    snapshot: int,
    partitioned: DatabaseState | None = None,
) -> CheckReport:
    """`check_data` on what `run_check` read: transactions acknowledged past the snapshot are left out,
    and those still in the outbox but already in the stream count as published."""
    in_stream = {stored.event.id: stored.stream_seq for stored in stream if stored.event is not None}
    seqs = transactions.stream_seqs
    published = [event for event in transactions.published if seqs[event.id] <= snapshot]
    unpublished = []
    for event in transactions.unpublished:
        if event.id in in_stream:  # sent, but the relay has not marked it yet (or crashed before it could)
            published.append(event)
            seqs[event.id] = in_stream[event.id]
        else:
            unpublished.append(event)
    return check_data(
        stream,
        published,
        unpublished,
        guarded,
        naive if naive.present else None,
        ack_floors=floors,
        published_seqs=seqs,
        snapshot_seq=snapshot,
        partitioned=partitioned if partitioned is not None and partitioned.present else None,
    )


async def backlog(nc: NATS, data_dir: Path) -> int:
    """Events the guarded group, or the partitioned group when its stream exists, has still to
    process: in the outbox, with the group's consumer, or not yet in the partitioned stream."""
    js = nc.jetstream()
    try:
        info = await js.consumer_info(STREAM_NAME, GUARDED_GROUP.name)
        with_group = info.num_pending + info.num_ack_pending
    except NotFoundError:
        with_group = 0
    return with_group + await _partitioned_backlog(nc) + await _outbox_count(data_dir / "transactions.db")


async def _partitioned_backlog(nc: NATS) -> int:
    js = nc.jetstream()
    try:
        copy = await js.stream_info(PARTITIONED_STREAM)
    except NotFoundError:
        return 0
    count = partitions_of_stream(copy) or 0
    lag = max(0, (await js.stream_info(STREAM_NAME)).state.messages - copy.state.messages)
    for partition in range(count):
        try:
            lag += (await partition_state(nc, partition)).lag
        except (NotFoundError, PartitionsError):
            continue
    return lag


async def _outbox_count(path: Path) -> int:
    """Rows in the outbox, counted by the database (it is asked ten times a second while waiting)."""
    if not path.exists():
        return 0
    try:
        async with read_only(path) as db:
            if "transactions" not in await checked_tables(db, path, TRANSACTIONS_SCHEMA):
                return 0
            return (await fetch_all(db, "SELECT COUNT(*) FROM transactions WHERE published_at IS NULL"))[0][0]
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(path, exc) from exc


async def wait_settled(
    nc: NATS, data_dir: Path, timeout: float, progress: Callable[[int, float], None] | None = None
) -> int:
    """Wait up to `timeout` s for the guarded and partitioned groups to process everything; the backlog
    left (0 when done).

    `progress(backlog, elapsed)` is called about once a second while there is a backlog.
    """
    started = time.monotonic()
    reported = 0.0
    while True:
        left = await backlog(nc, data_dir)
        elapsed = time.monotonic() - started
        if left == 0 or elapsed >= timeout:
            return left
        if progress is not None and elapsed - reported >= 1.0:
            progress(left, elapsed)
            reported = elapsed
        await asyncio.sleep(min(0.1, timeout - elapsed))
