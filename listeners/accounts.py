"""The account database.

`accounts.db` (guarded group) and `accounts-naive.db` (naive group) share one schema (docs/design.md,
"Account database"). A fetched batch is processed in one SQLite write transaction (group commit,
`listeners/account_batch.py`): every balance update is conditional on the `last_number` that was read,
and the `applied_events`, conflict, parked and poison rows are written in the same transaction.
Messages are acknowledged by the caller only after `process_batch` returns, that is after the commit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from listeners.account_batch import AccountBatch
from listeners.guard import SequenceGuard
from listeners.outcomes import BatchResult, Delivery, Mode
from publisher.sqlite import Checkpointer, Schema, open_busy_writer, write_transaction

SCHEMA = Schema(
    """
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
CREATE TABLE IF NOT EXISTS conflict_events (
    stream_seq INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    number     INTEGER NOT NULL,
    applied_id TEXT,
    subject    TEXT NOT NULL,
    payload    BLOB NOT NULL,
    listener   TEXT NOT NULL,
    seen_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conflict_events_seq ON conflict_events (stream_seq);
CREATE TABLE IF NOT EXISTS gaps (
    user_id     TEXT PRIMARY KEY,
    last_number INTEGER NOT NULL,
    since       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parked_events (
    stream_seq     INTEGER NOT NULL,
    event_id       TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    number         INTEGER NOT NULL,
    subject        TEXT NOT NULL,
    payload        BLOB NOT NULL,
    delivery_count INTEGER NOT NULL,
    listener       TEXT NOT NULL,
    parked_at      TEXT NOT NULL,
    resolved_at    TEXT,
    outcome        TEXT
);
CREATE INDEX IF NOT EXISTS parked_events_user ON parked_events (user_id, number);
""",
    version=1,
)

ACCOUNTS_DB = "accounts.db"
NAIVE_ACCOUNTS_DB = "accounts-naive.db"
PARTITIONED_ACCOUNTS_DB = "accounts-partitioned.db"
DB_OF_MODE: dict[Mode, str] = {"guarded": ACCOUNTS_DB, "naive": NAIVE_ACCOUNTS_DB, "partitioned": PARTITIONED_ACCOUNTS_DB}


def accounts_db_name(mode: Mode) -> str:
    return DB_OF_MODE[mode]


@dataclass(frozen=True, slots=True)
class AccountRow:
    user_id: str
    last_number: int
    balance_cents: int
    # Since when (ISO UTC) an event after `last_number` has waited for its predecessor, if one does now.
    waiting_since: str | None = None
    parked: int = 0  # events parked behind the missing number


class AccountsDB:
    """Async access to one account database."""

    def __init__(self, db: aiosqlite.Connection, checkpointer: Checkpointer | None, path: Path) -> None:
        self._db = db
        self.path = path
        self._checkpointer = checkpointer
        # A partitioned listener's partitions write through this one connection, a batch at a time.
        self._writing = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> AccountsDB:
        """The database, its WAL copied into the file by a `Checkpointer` rather than by a batch's commit."""
        return cls(*await open_busy_writer(path, SCHEMA), path=path)

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.close()
        await self._db.close()

    async def accounts(self) -> list[AccountRow]:
        async with self._db.execute(
            "SELECT user_id, last_number, balance_cents FROM accounts ORDER BY user_id"
        ) as cursor:
            return [AccountRow(*row) async for row in cursor]

    async def last_number(self, user_id: str) -> int:
        """The last number applied for the user (0 for a user not seen yet). Between two batches: a
        read left open on this connection while another task begins a write transaction makes SQLite
        refuse the write at once ("database is locked"), without waiting."""
        async with self._writing:
            async with self._db.execute("SELECT last_number FROM accounts WHERE user_id = ?", (user_id,)) as cursor:
                row = await cursor.fetchone()
        return row[0] if row else 0

    async def process_batch(
        self, deliveries: list[Delivery], mode: Mode, listener: str, guard: SequenceGuard
    ) -> BatchResult:
        """Decide and write a batch in one transaction; it commits or rolls back also when cancelled."""
        batch = AccountBatch(self._db, deliveries, mode, listener, guard)
        async with self._writing:
            return await write_transaction(self._db, batch.run)
