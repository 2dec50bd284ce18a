"""The Account Service listener: one process of a queue group.

The consumer loop fetches batches from the group's durable pull consumer, hands them to the account
database in one transaction, and only then acknowledges: `ack` for applied, rejected and duplicate
events, `nak` with a growing delay for early ones (or nothing, with `--defer ack-wait`, so the ack wait
brings them back), `term` for poison. It survives server restarts (the client reconnects and the loop
fetches again), drains on SIGTERM, publishes its status, and obeys fault-injection commands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from listeners.accounts import AccountsDB, Delivery, Mode, Outcome, accounts_db_name
from listeners.groups import DEFAULT_ACK_WAIT_S, QueueGroup, ensure_consumer, group_for_mode
from listeners.guard import SequenceGuard
from listeners.status import STATUS_INTERVAL_S, control_subject, parse_control, status_subject
from publisher.events import STREAM_NAME, AccountEvent, EventError, utc_now_iso
from publisher.jetstream import DEFAULT_NATS_TIMEOUT_S, connect, ensure_stream

log = logging.getLogger(__name__)

DeferMode = Literal["nak", "ack-wait"]
CRASH_EXIT_CODE = 70
MAX_STATUS_DELIVERIES = 200
MAX_STATUS_IN_FLIGHT = 25
# An early event is re-checked every HOLD_RECHECK_S for up to HOLD_LIMIT_S (a quarter of the ack wait
# at most) before it is nak-ed; MAX_HELD bounds the memory a long gap can take.
HOLD_RECHECK_S = 0.05
HOLD_LIMIT_S = 0.5
MAX_HELD = 2000
# A status loop that wakes up this much later than it should has been frozen (SIGSTOP, a paused lab).
FROZEN_GAP_S = 5.0


@dataclass(slots=True)
class ListenerConfig:
    name: str
    mode: Mode
    nats_url: str
    data_dir: Path
    ack_wait_s: float = DEFAULT_ACK_WAIT_S
    defer: DeferMode = "nak"
    batch: int = 100
    fetch_timeout_s: float = 1.0
    slow_ms: int = 0
    parent_pid: int | None = None
    nats_timeout_s: float = DEFAULT_NATS_TIMEOUT_S

    @property
    def group(self) -> QueueGroup:
        return group_for_mode(self.mode)

    @property
    def db_path(self) -> Path:
        return self.data_dir / accounts_db_name(self.mode)


@dataclass(slots=True)
class Counters:
    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    deferred: int = 0
    poison: int = 0
    redelivered: int = 0

    def count(self, kind: str) -> None:
        if kind == "duplicate":
            self.duplicates += 1
        else:
            setattr(self, kind, getattr(self, kind) + 1)


def delivery_from_msg(msg: Msg) -> Delivery:
    """Parse a JetStream message; a contract violation becomes a poison delivery, never an exception."""
    meta = msg.metadata
    try:
        event: AccountEvent | None = AccountEvent.from_json(msg.data, msg.subject)
        reason = None
    except EventError as exc:
        event, reason = None, str(exc)
    return Delivery(meta.sequence.stream, meta.num_delivered, msg.subject, msg.data, event, reason)


def describe_delivery(delivery: Delivery) -> dict[str, Any]:
    """The JSON form of a delivery in the status message."""
    data: dict[str, Any] = {"streamSeq": delivery.stream_seq, "deliveryCount": delivery.delivery_count}
    if delivery.event is not None:
        event = delivery.event
        data.update(
            id=event.id, userId=event.user_id, number=event.number, type=event.type, amountCents=event.amount_cents
        )
    else:
        data.update(subject=delivery.subject, reason=delivery.poison_reason)
    return data


@dataclass(slots=True)
class _Held:
    msg: Msg
    delivery: Delivery
    since: float


@dataclass(slots=True)
class _Fault:
    crash: str | None = None  # "after-commit" or "before-commit"
    slow_ms: int = 0
    slow_changed: asyncio.Event = field(default_factory=asyncio.Event)


class AccountListener:
    """One member of a queue group, applying account events to its account database."""

    def __init__(self, config: ListenerConfig) -> None:
        self.config = config
        self.guard = SequenceGuard(max_delay_s=max(0.05, min(0.5, config.ack_wait_s / 2)))
        self.counters = Counters()
        self.fault = _Fault(slow_ms=config.slow_ms)
        self.state = "starting"
        self.connected = False
        self.in_flight: list[Delivery] = []
        self.in_flight_since: float | None = None
        self.last_outcome: dict[str, Any] | None = None
        self._recent: deque[dict[str, Any]] = deque(maxlen=MAX_STATUS_DELIVERIES)
        self._delivery_seq = 0
        self._stop = asyncio.Event()
        self._status_wake = asyncio.Event()
        self._nc: NATS | None = None
        self._db: AccountsDB | None = None
        # Early events kept unacknowledged for a moment and re-checked, by stream sequence.
        self._held: dict[int, _Held] = {}
        self.hold_limit_s = min(HOLD_LIMIT_S, config.ack_wait_s / 4)
        # Why the listener stopped by itself (NATS unreachable for too long); None when it was told to.
        self.failure: str | None = None
        self._disconnected_since: float | None = None
        self._last_checked = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.state = "draining"
        self._stop.set()
        self.fault.slow_changed.set()

    async def run(self) -> None:
        """Consume until stopped. `failure` says why, when the listener stopped by itself."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
                pass
        self._db = await AccountsDB.open(self.config.db_path)
        try:
            self._nc = await self._connect()
            if self._nc is not None:
                await self._serve(self._nc)
        finally:
            await self._db.close()

    async def _serve(self, nc: NATS) -> None:
        self.connected = True
        status_task = asyncio.create_task(self._status_loop(), name="status")
        try:
            await nc.subscribe(control_subject(self.config.name), cb=self._on_control)
            await self._consume()
            await self._release_held()
        finally:
            self.state = "stopped"
            status_task.cancel()
            try:
                await self._publish_status()
                # Acks are already sent; flush them out rather than drain, which waits on the pull inbox.
                await nc.flush(timeout=2)
            except Exception:  # the server may be gone; closing is best effort
                log.debug("flush failed", exc_info=True)
            await nc.close()
            log.info("listener %s stopped", self.config.name)

    async def _connect(self) -> NATS | None:
        """Connect, retrying while the server is down (it may be restarting as we start); give up
        after `nats_timeout_s` with `failure` set."""
        deadline = time.monotonic() + self.config.nats_timeout_s
        while not self._stop.is_set():
            try:
                return await connect(
                    self.config.nats_url,
                    f"natslab-listener-{self.config.name}",
                    on_disconnect=self._on_disconnect,
                    on_reconnect=self._on_reconnect,
                )
            except (ConnectionError, OSError, NatsError) as exc:
                log.warning("cannot connect yet: %r", exc)
                if time.monotonic() > deadline:
                    self.failure = f"cannot reach NATS at {self.config.nats_url} (tried for {self.config.nats_timeout_s:g} s)"
                    return None
                self.state = "disconnected"
                await self._sleep(0.5)
        return None

    async def _on_disconnect(self) -> None:
        self.connected = False
        if self._disconnected_since is None:
            self._disconnected_since = time.monotonic()
        self._status_wake.set()

    async def _on_reconnect(self) -> None:
        self.connected = True
        self._disconnected_since = None
        self._status_wake.set()

    def _give_up_if_unreachable(self) -> None:
        """Stop, with `failure` set, once NATS has been unreachable for `nats_timeout_s`."""
        now = time.monotonic()
        if self._disconnected_since is not None and now - self._last_checked > FROZEN_GAP_S:
            # This process was frozen (SIGSTOP) meanwhile: the client has not had its chance to reconnect.
            self._disconnected_since = now
        self._last_checked = now
        since = self._disconnected_since
        if since is not None and now - since > self.config.nats_timeout_s and not self._stop.is_set():
            self.failure = f"NATS at {self.config.nats_url} unreachable for {self.config.nats_timeout_s:g} s"
            log.warning("%s; stopping", self.failure)
            self.request_stop()

    # -- consuming ---------------------------------------------------------------------------------

    async def _bind(self):
        assert self._nc is not None
        await ensure_stream(self._nc)
        await ensure_consumer(self._nc, self.config.group, self.config.ack_wait_s)
        return await self._nc.jetstream().pull_subscribe_bind(
            durable=self.config.group.name, stream=STREAM_NAME
        )

    async def _consume(self) -> None:
        sub = None
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if sub is None:
                    sub = await self._bind()
                    self.state = "running"
                    self._status_wake.set()
                # When slowed, take one event at a time so the delay is per event, as a person expects.
                batch = 1 if self.fault.slow_ms else self.config.batch
                # Holding early events, come back soon to see whether their predecessors arrived.
                timeout = HOLD_RECHECK_S if self._held else self.config.fetch_timeout_s
                msgs = await sub.fetch(batch, timeout=timeout)
            except asyncio.TimeoutError:
                if self._held:
                    await self._handle([])
                continue
            except NotFoundError:
                log.warning("stream or consumer missing; declaring them again")
                sub = None
                await self._sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception as exc:  # connection trouble: the client reconnects, we fetch again
                if self._stop.is_set():
                    break
                log.warning("fetch failed: %r", exc)
                self.state = "reconnecting"
                self._status_wake.set()
                await self._sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            if self.state == "reconnecting":
                self.state = "running"
            if msgs:
                await self._handle(msgs)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def _handle(self, fetched: list[Msg]) -> None:
        """Process fetched messages together with the early ones still held from earlier batches."""
        assert self._db is not None
        held = list(self._held.values())
        self._held.clear()
        msgs = [entry.msg for entry in held] + fetched
        new = [delivery_from_msg(msg) for msg in fetched]
        deliveries = [entry.delivery for entry in held] + new
        held_since = [entry.since for entry in held] + [time.monotonic()] * len(new)
        self.in_flight = deliveries
        if new:
            self.in_flight_since = time.time()
            self._status_wake.set()
        if self.fault.slow_ms and fetched:
            await self._slow_down(fetched)
        crash = self.fault.crash
        before_commit = self._crash_now if crash == "before-commit" else None
        try:
            outcomes = await self._db.process_batch(
                deliveries, self.config.mode, self.config.name, self.guard, before_commit
            )
        except Exception:
            # Nothing was committed: let every message come back soon rather than after the ack wait.
            log.exception("batch failed; nak-ing %d messages", len(msgs))
            for msg in msgs:
                await self._settle(msg.nak(delay=0.1))
            self.in_flight = []
            return
        if crash == "after-commit":
            self._crash_now()
        settled: list[Outcome] = []
        now = time.monotonic()
        for index, (msg, outcome, since) in enumerate(zip(msgs, outcomes, held_since)):
            first_look = index >= len(held)
            if outcome.kind == "deferred" and self._may_hold(now - since):
                self._held[outcome.delivery.stream_seq] = _Held(msg, outcome.delivery, since)
                if first_look:
                    settled.append(outcome)  # counted and shown once, when it was found early
                continue
            await self._settle(self._acknowledge(msg, outcome))
            if first_look or outcome.kind != "deferred":
                settled.append(outcome)
        self._record(settled)
        self.in_flight = [entry.delivery for entry in self._held.values()]
        if not self._held:
            self.in_flight_since = None
        if settled:
            self._status_wake.set()

    async def _release_held(self) -> None:
        """Hand held early events back to the server now, so a draining listener delays nothing."""
        held, self._held = list(self._held.values()), {}
        for entry in held:
            await self._settle(entry.msg.nak())

    def _may_hold(self, held_for: float) -> bool:
        """Keep an early event a little while (its predecessor is often a few ms behind) before
        handing it back to the server; only with nak deferral, since ack-wait mode is the seed's way."""
        return (
            self.config.defer == "nak"
            and held_for < self.hold_limit_s
            and len(self._held) < MAX_HELD
            and not self._stop.is_set()
        )

    def _acknowledge(self, msg: Msg, outcome: Outcome):
        if outcome.kind == "poison":
            return msg.term()
        if outcome.kind == "deferred":
            if self.config.defer == "ack-wait":
                return None
            return msg.nak(delay=self.guard.defer_delay(outcome.delivery.delivery_count))
        return msg.ack()

    @staticmethod
    async def _settle(ack) -> None:
        if ack is None:
            return
        try:
            await ack
        except Exception as exc:  # a lost ack means a redelivery, which the guard turns into a duplicate
            log.warning("ack failed: %r", exc)

    async def _slow_down(self, msgs: list[Msg]) -> None:
        """Work slowly on `msgs`, telling the server we are still on them (`in_progress`) every half
        ack wait, as a slow but live worker does: only a dead or frozen listener's events come back."""
        self.fault.slow_changed.clear()
        deadline = time.monotonic() + self.fault.slow_ms * len(msgs) / 1000
        heartbeat = max(0.05, self.config.ack_wait_s / 2)
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self.fault.slow_changed.wait(), timeout=min(remaining, heartbeat))
                return
            except asyncio.TimeoutError:
                pass
            if deadline - time.monotonic() > 0:
                for msg in msgs:
                    await self._settle(msg.in_progress())

    def _crash_now(self) -> None:
        where = "after the commit, before the ack" if self.fault.crash == "after-commit" else "before the commit"
        log.warning("injected crash %s", where)
        # The supervisor shows the last line on stderr as the reason the process ended.
        print(f"injected crash {where}", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(CRASH_EXIT_CODE)

    def _record(self, outcomes: Iterable[Outcome]) -> None:
        now = utc_now_iso()
        for outcome in outcomes:
            self.counters.count(outcome.kind)
            if outcome.delivery.delivery_count > 1:
                self.counters.redelivered += 1
            self._delivery_seq += 1
            entry = describe_delivery(outcome.delivery)
            entry.update(seq=self._delivery_seq, outcome=outcome.kind, at=now)
            self._recent.append(entry)
            self.last_outcome = entry

    # -- control and status ------------------------------------------------------------------------

    async def _on_control(self, msg: Msg) -> None:
        text = msg.data.decode("utf-8", "replace")
        try:
            command, value = parse_control(text)
        except ValueError as exc:
            reply = f"error: {exc}"
        else:
            if command == "crash-after-commit":
                self.fault.crash = "after-commit"
            elif command == "crash-before-commit":
                self.fault.crash = "before-commit"
            elif command == "slow":
                self.fault.slow_ms = value
                self.fault.slow_changed.set()
            else:
                self.fault.crash = None
                self.fault.slow_ms = 0
                self.fault.slow_changed.set()
            reply = "ok"
            log.info("control: %s", text)
            self._status_wake.set()
        if msg.reply:
            await msg.respond(reply.encode())

    def status(self) -> dict[str, Any]:
        state = self.state
        if state == "running" and self.fault.slow_ms:
            state = "slow"
        if not self.connected and state not in ("stopped", "draining"):
            state = "disconnected"
        deliveries = list(self._recent)
        self._recent.clear()
        return {
            "name": self.config.name,
            "pid": os.getpid(),
            "mode": self.config.mode,
            "group": self.config.group.name,
            "defer": self.config.defer,
            "state": state,
            "slowMs": self.fault.slow_ms,
            "crashArmed": self.fault.crash,
            "counters": {
                "applied": self.counters.applied,
                "rejected": self.counters.rejected,
                "duplicates": self.counters.duplicates,
                "deferred": self.counters.deferred,
                "poison": self.counters.poison,
                "redelivered": self.counters.redelivered,
            },
            "inFlightCount": len(self.in_flight),
            "inFlight": [describe_delivery(d) for d in self.in_flight[:MAX_STATUS_IN_FLIGHT]],
            "inFlightSince": self.in_flight_since,
            "lastEvent": self.last_outcome,
            "deliveries": deliveries,
            "ts": utc_now_iso(),
        }

    async def _publish_status(self) -> None:
        if self._nc is None or not self._nc.is_connected:
            return
        await self._nc.publish(status_subject(self.config.name), json.dumps(self.status()).encode())

    async def _status_loop(self) -> None:
        parent = self.config.parent_pid
        while True:
            try:
                await asyncio.wait_for(self._status_wake.wait(), timeout=STATUS_INTERVAL_S)
            except asyncio.TimeoutError:
                pass
            self._status_wake.clear()
            if parent is not None and os.getppid() != parent:
                log.warning("parent %d is gone; stopping", parent)
                self.request_stop()
            self._give_up_if_unreachable()
            try:
                await self._publish_status()
            except Exception as exc:
                log.debug("status publish failed: %r", exc)
            # Bound the status rate under load; outcomes accumulate and go out with the next message.
            await asyncio.sleep(0.05)
