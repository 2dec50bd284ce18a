"""A seeded, hand-driven lab for the live checker's tests: a real stream on a real nats-server, and the
three databases written the way the publisher and the listeners write them, faults included (a
relay that dies before marking its row, foreign events with used or skipped numbers, poison, a
listener that applies twice or out of order, parked events, conflicts, a moving ack floor).

Its name keeps it out of the suite; `test_live_check.py` drives it.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS

from listeners.accounts import ACCOUNTS_DB, NAIVE_ACCOUNTS_DB
from listeners.accounts import SCHEMA as ACCOUNTS_SCHEMA
from listeners.groups import GUARDED_GROUP, ensure_consumer
from publisher.events import AccountEvent, apply_business_rule, new_event_id, utc_now_iso
from publisher.jetstream import ensure_stream
from publisher.transactions import SCHEMA as TRANSACTIONS_SCHEMA

T = "2026-11-26T10:00:00.000Z"


def open_db(path: Path, sql: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(sql)
    db.execute("PRAGMA user_version = 1")
    return db


@dataclass
class Stored:
    seq: int
    event: AccountEvent | None


@dataclass
class Account:
    """One account database as a listener keeps it."""

    db: sqlite3.Connection
    applied: dict[str, set[int]] = field(default_factory=dict)  # user -> numbers processed

    def apply(self, event: AccountEvent, seq: int) -> None:
        found = self.db.execute("SELECT balance_cents FROM accounts WHERE user_id = ?", (event.user_id,)).fetchone()
        balance, outcome = apply_business_rule(found[0] if found else 0, event)
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "INSERT INTO accounts VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET last_number = excluded.last_number,"
            " balance_cents = excluded.balance_cents",
            (event.user_id, event.number, balance),
        )
        self.db.execute(
            "INSERT INTO applied_events VALUES (?, ?, ?, ?, ?, ?, 'A', ?, 1, ?)",
            (event.id, event.user_id, event.number, event.type, event.amount_cents, outcome, seq, T),
        )
        self.db.execute("COMMIT")
        self.applied.setdefault(event.user_id, set()).add(event.number)


class World:
    """Seeded random traffic and faults; every step leaves a consistent, quiet lab behind."""

    def __init__(self, nc: NATS, data_dir: Path, seed: int, naive: bool = True) -> None:
        self.nc = nc
        self.rng = random.Random(seed)
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.tx = open_db(data_dir / "transactions.db", TRANSACTIONS_SCHEMA.sql)
        self.guarded = Account(open_db(data_dir / ACCOUNTS_DB, ACCOUNTS_SCHEMA.sql))
        self.naive = Account(open_db(data_dir / NAIVE_ACCOUNTS_DB, ACCOUNTS_SCHEMA.sql)) if naive else None
        self.users = [f"u{index}" for index in range(6)]
        self.numbers = {user: 0 for user in self.users}
        self.stream: list[Stored] = []
        self.outbox: list[AccountEvent] = []
        self.sub = None
        self.republished = 0  # foreign events with a number already used: each may start the live checker over

    async def start(self) -> None:
        await ensure_stream(self.nc)
        await ensure_consumer(self.nc, GUARDED_GROUP, 30.0)
        self.sub = await self.nc.jetstream().pull_subscribe_bind(GUARDED_GROUP.name, stream="ACCOUNT_EVENTS")

    def close(self) -> None:
        for db in (self.tx, self.guarded.db, self.naive.db if self.naive else None):
            if db is not None:
                db.close()

    # -- what the publisher and the relay do -------------------------------------------------------

    def record(self, user: str) -> AccountEvent:
        self.numbers[user] += 1
        kind = "account:deposit" if self.rng.random() < 0.6 else "account:withdraw"
        event = AccountEvent(
            new_event_id(), kind, user, self.rng.randint(1, 200) * 100, self.numbers[user], utc_now_iso()
        )
        self.tx.execute(
            "INSERT INTO transactions (id, user_id, number, type, amount_cents, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (event.id, user, event.number, event.type, event.amount_cents, event.created_at),
        )
        self.outbox.append(event)
        return event

    async def publish(self, subject: str, payload: bytes, msg_id: str | None = None) -> int:
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        ack = await self.nc.jetstream().publish(subject, payload, headers=headers)
        return ack.seq

    async def relay(self, mark: bool = True) -> None:
        """Send the oldest outbox row; a relay that dies before marking it leaves it in the outbox."""
        if not self.outbox:
            return
        event = self.outbox[0]
        seq = await self.publish(event.subject, event.to_json(), event.id)
        if all(stored.seq != seq for stored in self.stream):  # a resend within the duplicate window is dropped
            self.stream.append(Stored(seq, event))
        if mark:
            self.outbox.pop(0)
            self.tx.execute(
                "UPDATE transactions SET published_at = ?, stream_seq = ? WHERE id = ? AND published_at IS NULL",
                (T, seq, event.id),
            )

    async def foreign(self, user: str, number: int) -> AccountEvent:
        """An event straight to the stream: no transactions.db row (a used number is a conflict)."""
        event = AccountEvent(new_event_id(), "account:deposit", user, 500, number, utc_now_iso())
        self.republished += any(
            s.event is not None and (s.event.user_id, s.event.number) == (user, number) for s in self.stream
        )
        self.stream.append(Stored(await self.publish(event.subject, event.to_json()), event))
        return event

    async def poison(self) -> None:
        self.stream.append(Stored(await self.publish("account.deposit.bad", b"not json"), None))

    # -- what the listeners do ---------------------------------------------------------------------

    def next_for(self, account: Account, user: str) -> Stored | None:
        done = account.applied.get(user, set())
        for stored in self.stream:
            event = stored.event
            if event is not None and event.user_id == user and event.number == max(done, default=0) + 1:
                return stored
        return None

    def process(self, account: Account, faults: bool) -> None:
        """Apply one event: the next in order, or with `faults` sometimes any stored event (a duplicate,
        an early one, another event with a used number)."""
        valid = [stored for stored in self.stream if stored.event is not None]
        if not valid:
            return
        if faults and self.rng.random() < 0.15:
            stored = self.rng.choice(valid)
        else:
            stored = self.next_for(account, self.rng.choice(self.users))
            if stored is None:
                return
        assert stored.event is not None
        event = stored.event
        if faults and self.rng.random() < 0.1:  # an event never published: its id is not the number's
            event = dataclasses.replace(event, id=new_event_id())
        account.apply(event, stored.seq)

    def record_poison(self) -> None:
        recorded = {row[0] for row in self.guarded.db.execute("SELECT stream_seq FROM poison_events")}
        for stored in self.stream:
            if stored.event is None and stored.seq not in recorded:
                self.guarded.db.execute(
                    "INSERT INTO poison_events VALUES (?, 'account.deposit.bad', 'payload: bad', x'00', ?)",
                    (stored.seq, T),
                )
                return

    def record_conflict(self) -> None:
        for stored in self.stream:
            event = stored.event
            if event is not None and event.number in self.guarded.applied.get(event.user_id, set()):
                self.guarded.db.execute(
                    "INSERT INTO conflict_events VALUES (?, ?, ?, ?, NULL, ?, x'00', 'A', ?)",
                    (stored.seq, event.id, event.user_id, event.number, event.subject, T),
                )
                return

    def park(self) -> None:
        """Park a stored event of a user whose predecessor the guarded database lacks; or resolve one."""
        if self.rng.random() < 0.4:
            self.guarded.db.execute(
                "UPDATE parked_events SET resolved_at = ?, outcome = 'applied' WHERE rowid = (SELECT MIN(rowid)"
                " FROM parked_events WHERE resolved_at IS NULL)",
                (T,),
            )
            return
        for stored in reversed(self.stream):
            event = stored.event
            if event is not None and event.number > max(self.guarded.applied.get(event.user_id, {0}), default=0) + 1:
                self.guarded.db.execute(
                    "INSERT INTO parked_events VALUES (?, ?, ?, ?, ?, x'00', 1, 'A', ?, NULL, NULL)",
                    (stored.seq, event.id, event.user_id, event.number, event.subject, T),
                )
                self.guarded.db.execute(
                    "INSERT OR REPLACE INTO gaps SELECT user_id, last_number, ? FROM accounts WHERE user_id = ?",
                    (T, event.user_id),
                )
                return

    async def ack(self, count: int) -> None:
        """The guarded group's consumer acknowledges the next `count` messages: its ack floor moves."""
        assert self.sub is not None
        try:
            msgs = await self.sub.fetch(count, timeout=0.5)
        except TimeoutError:
            return
        for msg in msgs:
            await msg.ack_sync()

    async def step(self, faults: bool) -> None:
        """A random handful of what the lab does."""
        rng = self.rng
        for _ in range(rng.randint(5, 40)):
            roll = rng.random()
            if roll < 0.3:
                self.record(rng.choice(self.users))
            elif roll < 0.55:
                await self.relay(mark=not faults or rng.random() > 0.1)
            elif roll < 0.75:
                self.process(self.guarded, faults and rng.random() < 0.3)
            elif roll < 0.88:
                if self.naive is not None:
                    self.process(self.naive, faults)
            elif roll < 0.92:
                await self.ack(rng.randint(1, 10))
            elif not faults:
                continue
            elif roll < 0.94:
                user = rng.choice(self.users)
                await self.foreign(
                    user, rng.choice([1, self.numbers[user], self.numbers[user] + 1, self.numbers[user] + 3])
                )
            elif roll < 0.96:
                await self.poison()
            elif roll < 0.97:
                self.record_poison()
            elif roll < 0.98:
                self.record_conflict()
            else:
                self.park()
