"""One batch of deliveries, decided and written in one SQLite write transaction (docs/design.md,
"Sequence guard" and "Account database").

Guarded mode (and partitioned mode, which keeps the rule as a safety net) decides each user's
candidates in number order: the batch's deliveries, and the user's parked events, which so get
applied by themselves in the batch that brings the missing event. A
candidate at or below the last number is then identified by id against the events processed at that
number: the same event is a duplicate, another one a conflict. An early delivery waits (deferred) until
its user has been stuck at the same last number for the gap timeout, and is parked after that. Naive
mode applies every valid delivery in delivery order.

The outcomes come back in the order they were decided, which is the order of the `applied_events`
rows: the commit order (`listeners/outcomes.py`, `BatchResult`). Each carries the facts its rule went
by, so a listener can say why, and say it in the order it happened.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from datetime import datetime

import aiosqlite

from listeners.guard import Decision, SequenceGuard
from listeners.outcomes import BatchResult, ConcurrentUpdate, Delivery, Mode, Outcome, OutcomeKind, RuleFacts, guards
from publisher.events import AccountEvent, EventError, apply_business_rule, utc_now_iso
from publisher.sqlite import fetch_all, select_in

# Rows of `VALUES (?, ?)` per statement when looking up (user, number) pairs.
_PAIRS_PER_QUERY = 400


@dataclass(slots=True)
class _Candidate:
    """A delivery of this batch (`index` into it; poison when it has no event) or a parked event
    (`parked_rowid`), and, once decided, its outcome and the facts of the rule that gave it."""

    delivery: Delivery
    event: AccountEvent | None
    index: int | None = None
    parked_rowid: int | None = None
    kind: OutcomeKind | None = None  # None: a parked event that stays parked
    facts: RuleFacts = RuleFacts()


@dataclass(slots=True)
class _User:
    last: int
    balance: int
    read: tuple[int, int]
    gap_last: int | None  # the last number the user was stuck at when a gap was first seen, and since when
    gap_since: str | None
    parked: int  # parked events not yet resolved


@dataclass(slots=True)
class _Writes:
    applied: list[tuple] = field(default_factory=list)
    conflicts: list[tuple] = field(default_factory=list)
    parked: list[tuple] = field(default_factory=list)
    resolved: list[tuple] = field(default_factory=list)
    gaps: list[tuple] = field(default_factory=list)
    poison: list[tuple] = field(default_factory=list)


class AccountBatch:
    """Decides one batch; `run` must be called inside a write transaction."""

    def __init__(
        self, db: aiosqlite.Connection, deliveries: list[Delivery], mode: Mode, listener: str, guard: SequenceGuard
    ) -> None:
        self._db = db
        self.deliveries = deliveries
        self.mode = mode
        self.listener = listener
        self.guard = guard
        self.now = utc_now_iso()
        self._writes = _Writes()
        # Events processed in this batch, by (user, number): their ids, for identifying duplicates.
        self._applied_here: dict[tuple[str, int], set[str]] = defaultdict(set)

    async def run(self) -> BatchResult:
        users = await self._read_users()
        order = await self._candidates(users)
        unidentified: list[_Candidate] = []
        deferred: dict[str, list[_Candidate]] = defaultdict(list)
        for candidate in order:
            event = candidate.event
            if event is None:
                self._poison(candidate)
                continue
            user = users[event.user_id]
            decision = self.guard.decide(event.number, user.last) if guards(self.mode) else Decision.APPLY
            if decision is Decision.APPLY:
                self._apply(candidate, user)
                continue
            # Duplicate, conflict, deferred or parked: decided here, by the last number as it is now.
            candidate.facts = RuleFacts(last_before=user.last, last_after=user.last)
            if decision is Decision.DUPLICATE:
                unidentified.append(candidate)
            elif candidate.index is not None:  # an early delivery; an early parked event stays parked
                deferred[event.user_id].append(candidate)
        await self._identify(unidentified)
        for user_id, waiting in deferred.items():
            self._wait_or_park(user_id, users[user_id], waiting)
        await self._write(users)
        outcomes = [Outcome(c.delivery, c.kind, c.facts, c.index) for c in order if c.kind is not None]
        assert sum(1 for o in outcomes if not o.unparked) == len(self.deliveries)
        return BatchResult(outcomes)

    # -- reading -----------------------------------------------------------------------------------

    async def _read_users(self) -> dict[str, _User]:
        names = sorted({d.event.user_id for d in self.deliveries if d.event is not None})
        await self._db.executemany(
            "INSERT OR IGNORE INTO accounts (user_id, last_number, balance_cents) VALUES (?, 0, 0)",
            [(name,) for name in names],
        )
        rows = await select_in(
            self._db,
            "SELECT a.user_id, a.last_number, a.balance_cents, g.last_number, g.since,"
            " (SELECT COUNT(*) FROM parked_events p WHERE p.user_id = a.user_id AND p.resolved_at IS NULL)"
            " FROM accounts a LEFT JOIN gaps g ON g.user_id = a.user_id WHERE a.user_id IN ({})",
            names,
        )
        users = {row[0]: _User(row[1], row[2], (row[1], row[2]), row[3], row[4], row[5]) for row in rows}
        assert len(users) == len(names)
        return users

    async def _candidates(self, users: dict[str, _User]) -> list[_Candidate]:
        """The batch's deliveries, and in guarded mode the parked events of its users, in the order
        they are decided: delivery order (naive), or per user by number (guarded, `_in_turn`)."""
        candidates = [_Candidate(d, d.event, index=i) for i, d in enumerate(self.deliveries)]
        if not guards(self.mode):
            return candidates
        with_parked = sorted(name for name, user in users.items() if user.parked)
        if with_parked:
            rows = await select_in(
                self._db,
                "SELECT rowid, stream_seq, subject, payload, delivery_count FROM parked_events"
                " WHERE resolved_at IS NULL AND user_id IN ({}) ORDER BY rowid",
                with_parked,
            )
            for rowid, stream_seq, subject, payload, delivery_count in rows:
                try:
                    event = AccountEvent.from_json(payload, subject)
                except EventError:  # parked events were valid when parked; the contract has not changed
                    continue
                delivery = Delivery(stream_seq, delivery_count, subject, payload, event)
                candidates.append(_Candidate(delivery, event, parked_rowid=rowid))
        return _in_turn(self.deliveries, candidates)

    async def _applied_ids(self, keys: set[tuple[str, int]]) -> dict[tuple[str, int], set[str]]:
        """Ids of the events processed at each (user, number), this batch's included."""
        found: dict[tuple[str, int], set[str]] = defaultdict(set)
        pending = sorted(keys)
        for start in range(0, len(pending), _PAIRS_PER_QUERY):
            chunk = pending[start : start + _PAIRS_PER_QUERY]
            values = ", ".join("(?, ?)" for _ in chunk)
            params = [value for pair in chunk for value in pair]
            # A join from the keys, so each key is one look-up in the (user_id, number) index.
            sql = (
                f"WITH keys (user_id, number) AS (VALUES {values}) SELECT a.user_id, a.number, a.event_id"
                " FROM keys CROSS JOIN applied_events a ON a.user_id = keys.user_id AND a.number = keys.number"
            )
            for user_id, number, event_id in await fetch_all(self._db, sql, params):
                found[(user_id, number)].add(event_id)
        for key in keys:
            found[key] |= self._applied_here.get(key, set())
        return found

    # -- deciding ----------------------------------------------------------------------------------

    def _settle(self, candidate: _Candidate, kind: OutcomeKind) -> None:
        """Give a candidate its outcome; a parked event is resolved by it."""
        candidate.kind = kind
        if candidate.parked_rowid is not None:
            self._writes.resolved.append((self.now, kind, candidate.parked_rowid))

    def _apply(self, candidate: _Candidate, user: _User) -> None:
        event, delivery = candidate.event, candidate.delivery
        assert event is not None
        last, balance = user.last, user.balance
        user.balance, kind = apply_business_rule(user.balance, event)
        user.last = event.number
        if guards(self.mode):
            candidate.facts = RuleFacts(last, user.last, balance, user.balance)
        else:  # no number rule: what it did to the balance is all there is to say
            candidate.facts = RuleFacts(balance_before=balance, balance_after=user.balance)
        self._settle(candidate, kind)  # type: ignore[arg-type]
        self._applied_here[(event.user_id, event.number)].add(event.id)
        self._writes.applied.append(
            (event.id, event.user_id, event.number, event.type, event.amount_cents, kind, self.listener,
             delivery.stream_seq, delivery.delivery_count, self.now)
        )  # fmt: skip

    async def _identify(self, candidates: list[_Candidate]) -> None:
        """Duplicate or conflict, by the ids processed at each candidate's number."""
        if not candidates:
            return
        applied = await self._applied_ids({(c.event.user_id, c.event.number) for c in candidates if c.event})
        for candidate in candidates:
            event, delivery = candidate.event, candidate.delivery
            assert event is not None
            ids = applied[(event.user_id, event.number)]
            decision = self.guard.identify(event.id, ids)
            if decision is Decision.DUPLICATE:
                self._settle(candidate, "duplicate")
                continue
            used_by = min(ids) if ids else None
            self._settle(candidate, "conflict")
            candidate.facts = replace(candidate.facts, used_by=used_by)
            self._writes.conflicts.append(
                (delivery.stream_seq, event.id, event.user_id, event.number, used_by,
                 delivery.subject, delivery.payload, self.listener, self.now, delivery.stream_seq)
            )  # fmt: skip

    def _wait_or_park(self, user_id: str, user: _User, waiting: list[_Candidate]) -> None:
        """Early deliveries: deferred while the user's gap is younger than the gap timeout, else parked."""
        if user.gap_last != user.last or user.gap_since is None:
            # A new gap (or the user moved since the last one): it starts now.
            self._writes.gaps.append((user_id, user.last, self.now))
            decision = Decision.DEFER
        else:
            waited = (_parse(self.now) - _parse(user.gap_since)).total_seconds()
            decision = self.guard.wait_or_park(waited)
        for candidate in waiting:
            if decision is Decision.DEFER:
                self._settle(candidate, "deferred")
                continue
            event, delivery = candidate.event, candidate.delivery
            assert event is not None
            self._settle(candidate, "parked")
            self._writes.parked.append(
                (delivery.stream_seq, event.id, event.user_id, event.number, delivery.subject, delivery.payload,
                 delivery.delivery_count, self.listener, self.now, event.id)
            )  # fmt: skip

    def _poison(self, candidate: _Candidate) -> None:
        d = candidate.delivery
        self._settle(candidate, "poison")
        self._writes.poison.append(
            (d.stream_seq, d.subject, d.poison_reason or "malformed", d.payload, self.now, d.stream_seq)
        )

    # -- writing -----------------------------------------------------------------------------------

    async def _write(self, users: dict[str, _User]) -> None:
        db, writes = self._db, self._writes
        updates = [
            (user.last, user.balance, name, user.read[0])
            for name, user in users.items()
            if (user.last, user.balance) != user.read
        ]
        if updates:
            cursor = await db.executemany(
                "UPDATE accounts SET last_number = ?, balance_cents = ? WHERE user_id = ? AND last_number = ?",
                updates,
            )
            # The rows changed by all the updates together: one short means an account moved under us.
            if cursor.rowcount != len(updates):
                raise ConcurrentUpdate(
                    f"{len(updates) - cursor.rowcount} of {len(updates)} accounts changed under listener {self.listener}"
                )
        if writes.applied:
            await db.executemany(
                "INSERT INTO applied_events (event_id, user_id, number, type, amount_cents, outcome,"
                " listener, stream_seq, delivery_count, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                writes.applied,
            )
        if writes.resolved:
            await db.executemany(
                "UPDATE parked_events SET resolved_at = ?, outcome = ? WHERE rowid = ? AND resolved_at IS NULL",
                writes.resolved,
            )
        # A conflict, a parked event or poison seen again after a crash or a redelivery is recorded once.
        if writes.conflicts:
            await db.executemany(
                "INSERT INTO conflict_events (stream_seq, event_id, user_id, number, applied_id, subject, payload,"
                " listener, seen_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?"
                " WHERE NOT EXISTS (SELECT 1 FROM conflict_events WHERE stream_seq = ?)",
                writes.conflicts,
            )
        if writes.parked:
            await db.executemany(
                "INSERT INTO parked_events (stream_seq, event_id, user_id, number, subject, payload,"
                " delivery_count, listener, parked_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?"
                " WHERE NOT EXISTS (SELECT 1 FROM parked_events WHERE event_id = ? AND resolved_at IS NULL)",
                writes.parked,
            )
        if writes.gaps:
            await db.executemany(
                "INSERT INTO gaps (user_id, last_number, since) VALUES (?, ?, ?) ON CONFLICT (user_id)"
                " DO UPDATE SET last_number = excluded.last_number, since = excluded.since",
                writes.gaps,
            )
        if writes.poison:
            await db.executemany(
                "INSERT INTO poison_events (stream_seq, subject, reason, payload, seen_at)"
                " SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM poison_events WHERE stream_seq = ?)",
                writes.poison,
            )


def _in_turn(deliveries: list[Delivery], candidates: list[_Candidate]) -> list[_Candidate]:
    """Guarded order: each user's candidates by number (parked first on a tie), taking the places of
    that user's deliveries in the batch, so a batch's order across users stays the delivery order
    and only a user's own events change places. A parked event goes right after the candidate
    before it (or before the user's first delivery). Poison keeps its place: it has no user.
    `candidates` are the batch's deliveries, in delivery order, then the parked events."""
    valid = [(c.event, c) for c in candidates if c.event is not None]
    queues: dict[str, deque[_Candidate]] = defaultdict(deque)
    for event, candidate in sorted(valid, key=lambda ec: (ec[0].number, ec[1].index is not None, ec[1].index or 0)):
        queues[event.user_id].append(candidate)
    ordered: list[_Candidate] = []
    for index, delivery in enumerate(deliveries):
        if delivery.event is None:
            ordered.append(candidates[index])
            continue
        queue = queues[delivery.event.user_id]
        # This place takes the user's next delivery, with the parked events around it; as many
        # deliveries are queued as the user has places, so every candidate gets one.
        took_delivery = False
        while queue and not (took_delivery and queue[0].index is not None):
            candidate = queue.popleft()
            took_delivery = took_delivery or candidate.index is not None
            ordered.append(candidate)
    assert len(ordered) == len(candidates)
    return ordered


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
