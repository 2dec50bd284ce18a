"""The publisher: the seed's Transactions service, with its outbox relay to JetStream.

`Publisher.publish` writes the numbered transaction first and then asks the relay to send it. The
relay sends unpublished rows in order with `Nats-Msg-Id` set to the event id (JetStream drops a
resend inside the duplicate window), marks them published only after the PubAck, and on failure
leaves them for the next attempt. So a crash or an outage between the write and the publish delays
an event but never loses or duplicates it.

The relay does not read back what this process just wrote: the writer hands it the committed events,
in commit order, and the PubAcks are marked in the outbox by the writer's next transaction (or by the
relay once nobody is writing). It reads the outbox itself when it starts, after a failed send, and
at least every `poll_s` for rows that other processes wrote.

A pass that could not send everything is retried after a pause that doubles up to `RETRY_MAX_S`,
whatever new records arrive meanwhile: in a cluster, a stream whose leader died answers nothing
("no responders") or times out for the few seconds its election takes, and retrying each new record
at once would only hammer the nodes that are electing. Resends are harmless: the stream drops a
second copy of an event id inside its duplicate window.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.js.client import JetStreamContext
from nats.js.errors import NoStreamResponseError

from publisher.events import AccountEvent, kind_to_type, validate_user_id
from publisher.transactions import TransactionsDB

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
SENT_REMEMBERED = 4096
# The pause before retrying a pass that left rows in the outbox: doubles from the first to the last.
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 2.0
# How often a wait for PubAcks looks whether the connection they would come on is still there, and
# how long it waits with none coming before it leaves the rest to the next pass (a stream leader that
# stopped answers none; the resend is dropped by the duplicate window if the first one was stored).
CONNECTION_CHECK_S = 0.1
PUBACK_STALL_S = 1.0


def publish_failure(error: BaseException) -> str:
    """Why a send failed, in words a person reading the status line understands."""
    if isinstance(error, (NoRespondersError, NoStreamResponseError)):
        return "no stream leader answers (NATS may be electing one)"
    if isinstance(error, asyncio.TimeoutError):
        return f"no PubAck within {PUBACK_STALL_S:g} s"
    if isinstance(error, ConnectionError):
        return "NATS not connected"
    return str(error) or type(error).__name__


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where a published event really is: sent, with its stream sequence (by this call's relay pass,
    or by another relay that got to the row first), or still in the outbox, with the reason.

    A person retries an event reported as not sent, so only one whose row is still unpublished is
    reported so: a retry of an event that did go out would record it twice.
    """

    event: AccountEvent
    stream_seq: int | None  # None while the event is in the outbox
    by_another_relay: bool = False
    outbox_reason: str | None = None

    def where(self) -> str:
        """`stream seq 7`, `stream seq 7 (sent by another relay)`, or `in the outbox: <reason>; ...`."""
        if self.stream_seq is None:
            return f"in the outbox: {self.outbox_reason}; it goes out with the next relay"
        return f"stream seq {self.stream_seq}" + (" (sent by another relay)" if self.by_another_relay else "")


async def send_batch(
    nc: NATS, js: JetStreamContext, events: list[AccountEvent]
) -> tuple[list[tuple[AccountEvent, int]], tuple[BaseException, str] | None]:
    """Publish a batch pipelined: the acknowledged prefix, in order, and the first failure (the error,
    and what failed in full), if any.

    PubAcks in flight die with the connection (nats-py leaves their futures pending), and with a
    stream leader that stops, so the wait for them ends as soon as the connection drops or was made
    again, or no PubAck came for PUBACK_STALL_S, rather than after the whole PUBLISH_TIMEOUT_S: the rest
    is sent again by the next pass, and the stream drops what it already has.
    """
    futures: list[asyncio.Future] = []
    acks: list[tuple[AccountEvent, int]] = []
    reconnects = nc.stats["reconnects"]

    def connection_lost() -> bool:
        return not nc.is_connected or nc.stats["reconnects"] != reconnects

    try:
        for event in events:
            futures.append(
                await js.publish_async(
                    event.subject, event.to_json(), headers={"Nats-Msg-Id": event.id}, wait_stall=PUBLISH_TIMEOUT_S
                )
            )
        deadline, pending = time.monotonic() + PUBLISH_TIMEOUT_S, set(futures)
        progress = time.monotonic()
        while pending and not connection_lost() and time.monotonic() - progress < PUBACK_STALL_S:
            if (left := deadline - time.monotonic()) <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=min(left, CONNECTION_CHECK_S))
            if done:
                progress = time.monotonic()
        for event, future in zip(events, futures):
            if not future.done():
                error: BaseException | None = ConnectionError("NATS not connected") if connection_lost() else asyncio.TimeoutError()
            else:
                error = future.exception()
            if error is not None:
                return acks, (error, f"publish {event.describe()}: {error!r}")
            acks.append((event, future.result().seq))
        return acks, None
    except (NatsError, OSError, asyncio.TimeoutError) as exc:
        return acks, (exc, f"publish: {exc!r}")
    finally:
        for future in futures:
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # read, so asyncio does not log each failure after the first as never retrieved


class Publisher:
    """Records transactions and relays them from the outbox to JetStream."""

    def __init__(self, db: TransactionsDB, nc: NATS | None, *, batch: int = 500) -> None:
        self.db = db
        self.nc = nc
        # One JetStream context for good: nats-py gives each one a PubAck inbox subscription that it
        # keeps, so a context per relay pass left thousands behind, and collector pauses of 0.3 s.
        self._js = nc.jetstream() if nc is not None else None
        self.batch = batch
        self._relay_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.published_count = 0
        # The last failed send, in full (logged), and why the outbox waits, in words (None when it does not).
        self.last_error: str | None = None
        self.waiting_reason: str | None = None
        self.failed_sends = 0  # relay passes that could not send everything they tried
        # Whether the last relay pass left rows behind; the next one then waits (see RETRY_FIRST_S).
        self._pass_failed = False
        # Since when the outbox has had rows that no relay pass could send (NATS unreachable).
        self.stalled_since: float | None = None
        self._queued: list[tuple[tuple[str, str, int], asyncio.Future[AccountEvent]]] = []
        self._writer: asyncio.Task | None = None
        # Committed by this process's writer, in commit order, for the relay to send without reading them.
        self._handed: list[AccountEvent] = []
        # Sent and acknowledged, not yet marked published in the outbox: (event id, stream sequence).
        self._unmarked: list[tuple[str, int]] = []
        # Whether the next relay pass reads the outbox (at start, after a failure, and on each poll).
        self._read_outbox = True
        self._outbox_read_at = 0.0
        # Fault injection for the publisher-crash scenario: die between the PubAck and the outbox update.
        self.crash_after_send = False
        # The ids this publisher's relay passes sent lately, to tell its own sends from another process's.
        self._sent_recently: OrderedDict[str, None] = OrderedDict()

    async def record(self, kind: str, user_id: str, amount_cents: int) -> AccountEvent:
        """Write the transaction and wake the relay; the event goes out shortly after.

        Returns once the transaction is committed. Calls that overlap share one SQLite transaction
        (group commit), in call order, so many concurrent callers cost one durable commit, not one each.
        """
        return await self.submit(kind, user_id, amount_cents)

    def submit(self, kind: str, user_id: str, amount_cents: int) -> asyncio.Future[AccountEvent]:
        """`record` without a coroutine: the future of the committed event, for a caller that makes
        thousands of requests at once (the benchmark) and would otherwise pay for a task each.

        A bad request raises here, so it never fails the other requests of its group.
        """
        kind_to_type(kind)
        validate_user_id(user_id, "user")
        AccountEvent.new(kind, user_id, amount_cents, 1)
        done: asyncio.Future[AccountEvent] = asyncio.get_running_loop().create_future()
        self._queued.append(((kind, user_id, amount_cents), done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued(), name="outbox-writer")
        return done

    async def _write_queued(self) -> None:
        try:
            while self._queued:
                group, self._queued = self._queued[: self.batch], self._queued[self.batch :]
                marks, self._unmarked = self._unmarked, []
                try:
                    events = await self.db.record_many([request for request, _ in group], published=marks)
                except BaseException as exc:
                    self._unmarked[:0] = marks
                    for _, done in group:
                        if not done.done():
                            done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("outbox writer stopped"))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                if self.nc is not None:  # no relay, nothing to hand over
                    self._handed.extend(events)
                for (_, done), event in zip(group, events):
                    if not done.done():  # a cancelled caller's transaction is still written
                        done.set_result(event)
                self._wake.set()
        finally:
            self._writer = None

    async def publish(self, kind: str, user_id: str, amount_cents: int) -> PublishResult:
        """Write the transaction, relay it now, and say where it really is (see `relay_and_report`)."""
        event = await self.record(kind, user_id, amount_cents)
        return await self.relay_and_report(event)

    async def relay_and_report(self, event: AccountEvent) -> PublishResult:
        """Relay now, then where `event` really is.

        Another relay may have sent it first: `run_relay` wakes on the same record and may take the
        relay lock before this call does, and a relay in another process sends the same outbox. So an
        event this pass did not send is looked up in its row. The lock is held until the answer is
        built, so the reason given for an unsent event is this pass's failure, not a later pass's.
        """
        async with self._relay_lock:
            sent = await self._relay()
            await self._mark_sent()
            if event.id in sent:
                return PublishResult(event, sent[event.id])
            stream_seq = await self.db.stream_seq(event.id)
            if stream_seq is not None:
                # This publisher's own background relay is not "another relay".
                return PublishResult(event, stream_seq, by_another_relay=event.id not in self._sent_recently)
            return PublishResult(event, None, outbox_reason=self.outbox_reason())

    def outbox_reason(self) -> str:
        """Why the last relay pass left rows in the outbox, in words."""
        if self.nc is None or not self.nc.is_connected:
            return "NATS not connected"
        return self.waiting_reason or "no PubAck"

    async def relay_once(self) -> dict[str, int]:
        """Send every unpublished transaction; returns event id -> stream sequence of those sent.

        Stops at the first failure, keeping what was acknowledged before it. Reads the whole outbox
        and marks what it sent before it returns.
        """
        async with self._relay_lock:
            self._read_outbox = True
            sent = await self._relay()
            await self._mark_sent()
            return sent

    async def flush_marks(self) -> None:
        """Mark in the outbox what was sent and not yet marked (before closing the database)."""
        async with self._relay_lock:
            await self._mark_sent()

    async def _mark_sent(self) -> None:
        marks, self._unmarked = self._unmarked, []
        try:
            await self.db.mark_published(marks)
        except BaseException:
            self._unmarked[:0] = marks
            raise

    async def _next_to_send(self) -> list[AccountEvent]:
        """The next events to send, oldest first: from the outbox when it must be read, else those the
        writer handed over (less any that a read of the outbox already sent)."""
        if self._read_outbox:
            # Rows this relay sent and the outbox does not say so yet would be read as unsent.
            await self._mark_sent()
            # Whatever was handed over so far is committed, so this read has it.
            self._handed.clear()
            self._outbox_read_at = time.monotonic()
            pending = await self.db.unpublished(self.batch)
            if pending:
                return pending
            self._read_outbox = False
        pending, self._handed = self._handed[: self.batch], self._handed[self.batch :]
        # A group committed before the read above but handed over after it was sent by that read.
        return [event for event in pending if event.id not in self._sent_recently]

    async def _relay(self) -> dict[str, int]:
        """`relay_once` without the final marking, for a caller that holds the relay lock."""
        if self.nc is None:
            return {}
        sent: dict[str, int] = {}
        self._pass_failed = False
        while True:
            pending = await self._next_to_send()
            if not pending:
                if self._handed:
                    continue
                self.stalled_since = None
                return sent
            acks = await self._send(pending)
            if self.crash_after_send and acks:
                self._crash("after publishing, before marking the outbox rows published")
            self._unmarked.extend((event.id, seq) for event, seq in acks)
            sent.update((event.id, seq) for event, seq in acks)
            self._remember_sent(event.id for event, _ in acks)
            self.published_count += len(acks)
            if len(acks) < len(pending):
                # The rest stays in the outbox, where the next pass reads it.
                self._read_outbox = True
                self._pass_failed = True
                if sent:
                    self.stalled_since = None
                elif self.stalled_since is None:
                    self.stalled_since = time.monotonic()
                return sent

    def _remember_sent(self, ids: Iterable[str]) -> None:
        for event_id in ids:
            self._sent_recently[event_id] = None
        while len(self._sent_recently) > SENT_REMEMBERED:
            self._sent_recently.popitem(last=False)

    def stalled_for(self) -> float:
        """Seconds the outbox has been stuck: rows waiting and no relay pass able to send any."""
        return 0.0 if self.stalled_since is None else time.monotonic() - self.stalled_since

    async def _send(self, events: list[AccountEvent]) -> list[tuple[AccountEvent, int]]:
        """Publish a batch pipelined; return the acknowledged prefix, in order."""
        assert self._js is not None
        assert self.nc is not None
        acks, failure = await send_batch(self.nc, self._js, events)
        if failure is None:
            self.last_error = self.waiting_reason = None
        else:
            error, self.last_error = failure
            self.waiting_reason = publish_failure(error)
            self.failed_sends += 1
            log.warning("%s", self.last_error)
        return acks

    @staticmethod
    def _crash(where: str) -> None:
        log.warning("injected publisher crash %s", where)
        logging.shutdown()
        os._exit(os.EX_SOFTWARE)

    async def run_relay(self, poll_s: float = 1.0) -> None:
        """Relay forever: on every new record, and every `poll_s` for rows other processes wrote.

        The PubAcks are marked by the writer's next transaction, or here once nobody is writing.
        """
        backoff = 0.25
        retry_in = 0.0
        while True:
            if self._pass_failed:
                # Spaced out, not at each new record: see RETRY_FIRST_S.
                retry_in = min(max(retry_in * 2, RETRY_FIRST_S), RETRY_MAX_S)
                await asyncio.sleep(retry_in)
            else:
                retry_in = 0.0
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=poll_s)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            try:
                async with self._relay_lock:
                    if time.monotonic() - self._outbox_read_at >= poll_s:
                        self._read_outbox = True
                    await self._relay()
                    if not self._queued and self._writer is None:
                        await self._mark_sent()
                backoff = 0.25
            except Exception as exc:  # a broken relay pass must not end the relay
                self.last_error = f"relay: {exc!r}"
                log.exception("relay pass failed")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
