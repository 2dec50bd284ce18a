"""Reading the event history: every message stored in the `ACCOUNT_EVENTS` stream, from the stream itself."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError, ServiceUnavailableError

from dashboard.lab.waits import LabError
from publisher.events import STREAM_NAME, AccountEvent, EventError, channel_of_subject

log = logging.getLogger(__name__)

READER_WITHIN_S = 20.0  # how long a reader's consumer is asked for before reading gives up


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored message: a valid event, or a malformed one with the reason."""

    stream_seq: int
    subject: str
    payload: bytes
    event: AccountEvent | None
    problem: str | None
    stored_at: str

    @property
    def channel(self) -> str:
        return channel_of_subject(self.subject)


def parse_stored(stream_seq: int, subject: str, payload: bytes, stored_at: str) -> StoredEvent:
    try:
        return StoredEvent(stream_seq, subject, payload, AccountEvent.from_json(payload, subject), None, stored_at)
    except EventError as exc:
        return StoredEvent(stream_seq, subject, payload, None, str(exc), stored_at)


class HistoryError(LabError):
    """The history cannot be read in full: the stream is missing, or reading it stopped short."""


async def _stream_info(nc: NATS) -> api.StreamInfo:
    try:
        return await nc.jetstream().stream_info(STREAM_NAME)
    except NotFoundError:
        raise HistoryError(
            f"the stream {STREAM_NAME} does not exist on this server: nothing was published to it, or this"
            " is not the lab's server (check --nats-url / --data-dir)"
        ) from None


async def last_seq(nc: NATS) -> int:
    """The stream's last sequence now: a snapshot point for `read_history(upto=...)`."""
    return (await _stream_info(nc)).state.last_seq


@asynccontextmanager
async def stream_reader(js: JetStreamContext, start_seq: int, purpose: str) -> AsyncIterator[Any]:
    """A pull subscription on a consumer of its own from `start_seq`, without acks, so reading through
    it changes nothing; the consumer is deleted afterwards (and expires by itself 30 s after a reader
    that could not)."""
    name = f"natslab-{purpose}-{uuid.uuid4().hex[:12]}"
    config = api.ConsumerConfig(
        name=name,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start_seq,
        ack_policy=api.AckPolicy.NONE,
        # No filter: the stream holds only STREAM_SUBJECTS, and a consumer with several filter subjects
        # reads about 4x slower on nats-server 2.15 (3.6k against 15k events/s on 100k events).
        inactive_threshold=30.0,
        mem_storage=True,
    )
    await _add_reader(js, config, purpose)
    sub = await js.pull_subscribe_bind(consumer=name, stream=STREAM_NAME)
    try:
        yield sub
    finally:
        try:
            await sub.unsubscribe()
            await js.delete_consumer(STREAM_NAME, name)
        except Exception as exc:  # an ephemeral consumer also expires by itself
            log.debug("%s consumer cleanup: %r", purpose, exc)


async def _add_reader(js: JetStreamContext, config: api.ConsumerConfig, purpose: str) -> None:
    """Makes a reader's consumer, asking again while the cluster cannot answer: right after nodes
    restart, a create request can time out or meet no leader for several seconds. Asking again with
    the same name and config is harmless (the server answers with the consumer it already made)."""
    deadline = time.monotonic() + READER_WITHIN_S
    while True:
        try:
            await js.add_consumer(STREAM_NAME, config, timeout=2.0)
            return
        except (TimeoutError, ServiceUnavailableError, NoRespondersError) as exc:
            if time.monotonic() > deadline:
                raise HistoryError(
                    f"the server did not make a {purpose} reader within {READER_WITHIN_S:g} s"
                    f" ({type(exc).__name__}): is a stream leader elected?"
                ) from None
            log.debug("%s reader not made yet: %r", purpose, exc)
            await asyncio.sleep(0.25)


async def fetch_stored(sub: JetStreamContext.PullSubscription, batch: int, timeout: float) -> list[Msg]:
    """Up to `batch` messages of a stream reader; [] when none came within `timeout`. On a cluster a
    reader's consumer answers 503 (no leader yet) for a moment after it is made, or while the nodes
    change: it is asked again within the same time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await sub.fetch(batch, timeout=max(0.05, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return []
        except (ServiceUnavailableError, NoRespondersError):
            if time.monotonic() > deadline:
                return []
            await asyncio.sleep(0.1)


async def read_history(
    nc: NATS, *, start_seq: int = 1, upto: int | None = None, timeout: float = 30.0
) -> list[StoredEvent]:
    """Every stored event from `start_seq` up to `upto` (default: the last sequence when the call
    began), complete or not at all: HistoryError if reading stops before `upto`.

    Uses an ephemeral pull consumer without acks, so reading the history changes nothing. Events
    stored after `upto` are left out.
    """
    js = nc.jetstream()
    info = await _stream_info(nc)
    last = info.state.last_seq if upto is None else upto
    first = max(start_seq, info.state.first_seq)
    if last < first or info.state.messages == 0:
        return []
    events: list[StoredEvent] = []
    async with stream_reader(js, first, "history") as sub:
        try:
            async with asyncio.timeout(timeout):
                while not events or events[-1].stream_seq < last:
                    msgs = await fetch_stored(sub, 500, 2.0)
                    for msg in msgs:
                        meta = msg.metadata
                        events.append(
                            parse_stored(meta.sequence.stream, msg.subject, msg.data, meta.timestamp.isoformat())
                        )
                    if msgs and msgs[-1].metadata.num_pending == 0:
                        break  # nothing more is stored: the messages up to `last` that are missing were deleted
                    if not msgs:
                        raise HistoryError(_incomplete(events, last, "no answer from the server for 2 s"))
        except TimeoutError:
            raise HistoryError(_incomplete(events, last, f"reading took longer than {timeout:g} s")) from None
    return [event for event in events if event.stream_seq <= last]


def _incomplete(events: list[StoredEvent], last: int, why: str) -> str:
    read_to = events[-1].stream_seq if events else 0
    return f"history incomplete: read up to stream seq {read_to} of {last} ({why})"
