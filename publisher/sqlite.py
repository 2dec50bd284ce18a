"""Opening the lab's SQLite databases, and reading many keys at once.

Both databases (`transactions.db`, the account databases) are opened by several processes at once: a
lab starts its listeners together, and the checker and the dashboard read while they write. Opening
must therefore be safe when it races with other openers and with readers, and a failed open must
leave nothing running behind it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiosqlite

T = TypeVar("T")

log = logging.getLogger(__name__)

# How long a connection waits for another writer before it fails (SQLite's busy timeout).
BUSY_TIMEOUT_S = 30.0
# Well under SQLite's limit on bound parameters (32,766 since 3.32, 999 before).
_KEYS_PER_QUERY = 500
# How often a background checkpoint moves the WAL into the database file (see `Checkpointer`).
CHECKPOINT_INTERVAL_S = 1.0


class DatabaseUnavailable(Exception):
    """A database could not be opened or given its schema; the message names the file and the cause."""

    def __init__(self, path: Path, cause: object) -> None:
        # The cause first: the message is also shown, cut to fit, on a listener's card.
        super().__init__(f"{path.name}: {cause} (in {path.parent})")
        self.path = path


@dataclass(frozen=True, slots=True)
class Schema:
    """A database's tables and indexes (`CREATE ... IF NOT EXISTS` statements) and its version, kept
    in `PRAGMA user_version` so that a file with another schema is refused instead of misread."""

    sql: str
    version: int

    def tables(self) -> dict[str, list[str]]:
        """Table name -> column names, as SQLite itself reads `sql`."""
        with sqlite3.connect(":memory:") as memory:
            memory.executescript(self.sql)
            return _tables_of(memory.execute)


def _tables_of(execute: Callable[..., sqlite3.Cursor]) -> dict[str, list[str]]:
    names = [row[0] for row in execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {name: [column[1] for column in execute(f"PRAGMA table_info('{name}')")] for name in names}


async def _tables(db: aiosqlite.Connection) -> dict[str, list[str]]:
    names = [row[0] for row in await fetch_all(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {name: [row[1] for row in await fetch_all(db, f"PRAGMA table_info('{name}')")] for name in names}


async def schema_problem(db: aiosqlite.Connection, schema: Schema) -> str | None:
    """Why the database behind `db` is not one of `schema`'s, or None when it is (or is still empty).

    A file without a version (`user_version` 0) is accepted when each table it has is one of the
    schema's, with the same columns: an empty file, or one written before versions were kept.
    """
    version = (await fetch_all(db, "PRAGMA user_version"))[0][0]
    if version == schema.version:
        return None
    if version != 0:
        return f"schema version {version}; this natslab reads version {schema.version}"
    expected = schema.tables()
    for table, columns in (await _tables(db)).items():
        if table not in expected:
            return f"has another schema (table {table!r} is not natslab's)"
        if columns != expected[table]:
            return f"has another schema (table {table!r} has columns {', '.join(columns)})"
    return None


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY in any of its extended forms ("database is locked")."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


async def open_sqlite(
    path: Path, schema: Schema, *, timeout: float = BUSY_TIMEOUT_S, background_checkpoints: bool = False
) -> aiosqlite.Connection:
    """A durable connection to `path` (WAL, fsync on commit) with `schema` in place.

    A file with another schema (or another version of ours) is refused before anything is written
    to it. Two processes switching a fresh database to WAL at the same instant deadlock, and SQLite
    answers one of them with SQLITE_BUSY at once, without waiting in the busy handler; so that step is
    retried, with jitter, until `timeout`. The schema and its version are written in one IMMEDIATE
    transaction, so a reader sees all of it or none of it. A connection that fails to open is closed
    again: aiosqlite's thread would otherwise keep the process alive after the error.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = await aiosqlite.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(path, exc) from exc
    try:
        problem = await schema_problem(db, schema)
        if problem:
            raise DatabaseUnavailable(path, problem)
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with db.execute("PRAGMA journal_mode=WAL") as cursor:
                    row = await cursor.fetchone()
                break
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(random.uniform(0.005, 0.03))
        if row is None or str(row[0]).lower() != "wal":
            raise DatabaseUnavailable(path, f"stays in journal mode {row[0] if row else '?'}, cannot switch to WAL")
        await db.execute("PRAGMA synchronous=FULL")
        if background_checkpoints:
            # A `Checkpointer` does it; the commit that crosses SQLite's threshold would otherwise
            # copy the WAL into the database and fsync it before it returns (150 ms here, now and then).
            await db.execute("PRAGMA wal_autocheckpoint=0")
        await write_transaction(db, lambda: _create(db, path, schema))
    except BaseException as exc:
        await db.close()
        if isinstance(exc, sqlite3.Error):
            raise DatabaseUnavailable(path, exc) from exc
        raise
    return db


async def _create(db: aiosqlite.Connection, path: Path, schema: Schema) -> None:
    # Again inside the transaction: another process may have created the file since the first look.
    problem = await schema_problem(db, schema)
    if problem:
        raise DatabaseUnavailable(path, problem)
    for statement in schema.sql.split(";"):
        if statement.strip():
            await db.execute(statement)
    await db.execute(f"PRAGMA user_version = {int(schema.version)}")


async def write_transaction(db: aiosqlite.Connection, body: Callable[[], Awaitable[T]]) -> T:
    """Run `body` between `BEGIN IMMEDIATE` and `COMMIT`, or roll back if it fails.

    The transaction always ends, also when the caller is cancelled: it runs in a task of its own that
    a cancellation does not reach, and the cancellation is passed on once the transaction committed
    or rolled back. A rollback happens only while SQLite still has the transaction open, so "no
    transaction is active" never hides the error that ended it.
    """

    async def run() -> T:
        await db.execute("BEGIN IMMEDIATE")
        try:
            result = await body()
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        return result

    task = asyncio.ensure_future(run())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # Cancelled while the transaction runs: let it end first, however often we are asked again.
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                continue
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller gets
        raise


class Checkpointer:
    """Moves a database's WAL into its file every `interval` seconds, from a connection of its own.

    A writer that commits often (a listener, the outbox) opens its database with
    `background_checkpoints`, so that no commit of its own pays for the copy and its fsync. A PASSIVE
    checkpoint waits for nobody: it copies what no reader still needs, and another process's
    checkpoint running at the same time makes this one skip a turn. With every frame copied, the
    next writer starts the WAL from its beginning, so it stays as small as a second's writes.
    """

    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self.path = path
        self.interval = interval
        self.passes = 0
        # (busy, frames in the WAL, frames copied) of the last pass, as SQLite reports them.
        self.last: tuple[int, int, int] | None = None
        self._db: aiosqlite.Connection | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._db = await aiosqlite.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._task = asyncio.create_task(self._run(), name=f"checkpoint {self.path.name}")

    async def checkpoint(self) -> tuple[int, int, int]:
        assert self._db is not None
        async with self._db.execute("PRAGMA wal_checkpoint(PASSIVE)") as cursor:
            row = await cursor.fetchone()
        self.passes += 1
        self.last = (int(row[0]), int(row[1]), int(row[2])) if row else (1, -1, -1)
        return self.last

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.checkpoint()
            except sqlite3.Error as exc:  # busy or locked: the next turn tries again
                log.debug("checkpoint of %s: %r", self.path.name, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._db is not None:
            await self._db.close()


async def open_busy_writer(path: Path, schema: Schema) -> tuple[aiosqlite.Connection, Checkpointer]:
    """`open_sqlite` for a process that commits often, with the `Checkpointer` that does its
    checkpoints; close the checkpointer first."""
    db = await open_sqlite(path, schema, background_checkpoints=True)
    checkpointer = Checkpointer(path)
    try:
        await checkpointer.start()
    except BaseException:
        await db.close()
        raise
    return db, checkpointer


async def select_in(db: aiosqlite.Connection, sql: str, keys: Sequence[str]) -> list[tuple]:
    """The rows of `sql`, whose `IN ({})` is filled with `keys`: one statement per chunk of keys.

    Every statement is a round trip to aiosqlite's thread, often made while holding the write lock,
    so many keys go in one statement; chunks stay under SQLite's limit on bound parameters.
    """
    rows: list[tuple] = []
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[start : start + _KEYS_PER_QUERY]
        async with db.execute(sql.format(", ".join("?" * len(chunk))), chunk) as cursor:
            rows.extend(await cursor.fetchall())
    return rows


@asynccontextmanager
async def read_only(path: Path, *, snapshot: bool = False) -> AsyncIterator[aiosqlite.Connection]:
    """A connection to `path` that cannot write, for reading while other processes write.

    With `snapshot`, everything read through it comes from one read transaction, so tables that a
    writer changes together are seen together (the accounts beside their `applied_events`).

    A WAL database is read through its `-shm` file, which SQLite creates if it is missing. In a
    directory this process cannot write, it cannot: a database closed cleanly (no `-wal` file) is then
    opened as immutable, which needs neither; nobody can be writing to it there.
    """
    uri = f"file:{path}?mode=ro"
    if not os.access(path.parent, os.W_OK) and not _wal_of(path).exists():
        uri += "&immutable=1"
    async with aiosqlite.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None) as db:
        if not snapshot:
            yield db
            return
        await db.execute("BEGIN")
        try:
            yield db
        finally:
            await db.execute("COMMIT")


def _wal_of(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


async def fetch_all(db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    async with db.execute(sql, params) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]

