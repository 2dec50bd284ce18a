"""`publisher/sqlite.py` on real files: a write transaction ends however its caller ends, and a
database of another schema is refused before anything is written to it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import aiosqlite
import pytest
from cancelling import MAX_STEPS, cancel_after

from dashboard.lab.waits import wait_until
from listeners import accounts
from publisher import transactions
from publisher.sqlite import DatabaseUnavailable, Schema, fetch_all, open_busy_writer, open_sqlite, write_transaction

ROWS = Schema(
    """
CREATE TABLE IF NOT EXISTS rows (n INTEGER PRIMARY KEY, payload BLOB);
CREATE TABLE IF NOT EXISTS parents (id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS children (parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED);
""",
    version=1,
)


@pytest.fixture
async def db(tmp_path: Path):
    connection = await open_sqlite(tmp_path / "rows.db", ROWS)
    yield connection
    await connection.close()


def committed(path: Path) -> list[int]:
    """The rows another connection sees: what was committed."""
    with closing(sqlite3.connect(path)) as other:
        return [row[0] for row in other.execute("SELECT n FROM rows ORDER BY n")]


async def assert_ended(db: aiosqlite.Connection) -> None:
    """No transaction is left open: the next writer can begin one."""
    assert not db.in_transaction
    await db.execute("BEGIN IMMEDIATE")
    await db.execute("ROLLBACK")


async def insert_three(db: aiosqlite.Connection) -> str:
    """Statements with other awaits between them, so a cancellation can land anywhere."""
    for n in (1, 2, 3):
        await asyncio.sleep(0)
        await db.execute("INSERT INTO rows (n) VALUES (?)", (n,))
    return "written"


@pytest.mark.parametrize("repeatedly", [False, True], ids=["cancelled-once", "cancelled-repeatedly"])
async def test_a_cancelled_caller_gets_the_cancellation_and_the_transaction_still_ends(
    db: aiosqlite.Connection, tmp_path: Path, repeatedly: bool
) -> None:
    cancelled = 0
    for steps in range(MAX_STEPS):
        result = await cancel_after(steps, write_transaction(db, lambda: insert_three(db)), repeatedly=repeatedly)
        assert committed(tmp_path / "rows.db") in ([], [1, 2, 3])
        await assert_ended(db)
        await db.execute("DELETE FROM rows")
        if result is not None:
            assert result == "written"
            break
        cancelled += 1
    else:
        pytest.fail(f"the transaction did not finish within {MAX_STEPS} loop steps")
    assert cancelled > 3, "the cancellations should have landed inside the transaction, not only before it"


async def test_a_timeout_around_a_transaction_is_a_timeout_and_ends_it(db: aiosqlite.Connection, tmp_path: Path) -> None:
    async def slow() -> None:
        await db.execute("INSERT INTO rows (n) VALUES (1)")
        await asyncio.sleep(0.2)
        await db.execute("INSERT INTO rows (n) VALUES (2)")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await write_transaction(db, slow)
    # The transaction is not cut short by its caller's deadline: it ends, here with its commit.
    assert committed(tmp_path / "rows.db") == [1, 2]
    await assert_ended(db)


async def test_an_error_in_the_body_reaches_the_caller_unchanged_and_rolls_back(
    db: aiosqlite.Connection, tmp_path: Path
) -> None:
    refused = ValueError("the body refuses")

    async def body() -> None:
        await db.execute("INSERT INTO rows (n) VALUES (1)")
        raise refused

    with pytest.raises(ValueError) as caught:
        await write_transaction(db, body)
    assert caught.value is refused
    assert committed(tmp_path / "rows.db") == []
    await assert_ended(db)


async def fill_the_database(db: aiosqlite.Connection) -> None:
    """SQLITE_FULL: SQLite rolls the whole transaction back by itself."""
    (pages,) = (await fetch_all(db, "PRAGMA page_count"))[0]
    await db.execute(f"PRAGMA max_page_count = {pages}")
    await db.execute("INSERT INTO rows (n, payload) VALUES (2, zeroblob(100000))")


async def conflict_or_rollback(db: aiosqlite.Connection) -> None:
    """A constraint with the ROLLBACK resolution: SQLite rolls the whole transaction back by itself."""
    await db.execute("INSERT OR ROLLBACK INTO rows (n) VALUES (1)")


@pytest.mark.parametrize(
    ("failing", "error"),
    [(fill_the_database, "SQLITE_FULL"), (conflict_or_rollback, "SQLITE_CONSTRAINT_PRIMARYKEY")],
    ids=["full", "or-rollback"],
)
async def test_an_error_after_sqlite_rolled_back_by_itself_is_not_hidden_by_a_rollback(
    db: aiosqlite.Connection, tmp_path: Path, failing: Callable[[aiosqlite.Connection], Awaitable[None]], error: str
) -> None:
    open_after_the_error: list[bool] = []

    async def body() -> None:
        await db.execute("INSERT INTO rows (n) VALUES (1)")
        try:
            await failing(db)
        finally:
            open_after_the_error.append(db.in_transaction)

    with pytest.raises(sqlite3.Error) as caught:
        await write_transaction(db, body)
    assert open_after_the_error == [False], "SQLite should have ended the transaction itself"
    assert caught.value.sqlite_errorname == error  # not "cannot rollback - no transaction is active"
    assert committed(tmp_path / "rows.db") == []
    await assert_ended(db)


async def test_a_failed_commit_is_rolled_back_and_reported(db: aiosqlite.Connection, tmp_path: Path) -> None:
    await db.execute("PRAGMA foreign_keys = ON")

    async def body() -> None:
        await db.execute("INSERT INTO rows (n) VALUES (1)")
        await db.execute("INSERT INTO children (parent) VALUES (7)")  # checked only at COMMIT

    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        await write_transaction(db, body)
    assert committed(tmp_path / "rows.db") == []
    await assert_ended(db)


# The tables as natslab wrote them before databases carried a version (user_version 0).
EARLIER_SQL = {
    "transactions.db": transactions.SCHEMA.sql,
    "accounts.db": """
CREATE TABLE IF NOT EXISTS accounts (
    user_id       TEXT PRIMARY KEY,
    last_number   INTEGER NOT NULL,
    balance_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS applied_events (
    event_id       TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    number         INTEGER NOT NULL,
    type           TEXT NOT NULL,
    amount_cents   INTEGER NOT NULL,
    outcome        TEXT NOT NULL,
    listener       TEXT NOT NULL,
    stream_seq     INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL,
    applied_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applied_events_user ON applied_events (user_id, number);
CREATE TABLE IF NOT EXISTS poison_events (
    stream_seq INTEGER NOT NULL,
    subject    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    payload    BLOB,
    seen_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS poison_events_seq ON poison_events (stream_seq);
""",
}
SCHEMAS = {"transactions.db": transactions.SCHEMA, "accounts.db": accounts.SCHEMA}
A_ROW = {
    "transactions.db": "INSERT INTO transactions (id, user_id, number, type, amount_cents, created_at)"
    " VALUES ('e1', 'jim', 1, 'account:deposit', 7000, '2025-03-01T12:00:00.000Z')",
    "accounts.db": "INSERT INTO accounts (user_id, last_number, balance_cents) VALUES ('jim', 1, 7000)",
}


def build(path: Path, sql: str, *, version: int = 0, wal: bool = False) -> None:
    with closing(sqlite3.connect(path)) as db:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
        db.executescript(sql)
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


@pytest.mark.parametrize("name", SCHEMAS)
async def test_a_fresh_database_gets_the_schemas_version(tmp_path: Path, name: str) -> None:
    db = await open_sqlite(tmp_path / name, SCHEMAS[name])
    await db.close()
    assert user_version(tmp_path / name) == SCHEMAS[name].version == 1


@pytest.mark.parametrize("name", SCHEMAS)
@pytest.mark.parametrize(
    ("sql", "version", "problem"),
    [
        (None, 2, "schema version 2; this natslab reads version 1"),
        ("CREATE TABLE ledger (entry TEXT);", 0, "table 'ledger' is not natslab's"),
        ("CREATE TABLE {table} (id TEXT);", 0, "table '[a-z]+' has columns id"),
    ],
    ids=["another-version", "a-foreign-table", "other-columns"],
)
async def test_a_database_of_another_schema_is_refused_and_left_as_it_was(
    tmp_path: Path, name: str, sql: str | None, version: int, problem: str
) -> None:
    table = next(iter(SCHEMAS[name].tables()))  # one of natslab's tables, with other columns
    build(tmp_path / name, (sql or SCHEMAS[name].sql).format(table=table), version=version)
    before = files(tmp_path)
    with pytest.raises(DatabaseUnavailable, match=problem) as caught:
        await open_sqlite(tmp_path / name, SCHEMAS[name])
    assert str(caught.value).startswith(f"{name}: ")
    assert files(tmp_path) == before  # same bytes, and no -wal or -shm beside it


@pytest.mark.parametrize("name", SCHEMAS)
async def test_a_database_of_the_earlier_natslab_is_upgraded(tmp_path: Path, name: str) -> None:
    build(tmp_path / name, EARLIER_SQL[name] + A_ROW[name] + ";", wal=True)
    db = await open_sqlite(tmp_path / name, SCHEMAS[name])
    try:
        tables = {row[0] for row in await fetch_all(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = {table: (await fetch_all(db, f"SELECT COUNT(*) FROM {table}"))[0][0] for table in tables}
    finally:
        await db.close()
    assert tables == set(SCHEMAS[name].tables())
    assert sum(rows.values()) == 1, "the earlier natslab's row is kept"
    assert user_version(tmp_path / name) == 1


@pytest.mark.parametrize("name", SCHEMAS)
async def test_a_file_that_is_no_database_is_refused_and_left_as_it_was(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(os.urandom(8192))
    before = files(tmp_path)
    with pytest.raises(DatabaseUnavailable, match="not a database"):
        await open_sqlite(tmp_path / name, SCHEMAS[name])
    assert files(tmp_path) == before


async def write_pages(db: aiosqlite.Connection, transactions: int, start: int = 0) -> None:
    """`transactions` commits of 100 rows of 1 KB each: about 25 pages of 4 KB per commit."""
    for index in range(transactions):
        rows = [(start + index * 100 + n, os.urandom(1024)) for n in range(100)]
        await write_transaction(db, lambda rows=rows: db.executemany("INSERT INTO rows VALUES (?, ?)", rows))


def wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


async def test_a_busy_writer_never_checkpoints_in_its_own_commits(tmp_path: Path) -> None:
    path = tmp_path / "rows.db"
    db = await open_sqlite(path, ROWS, background_checkpoints=True)
    try:
        # 2,500 pages: SQLite's own threshold (1,000) would have made a commit copy the WAL back and
        # start it over, so it would never have grown past about 1,000 pages.
        await write_pages(db, 100)
        assert wal_pages(path) > 2_000
    finally:
        await db.close()


async def test_the_checkpointer_copies_the_wal_so_the_writer_starts_it_over(tmp_path: Path) -> None:
    path = tmp_path / "rows.db"
    db, checkpointer = await open_busy_writer(path, ROWS)
    try:
        await write_pages(db, 20)
        await wait_until(lambda: checkpointer.passes > 0, 10, "a checkpoint")
        grown = wal_pages(path)

        async def copied() -> bool:
            busy, frames, copied = await checkpointer.checkpoint()
            return busy == 0 and frames == copied

        await wait_until(copied, 10, "every frame to be copied into the database")
        # Everything copied: the next commit writes the WAL from its beginning, so as many pages again
        # reuse the file rather than double it.
        await write_pages(db, 20, start=10_000)
        assert wal_pages(path) < grown * 1.5
        assert committed(path)[-1] == 10_000 + 19 * 100 + 99
    finally:
        await checkpointer.close()
        await db.close()
