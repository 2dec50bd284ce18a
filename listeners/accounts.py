"""The account database, and how a batch of deliveries changes it.

`accounts.db` (guarded group) and `accounts-naive.db` (naive group) share one schema (docs/design.md,
"Account database"). A fetched batch is processed in one SQLite transaction (group commit): the guard's decisions
are made per user in number order, every balance update is conditional on the `last_number` that was
read, and the `applied_events` rows are written in the same transaction. Messages are acknowledged by
the caller only after `process_batch` returns, that is after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiosqlite

from listeners.guard import Decision, SequenceGuard
from publisher.events import AccountEvent, apply_business_rule, utc_now_iso
from publisher.sqlite import Schema, open_sqlite, select_in

Mode = Literal["guarded", "naive"]
OutcomeKind = Literal["applied", "rejected", "duplicate", "deferred", "poison"]

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


def accounts_db_name(mode: Mode) -> str:
    return ACCOUNTS_DB if mode == "guarded" else NAIVE_ACCOUNTS_DB


class ConcurrentUpdate(RuntimeError):
    """Another listener changed an account between our read and our write; nothing was committed."""


@dataclass(slots=True)
class Delivery:
    """One delivery of one stream message to this listener, parsed or found to be poison."""

    stream_seq: int
    delivery_count: int
    subject: str
    payload: bytes
    event: AccountEvent | None
    poison_reason: str | None = None


@dataclass(slots=True)
class Outcome:
    delivery: Delivery
    kind: OutcomeKind


@dataclass(frozen=True, slots=True)
class AccountRow:
    user_id: str
    last_number: int
    balance_cents: int


class AccountsDB:
    """Async access to one account database."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> AccountsDB:
        return cls(await open_sqlite(path, SCHEMA), path)

    async def close(self) -> None:
        await self._db.close()

    async def accounts(self) -> list[AccountRow]:
        async with self._db.execute(
            "SELECT user_id, last_number, balance_cents FROM accounts ORDER BY user_id"
        ) as cursor:
            return [AccountRow(*row) async for row in cursor]

    async def process_batch(
        self,
        deliveries: list[Delivery],
        mode: Mode,
        listener: str,
        guard: SequenceGuard,
    ) -> list[Outcome]:
        """Decide and write a batch in one transaction; outcomes come back in delivery order."""
        outcomes: dict[int, OutcomeKind] = {}
        now = utc_now_iso()
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            users = sorted({d.event.user_id for d in deliveries if d.event is not None})
            await self._db.executemany(
                "INSERT OR IGNORE INTO accounts (user_id, last_number, balance_cents) VALUES (?, 0, 0)",
                [(user,) for user in users],
            )
            rows = await select_in(
                self._db, "SELECT user_id, last_number, balance_cents FROM accounts WHERE user_id IN ({})", users
            )
            read: dict[str, tuple[int, int]] = {user: (last, balance) for user, last, balance in rows}
            assert len(read) == len(users)
            state = dict(read)
            applied_rows: list[tuple] = []

            if mode == "guarded":
                # Per user in number order, so an early event followed by its predecessor in the same
                # batch is applied at once instead of waiting for a redelivery.
                order = sorted(
                    (i for i, d in enumerate(deliveries) if d.event is not None),
                    key=lambda i: (deliveries[i].event.user_id, deliveries[i].event.number, i),  # type: ignore[union-attr]
                )
            else:
                order = [i for i, d in enumerate(deliveries) if d.event is not None]

            for i in order:
                delivery = deliveries[i]
                event = delivery.event
                assert event is not None
                last, balance = state[event.user_id]
                if mode == "guarded":
                    decision = guard.decide(event.number, last)
                    if decision is Decision.DUPLICATE:
                        outcomes[i] = "duplicate"
                        continue
                    if decision is Decision.DEFER:
                        outcomes[i] = "deferred"
                        continue
                balance, kind = apply_business_rule(balance, event)
                state[event.user_id] = (event.number, balance)
                outcomes[i] = kind  # type: ignore[assignment]
                applied_rows.append(
                    (
                        event.id,
                        event.user_id,
                        event.number,
                        event.type,
                        event.amount_cents,
                        kind,
                        listener,
                        delivery.stream_seq,
                        delivery.delivery_count,
                        now,
                    )
                )

            updates = [
                (last, balance, user, read[user][0])
                for user, (last, balance) in state.items()
                if (last, balance) != read[user]
            ]
            if updates:
                cursor = await self._db.executemany(
                    "UPDATE accounts SET last_number = ?, balance_cents = ? WHERE user_id = ? AND last_number = ?",
                    updates,
                )
                # The rows changed by all the updates together: one short means an account moved under us.
                if cursor.rowcount != len(updates):
                    raise ConcurrentUpdate(
                        f"{len(updates) - cursor.rowcount} of {len(updates)} accounts changed under listener {listener}"
                    )
            if applied_rows:
                await self._db.executemany(
                    "INSERT INTO applied_events (event_id, user_id, number, type, amount_cents, outcome,"
                    " listener, stream_seq, delivery_count, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    applied_rows,
                )
            poison = [(i, d) for i, d in enumerate(deliveries) if d.event is None]
            if poison:
                # A poison event redelivered after a crash is recorded once.
                await self._db.executemany(
                    "INSERT INTO poison_events (stream_seq, subject, reason, payload, seen_at)"
                    " SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM poison_events WHERE stream_seq = ?)",
                    [
                        (d.stream_seq, d.subject, d.poison_reason or "malformed", d.payload, now, d.stream_seq)
                        for _, d in poison
                    ],
                )
                outcomes.update((i, "poison") for i, _ in poison)
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        return [Outcome(d, outcomes[i]) for i, d in enumerate(deliveries)]
