"""The transactions database: one numbered list of transactions per user, and the outbox.

The publisher (the seed's Transactions service) owns this database. A new transaction gets the
user's next number inside one `BEGIN IMMEDIATE` transaction, so several publishing processes never
hand out the same number. A row stays "unpublished" until JetStream acknowledged it; the outbox relay
publishes those rows, so a crash between the write and the publish loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from publisher.events import AccountEvent, EventType, kind_to_type, new_event_id, utc_now_iso, validate_user_id
from publisher.sqlite import Checkpointer, Schema, open_busy_writer, select_in, write_transaction

SCHEMA = Schema(
    """
CREATE TABLE IF NOT EXISTS transactions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    number       INTEGER NOT NULL,
    type         TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    published_at TEXT,
    stream_seq   INTEGER,
    UNIQUE (user_id, number)
);
CREATE INDEX IF NOT EXISTS transactions_unpublished ON transactions (published_at) WHERE published_at IS NULL;
""",
    version=1,
)


def _row_to_event(row: tuple) -> AccountEvent:
    event_id, user_id, number, event_type, amount, created_at = row
    return AccountEvent(event_id, event_type, user_id, amount, number, created_at)


class TransactionsDB:
    """Async access to `transactions.db`."""

    def __init__(self, db: aiosqlite.Connection, checkpointer: Checkpointer | None, path: Path) -> None:
        self._db = db
        self._checkpointer = checkpointer
        self.path = path
        # One connection, shared by the caller and the outbox relay: write transactions take turns.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> TransactionsDB:
        """The database, its WAL copied into the file by a `Checkpointer` rather than by a commit."""
        return cls(*await open_busy_writer(path, SCHEMA), path=path)

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.close()
        await self._db.close()

    async def record(self, kind: str, user_id: str, amount_cents: int) -> AccountEvent:
        """Write a new transaction with the user's next number; returns its event."""
        (event,) = await self.record_many([(kind, user_id, amount_cents)])
        return event

    async def record_many(
        self, requests: Sequence[tuple[str, str, int]], published: Sequence[tuple[str, int]] = ()
    ) -> list[AccountEvent]:
        """Write (kind, user, cents) requests in one SQLite transaction, numbered in order; their events.

        One commit for the lot (group commit): a durable commit per event caps the outbox at a few
        thousand events a second, far below what JetStream takes. `published` (event id, stream
        sequence) marks earlier events as sent in the same transaction, as `mark_published` would.
        """
        checked: list[tuple[EventType, str, int]] = []
        for kind, user_id, amount_cents in requests:
            event_type = kind_to_type(kind)
            validate_user_id(user_id, "user")
            # Validate the whole event before anything is written.
            AccountEvent.new(kind, user_id, amount_cents, 1)
            checked.append((event_type, user_id, amount_cents))
        if not checked and not published:
            return []
        async with self._write_lock:
            return await write_transaction(self._db, lambda: self._insert(checked, published))

    async def _insert(
        self, requests: list[tuple[EventType, str, int]], published: Sequence[tuple[str, int]] = ()
    ) -> list[AccountEvent]:
        if published:
            await self._mark(published)
        if not requests:
            return []
        users = sorted({user_id for _, user_id, _ in requests})
        rows = await select_in(
            self._db, "SELECT user_id, MAX(number) FROM transactions WHERE user_id IN ({}) GROUP BY user_id", users
        )
        last: dict[str, int] = dict(rows)
        events = []
        for event_type, user_id, amount_cents in requests:
            last[user_id] = last.get(user_id, 0) + 1
            events.append(AccountEvent(new_event_id(), event_type, user_id, amount_cents, last[user_id], utc_now_iso()))
        await self._db.executemany(
            "INSERT INTO transactions (id, user_id, number, type, amount_cents, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(e.id, e.user_id, e.number, e.type, e.amount_cents, e.created_at) for e in events],
        )
        return events

    async def unpublished(self, limit: int = 500) -> list[AccountEvent]:
        """Unpublished transactions, oldest first (so each user's numbers go out in order)."""
        # Under the lock, so a read never sees another task's uncommitted row.
        async with self._write_lock, self._db.execute(
            "SELECT id, user_id, number, type, amount_cents, created_at"
            " FROM transactions WHERE published_at IS NULL ORDER BY rowid LIMIT ?",
            (limit,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_row_to_event(row) for row in rows]

    async def mark_published(self, acks: list[tuple[str, int]]) -> None:
        """Record the stream sequence JetStream gave each event id."""
        if not acks:
            return
        async with self._write_lock:
            await write_transaction(self._db, lambda: self._mark(acks))

    async def _mark(self, acks: Sequence[tuple[str, int]]) -> None:
        now = utc_now_iso()
        await self._db.executemany(
            "UPDATE transactions SET published_at = ?, stream_seq = ? WHERE id = ? AND published_at IS NULL",
            [(now, seq, event_id) for event_id, seq in acks],
        )

    async def stream_seq(self, event_id: str) -> int | None:
        """The stream sequence of a published event, None while it waits in the outbox.

        Read from the row, so it also knows of a relay in another process (or another task) that sent
        the event: only such a row tells whether the event went out, not what one relay pass saw.
        """
        async with self._write_lock, self._db.execute(
            "SELECT published_at, stream_seq FROM transactions WHERE id = ?", (event_id,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise LookupError(f"no transaction {event_id} in {self.path.name}")
        published_at, stream_seq = row
        return None if published_at is None else int(stream_seq)

    async def count_unpublished(self) -> int:
        async with self._write_lock, self._db.execute(
            "SELECT COUNT(*) FROM transactions WHERE published_at IS NULL"
        ) as cursor:
            (count,) = await cursor.fetchone()  # type: ignore[misc]
        return int(count)
