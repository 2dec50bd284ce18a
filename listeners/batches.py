"""What a listener does with a fetched batch: the guard and the account database decide in one
transaction, and only then is each message settled (ack, nak with a delay, term), or, for an early
event whose predecessor is probably a few ms behind, held a moment and looked at again."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from listeners.accounts import AccountsDB
from listeners.activity import Activity
from listeners.faults import Faults
from listeners.guard import SequenceGuard
from listeners.outcomes import Delivery, Outcome
from listeners.partitions import event_subject, source_sequence
from listeners.slow_user import SlowUser
from publisher.events import AccountEvent, EventError

if TYPE_CHECKING:
    from listeners.account_listener import ListenerConfig

log = logging.getLogger(__name__)

# An early event is re-checked every HOLD_RECHECK_S for up to HOLD_LIMIT_S (a quarter of the ack wait
# at most) before it is nak-ed; MAX_HELD bounds the memory a long gap can take.
HOLD_RECHECK_S = 0.05
HOLD_LIMIT_S = 0.5
MAX_HELD = 2000


def delivery_from_msg(msg: Msg, partitioned: bool = False) -> Delivery:
    """Parse a JetStream message; a contract violation becomes a poison delivery, never an exception.
    A message of the partitioned stream is taken by its event's subject, without the partition, and
    its sequence in ACCOUNT_EVENTS, so every group's records name the same event by the same number."""
    meta = msg.metadata
    subject, seq = msg.subject, meta.sequence.stream
    if partitioned:
        subject, seq = event_subject(subject), source_sequence(msg.headers) or seq
    try:
        event: AccountEvent | None = AccountEvent.from_json(msg.data, subject)
        reason = None
    except EventError as exc:
        event, reason = None, str(exc)
    return Delivery(seq, meta.num_delivered, subject, msg.data, event, reason)


@dataclass(slots=True)
class _Held:
    msg: Msg
    delivery: Delivery
    since: float


class BatchHandler:
    """Decides and settles batches for one listener; keeps the early events it holds between batches."""

    def __init__(
        self,
        config: ListenerConfig,
        db: AccountsDB,
        guard: SequenceGuard,
        fault: Faults,
        activity: Activity,
        wake: asyncio.Event,
        stopping: asyncio.Event,
        worker: int = 0,
    ) -> None:
        self.config = config
        self.worker = worker  # the partition this handler works on, in a partitioned listener
        self._db = db
        self.guard = guard
        self.fault = fault
        self.activity = activity
        self._wake = wake  # set when there is news for the status message
        self._stopping = stopping
        # Early events kept unacknowledged for a moment and re-checked, by stream sequence.
        self._held: dict[int, _Held] = {}
        self.hold_limit_s = min(HOLD_LIMIT_S, config.ack_wait_s / 4)
        partitioned = config.mode == "partitioned"
        self._slow = SlowUser(
            fault, db, config.mode, config.ack_wait_s, lambda msg: delivery_from_msg(msg, partitioned),
            self._decide, self.settle, stopping, self.hold_limit_s,
        )  # fmt: skip

    @property
    def holding(self) -> bool:
        return bool(self._held)

    @property
    def held_count(self) -> int:
        """Events this handler keeps unacknowledged for now: held early ones and the slow lane's."""
        return len(self._held) + self._slow.waiting

    async def handle(self, fetched: list[Msg]) -> None:
        """Process fetched messages together with the early ones still held from earlier batches; the
        slow user's events take their time (`listeners/slow_user.py`)."""
        if fetched and self._slow.concerns(fetched):
            await self._slow.handle(fetched)
        else:
            await self._decide(fetched)

    async def _decide(self, fetched: list[Msg]) -> None:
        held = list(self._held.values())
        self._held.clear()
        msgs = [entry.msg for entry in held] + fetched
        new = [delivery_from_msg(msg, self.config.mode == "partitioned") for msg in fetched]
        deliveries = [entry.delivery for entry in held] + new
        held_since = [entry.since for entry in held] + [time.monotonic()] * len(new)
        self.activity.holding(deliveries, fetched_now=bool(new), worker=self.worker)
        if new:
            self._wake.set()
        if self.fault.slow_ms and fetched:
            await self.fault.slow_down(fetched, self.config.ack_wait_s, self.settle)
        try:
            result = await self._db.process_batch(deliveries, self.config.mode, self.config.name, self.guard)
        except Exception:
            # Nothing was committed: let every message come back soon rather than after the ack wait.
            log.exception("batch failed; nak-ing %d messages", len(msgs))
            for msg in msgs:
                await self.settle(msg.nak(delay=0.1))
            self.activity.holding([], fetched_now=False, worker=self.worker)
            return
        if self.fault.crash == "after-commit":
            self._crash_now()
        # Settle and record in commit order, so the listener's running numbers follow it too.
        settled: list[Outcome] = []
        now = time.monotonic()
        for outcome in result.in_commit_order:
            if outcome.index is None:  # a parked event resolved: no message of this batch to settle
                settled.append(outcome)
                continue
            msg, since = msgs[outcome.index], held_since[outcome.index]
            first_look = outcome.index >= len(held)
            # The slow user's early events go back to the server: held here, they would be applied for
            # free with their predecessor, skipping their slow work.
            if outcome.kind == "deferred" and not self.fault.is_slow(msg) and self._may_hold(now - since):
                self._held[outcome.delivery.stream_seq] = _Held(msg, outcome.delivery, since)
                if first_look:
                    settled.append(outcome)  # counted and shown once, when it was found early
                continue
            await self.settle(self._acknowledge(msg, outcome))
            if first_look or outcome.kind != "deferred":
                settled.append(outcome)
        self.activity.record(settled)
        self.activity.holding([entry.delivery for entry in self._held.values()], fetched_now=False, worker=self.worker)
        if settled:
            self._wake.set()

    async def release_held(self) -> None:
        """Hand held early events (and the slow lane's) back to the server now, so a draining listener
        delays nothing."""
        held, self._held = list(self._held.values()), {}
        for entry in held:
            await self.settle(entry.msg.nak())
        await self._slow.release()

    def _may_hold(self, held_for: float) -> bool:
        """Keep an early event a little while (its predecessor is often a few ms behind) before
        handing it back to the server; only with nak deferral, since ack-wait mode is the seed's way."""
        return (
            self.config.defer == "nak"
            and held_for < self.hold_limit_s
            and len(self._held) < MAX_HELD
            and not self._stopping.is_set()
        )

    def _acknowledge(self, msg: Msg, outcome: Outcome) -> Awaitable[None] | None:
        if outcome.kind in ("poison", "conflict", "parked"):  # recorded in the database; never again
            return msg.term()
        if outcome.kind == "deferred":
            if self.config.defer == "ack-wait":
                return None
            return msg.nak(delay=self.guard.defer_delay(outcome.delivery.delivery_count))
        return msg.ack()

    @staticmethod
    async def settle(ack: Awaitable[None] | None) -> None:
        if ack is None:
            return
        try:
            await ack
        except Exception as exc:  # a lost ack means a redelivery, which the guard turns into a duplicate
            log.warning("ack failed: %r", exc)

    def _crash_now(self) -> None:
        log.warning("injected crash after the commit, before the ack")
        # The supervisor shows the last line on stderr as the reason the process ended; the exit
        # code tells an injected crash from a real one (docs/design.md, "Listener process").
        print("injected crash after the commit, before the ack", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(os.EX_SOFTWARE)
