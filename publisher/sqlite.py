"""Opening the lab's SQLite databases, and reading many keys at once.

Both databases (`transactions.db`, the account databases) are opened by several processes at once: a
lab starts its listeners together, and the checker and the dashboard read while they write. Opening
must therefore be safe when it races with other openers and with readers, and a failed open must
leave nothing running behind it.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

# How long a connection waits for another writer before it fails (SQLite's busy timeout).
BUSY_TIMEOUT_S = 30.0
# Well under SQLite's limit on bound parameters (32,766 since 3.32, 999 before).
_KEYS_PER_QUERY = 500


class DatabaseUnavailable(Exception):
    """A database could not be opened or given its schema; the message names the file and the cause."""

    def __init__(self, path: Path, cause: object) -> None:
        # The cause first: the message is also shown, cut to fit, on a listener's card.
        super().__init__(f"{path.name}: {cause} (in {path.parent})")
        self.path = path


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY in any of its extended forms ("database is locked")."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


async def open_sqlite(path: Path, schema: str, *, timeout: float = BUSY_TIMEOUT_S) -> aiosqlite.Connection:
    """A durable connection to `path` (WAL, fsync on commit) with `schema` in place.

    Two processes switching a fresh database to WAL at the same instant deadlock, and SQLite answers one
    of them with SQLITE_BUSY at once, without waiting in the busy handler; so that step is retried, with
    jitter, until `timeout`. The schema is created in one IMMEDIATE transaction, so a reader sees all of
    it or none of it. A connection that fails to open is closed again: aiosqlite's thread would otherwise
    keep the process alive after the error.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = await aiosqlite.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(path, exc) from exc
    try:
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
        await db.executescript(f"BEGIN IMMEDIATE;\n{schema}\nCOMMIT;")
    except BaseException as exc:
        await db.close()
        if isinstance(exc, sqlite3.Error):
            raise DatabaseUnavailable(path, exc) from exc
        raise
    return db


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
    """
    async with aiosqlite.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None) as db:
        if not snapshot:
            yield db
            return
        await db.execute("BEGIN")
        try:
            yield db
        finally:
            await db.execute("COMMIT")


async def fetch_all(db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    async with db.execute(sql, params) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]

