"""The live checker: `natslab check` for the dashboard, a pass every half second, reading only what is
new since the pass before (docs/design.md, "Checker invariants", "The live checker").

A pass reads in `run_check`'s order, so it is one snapshot too: the groups' ack floors (the
partitioned group's per partition); each account
database in one read transaction (the account rows whole, which are few; processed events, poison and
conflict rows by rowid past what the last pass read; the parked rows not yet resolved); then
`transactions.db` in one read transaction (new rows by rowid, and the rows still in the outbox or
acknowledged past the last snapshot); then the stream's last seq S and the stream from the last seq
read up to S. It folds all of it into `LiveState` and judges it there: the report is the one
`run_check` gives on the same data, and the account rows it hands back come from the same read as the
verdicts, so a row is never newer than what it is compared with.

When what was read no longer holds, it starts over with a full read: the stream was purged or
recreated (its first seq moved past what was read, its last seq went back, or its creation time
changed), a database was replaced or shrank, the naive or the partitioned database appeared or went,
or a settled number was published again with another id.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from dashboard.lab.checker import CheckReport, ParkedRow
from dashboard.lab.history import HistoryError, StoredEvent, fetch_stored, parse_stored, stream_reader
from dashboard.lab.live_state import (
    GUARDED,
    JUDGED,
    NAIVE,
    PARTITIONED,
    AccountsSnapshot,
    Key,
    LiveState,
    Outbox,
    Restart,
    build_report,
)
from dashboard.lab.snapshot import account_rows, ack_floors, checked_tables, require_present
from listeners.accounts import ACCOUNTS_DB, NAIVE_ACCOUNTS_DB, PARTITIONED_ACCOUNTS_DB, AccountRow
from listeners.accounts import SCHEMA as ACCOUNTS_SCHEMA
from publisher.events import STREAM_NAME, AccountEvent, apply_business_rule
from publisher.sqlite import DatabaseUnavailable, fetch_all, read_only, select_in
from publisher.transactions import SCHEMA as TRANSACTIONS_SCHEMA

log = logging.getLogger(__name__)

# Rows folded at a time, and stream messages fetched and folded at a time: a full read never holds
# them all, and the dashboard's event loop (keys, redraws) is never held up for long by one fold.
CHUNK = 1_000
FETCH = 500
NO_ANSWER_S = 2.0
LOG_EVERY = 120  # passes: about once a minute
TX_COLUMNS = "rowid, id, type, user_id, amount_cents, number, created_at, published_at, stream_seq"


@dataclass(slots=True)
class LivePass:
    """One pass: the report, and the account rows read in the same transaction as its verdicts."""

    report: CheckReport
    guarded: list[AccountRow]
    naive: list[AccountRow]
    full: bool  # the pass read everything (the first, or after a start-over)
    partitioned: list[AccountRow] = field(default_factory=list)


@dataclass(slots=True)
class _Marks:
    """How far one database has been read, and which file it was."""

    identity: tuple[int, int] | None = None
    applied: int = 0
    poison: int = 0
    conflicts: int = 0


@dataclass(slots=True)
class _Position:
    """Everything read so far, besides the state."""

    dbs: tuple[_Marks, ...] = field(default_factory=lambda: (_Marks(), _Marks(), _Marks()))  # in MODES order
    present: tuple[bool, bool] | None = None  # whether the naive and the partitioned database are there
    tx_identity: tuple[int, int] | None = None
    tx_mark: int = 0
    read_to: int = 0  # every stored message up to this stream seq has been folded
    first_read: int = 0  # the first stream seq folded (0: none yet)
    created: object = None
    late: list[tuple[int, str, int, str]] = field(default_factory=list)  # rows at settled numbers, to look up
    passes: int = 0  # passes that ended with a report


class LiveChecker:
    """Keeps the state between passes; one pass at a time (the dashboard's checker worker)."""

    def __init__(self, nc: NATS, data_dir: Path) -> None:
        self.nc = nc
        self.data_dir = data_dir
        self.full_reads = 0
        self._start_over()

    def _start_over(self) -> None:
        self.state = LiveState()
        self.outbox = Outbox()
        self.position = _Position()
        self.full_reads += 1

    @property
    def reads_all(self) -> bool:
        """The next pass reads the whole history: the first one, or one after a start-over."""
        return self.position.passes == 0

    async def check(self) -> LivePass:
        """One pass. An error (NATS gone, a database that cannot be read, a history cut short) leaves
        the state as folded so far: every source is folded in order up to its mark, so the next pass
        goes on from there."""
        full = self.reads_all
        try:
            return await self._pass(full)
        except Restart as exc:
            log.info("live checker starts over with a full read: %s", exc)
            self._start_over()
        try:
            return await self._pass(True)
        except Restart as exc:  # not from a fresh start; never a verdict on what cannot be folded
            self._start_over()
            raise HistoryError(f"the live checker could not fold the history: {exc}") from exc

    async def _pass(self, full: bool) -> LivePass:
        floors = await ack_floors(self.nc)
        guarded, guarded_rows = await self._read_accounts(GUARDED, self.data_dir / ACCOUNTS_DB)
        require_present(guarded.present, self.data_dir / ACCOUNTS_DB, "guarded", floors)
        naive, naive_rows = await self._read_accounts(NAIVE, self.data_dir / NAIVE_ACCOUNTS_DB)
        partitioned, partitioned_rows = await self._read_accounts(PARTITIONED, self.data_dir / PARTITIONED_ACCOUNTS_DB)
        require_present(partitioned.present, self.data_dir / PARTITIONED_ACCOUNTS_DB, "partitioned", floors)
        position = self.position
        present = (naive.present, partitioned.present)
        if position.present is not None and position.present != present:
            raise Restart("the naive or the partitioned account database appeared or went")
        position.present = present
        dbs = (guarded, naive, partitioned)
        snapshot = await self._read_transactions_and_stream(dbs)
        report = build_report(self.state, floors, dbs, self.outbox.unpublished, snapshot)
        position.passes += 1
        if full or position.passes % LOG_EVERY == 0:  # what it keeps, for whoever wonders about its memory
            log.info(
                "live checker: pass %d up to stream seq %d; %d users, %d numbers settled, %d in windows,"
                " %d rows watched in transactions.db",
                position.passes, snapshot, len(self.state.users), self.state.settled(), self.state.window(),
                len(self.outbox.watch),
            )  # fmt: skip
        return LivePass(report, guarded_rows, naive_rows if naive.present else [], full, partitioned_rows)

    # -- the account databases ---------------------------------------------------------------------

    async def _read_accounts(self, mode: int, path: Path) -> tuple[AccountsSnapshot, list[AccountRow]]:
        marks = self.position.dbs[mode]
        absent = AccountsSnapshot(False, {}, [])
        if not path.exists():
            if marks.applied:
                raise Restart(f"{path.name} went away")
            return absent, []
        self._same_file(path, marks.identity, marks.applied > 0)
        marks.identity = _identity(path)
        try:
            async with read_only(path, snapshot=True) as db:
                tables = await checked_tables(db, path, ACCOUNTS_SCHEMA)
                if "accounts" not in tables:
                    return absent, []
                rows = await account_rows(db, tables)
                await self._fold_applied(db, mode, marks)
                parked: list[ParkedRow] = []
                if "parked_events" in tables:
                    found = await fetch_all(
                        db,
                        "SELECT user_id, number, stream_seq, parked_at FROM parked_events"
                        " WHERE resolved_at IS NULL ORDER BY rowid",
                    )
                    parked = [ParkedRow(*row) for row in found]
                if mode in JUDGED:  # the checker looks at the poison of the groups it holds to every invariant
                    seqs = await _new_rows(db, "poison_events", "stream_seq", marks, "poison")
                    self.state.add_poison_recorded(seqs, mode)
                if mode == GUARDED:  # and at the guarded group's conflicts, to say what became of them
                    if "conflict_events" in tables:
                        self.state.conflict_seqs.update(
                            await _new_rows(db, "conflict_events", "stream_seq", marks, "conflicts")
                        )
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(path, exc) from exc
        accounts = {row.user_id: (row.last_number, row.balance_cents) for row in rows}
        return AccountsSnapshot(True, accounts, parked), rows

    async def _fold_applied(self, db, mode: int, marks: _Marks) -> None:
        top = (await fetch_all(db, "SELECT COALESCE(MAX(rowid), 0) FROM applied_events"))[0][0]
        if top < marks.applied:
            raise Restart("a database's processed events shrank")
        while marks.applied < top:
            found = await fetch_all(
                db,
                "SELECT rowid, user_id, number, event_id FROM applied_events"
                " WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
                (marks.applied, top, CHUNK),
            )
            if not found:
                break
            self.position.late += self.state.add_applied(mode, [row[1:] for row in found])
            marks.applied = found[-1][0]

    @staticmethod
    def _same_file(path: Path, identity: tuple[int, int] | None, read_some: bool) -> None:
        if read_some and identity is not None and _identity(path) != identity:
            raise Restart(f"{path.name} was replaced")

    # -- transactions.db and the stream -------------------------------------------------------------

    async def _read_transactions_and_stream(self, dbs: tuple[AccountsSnapshot, ...]) -> int:
        """Read transactions.db, then the stream up to its last seq S, fold both; returns S."""
        path = self.data_dir / "transactions.db"
        position = self.position
        self.outbox.unpublished.clear()
        if not path.exists():
            if position.tx_mark:
                raise Restart("transactions.db went away")
            return await self._read_stream(None)
        self._same_file(path, position.tx_identity, position.tx_mark > 0)
        position.tx_identity = _identity(path)
        try:
            async with read_only(path, snapshot=True) as db:
                if "transactions" not in await checked_tables(db, path, TRANSACTIONS_SCHEMA):
                    return await self._read_stream(None)
                top = (await fetch_all(db, "SELECT COALESCE(MAX(rowid), 0) FROM transactions"))[0][0]
                if top < position.tx_mark:
                    raise Restart("transactions.db shrank")
                known = await fetch_all(
                    db,
                    f"SELECT {TX_COLUMNS} FROM transactions WHERE published_at IS NULL AND rowid <= ?",
                    (position.tx_mark,),
                )
                again = sorted(self.outbox.watch - {row[0] for row in known})
                known += await select_in(db, f"SELECT {TX_COLUMNS} FROM transactions WHERE rowid IN ({{}})", again)  # type: ignore[arg-type]
                snapshot = await self._read_stream(db)
                self.state.add_transactions(known, snapshot, self.outbox)
                while position.tx_mark < top:
                    found = await fetch_all(
                        db,
                        f"SELECT {TX_COLUMNS} FROM transactions WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
                        (position.tx_mark, top, CHUNK),
                    )
                    if not found:
                        break
                    self.state.add_transactions(found, snapshot, self.outbox)
                    position.tx_mark = found[-1][0]
                self.state.settle(*(position.present or (False, False)))
                await self._look_up_balances(db, dbs)
                return snapshot
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(path, exc) from exc

    async def _read_stream(self, db) -> int:
        """Fold the stream from the last seq read up to its last seq now, S; returns S."""
        position = self.position
        if position.late:
            self.state.add_late_rows(position.late, await _settled_ids(db, [(r[1], r[2]) for r in position.late]))
            position.late = []
        js = self.nc.jetstream()
        try:
            info = await js.stream_info(STREAM_NAME)
        except NotFoundError:
            raise HistoryError(
                f"the stream {STREAM_NAME} does not exist on this server: nothing was published to it, or this"
                " is not the lab's server (check --nats-url / --data-dir)"
            ) from None
        state = info.state
        if position.first_read and (
            info.created != position.created
            or state.first_seq > position.first_read
            or state.last_seq < position.read_to
        ):
            raise Restart(f"the stream changed (first seq {state.first_seq}, last seq {state.last_seq})")
        position.created = info.created
        last = state.last_seq
        start = max(position.read_to + 1, state.first_seq)
        if last < start or state.messages == 0:
            position.read_to = max(position.read_to, last)
            return last
        await _consume(js, start, last, lambda chunk: self._fold_stored(chunk, db))
        position.read_to = last
        return last

    async def _fold_stored(self, chunk: list, db) -> None:
        if not chunk:
            return
        keys = [(item.event.user_id, item.event.number) for item in chunk if item.event is not None]
        settled = await _settled_ids(db, self.state.settled_keys(keys))
        self.state.add_stored(chunk, settled)
        position = self.position
        position.first_read = position.first_read or chunk[0].stream_seq
        position.read_to = chunk[-1].stream_seq

    async def _look_up_balances(self, db, dbs: tuple[AccountsSnapshot, ...]) -> None:
        """The balance after a settled k, for a database whose account stands there (the naive group
        after a late redelivery): the publisher's events 1..k, which are the ones that count."""
        for name, number in self.state.needed_balances(list(dbs)):
            rows = await fetch_all(
                db,
                "SELECT id, type, user_id, amount_cents, number, created_at FROM transactions"
                " WHERE user_id = ? AND number <= ? ORDER BY number",
                (name, number),
            )
            balance = 0
            for row in rows:
                balance, _ = apply_business_rule(balance, AccountEvent(*row))
            self.state.set_balance(name, number, balance)


async def _consume(js, start: int, last: int, fold: Callable[[list[StoredEvent]], Awaitable[None]]) -> None:
    """Every stored message from `start` up to `last`, folded a fetched batch at a time, complete or
    HistoryError (the batches folded so far stay folded)."""
    read_to = start - 1
    async with stream_reader(js, start, "live") as sub:
        done = False
        while not done:
            msgs = await fetch_stored(sub, FETCH, NO_ANSWER_S)
            if not msgs:
                raise HistoryError(
                    f"history incomplete: read up to stream seq {read_to} of {last}"
                    f" (no answer from the server for {NO_ANSWER_S:g} s)"
                )
            chunk = []
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq <= last:
                    chunk.append(parse_stored(seq, msg.subject, msg.data, ""))
            done = msgs[-1].metadata.sequence.stream >= last or msgs[-1].metadata.num_pending == 0
            if chunk:
                await fold(chunk)
                read_to = chunk[-1].stream_seq


async def _new_rows(db, table: str, column: str, marks: _Marks, mark: str) -> list:
    """`column` of the rows of `table` past the mark; the mark moves to the last one."""
    since = getattr(marks, mark)
    top = (await fetch_all(db, f"SELECT COALESCE(MAX(rowid), 0) FROM {table}"))[0][0]
    if top < since:
        raise Restart(f"{table} shrank")
    rows = await fetch_all(db, f"SELECT rowid, {column} FROM {table} WHERE rowid > ? ORDER BY rowid", (since,))
    if rows:
        setattr(marks, mark, rows[-1][0])
    return [row[1] for row in rows]


async def _settled_ids(db, keys: list[Key]) -> dict[Key, str]:
    """The publisher's id at each settled (user, number): its row in transactions.db."""
    found: dict[Key, str] = {}
    for name, number in keys:
        rows = (
            []
            if db is None
            else await fetch_all(db, "SELECT id FROM transactions WHERE user_id = ? AND number = ?", (name, number))
        )
        if not rows:  # settled numbers are the publisher's; a row gone means another transactions.db
            raise Restart(f"transactions.db has no row for the settled {name} #{number}")
        found[(name, number)] = rows[0][0]
    return found


def _identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino
