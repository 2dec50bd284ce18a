"""Pulling one partition as its pinned owner (ADR-42 pinned-client priority groups, nats-server 2.11+).

nats-py has no helper for priority groups, so a `PartitionPuller` speaks the pull protocol itself: it
publishes `{"batch", "expires", "group"[, "id"]}` to `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`
with a reply inbox and reads the inbox. The first event the server hands a pull without an id pins
the partition to that puller and carries the pin in its `Nats-Pin-Id` header; later pulls send it as
`id`. A `423` status means the pin is gone (the server gave the partition to another listener): the
puller forgets it. The server unpins an owner that has not pulled for `PRIORITY_TIMEOUT_S`, so a pull
is always open (each expires after `PULL_EXPIRES_S` and is sent again at once), also while the owner
works on what it has: the events that come meanwhile wait in the puller's queue, in stream order,
and are told `in_progress` every half ack wait so the server does not send them again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from listeners.outcomes import Delivery
from listeners.partitions import PARTITIONED_STREAM, PIN_GROUP, PRIORITY_TIMEOUT_S, consumer_name

log = logging.getLogger(__name__)

PIN_HEADER = "Nats-Pin-Id"
# Each pull waits this long at the server at most: well inside the priority timeout, so the owner's
# next pull keeps its pin.
PULL_EXPIRES_S = min(0.5, PRIORITY_TIMEOUT_S / 4)
# A pull the server never ended (a connection lost meanwhile) is given up this long after it expired.
PULL_GRACE_S = 1.0
QUICK_END_PAUSE_S = 0.1
RECONNECT_LOOK_S = 0.1


class PartitionPuller:
    """Keeps one pull open on a partition's consumer and queues what it delivers, in order."""

    def __init__(
        self, nc: NATS, partition: int, batch: int, ack_wait_s: float, parse: Callable[[Msg], Delivery] | None = None
    ) -> None:
        self.nc = nc
        self.partition = partition
        self.batch = batch
        self.ack_wait_s = ack_wait_s
        self.pin_id: str | None = None
        self.pinned_at = 0.0  # monotonic time the server gave us the pin we hold
        self.new_pin = False  # set with each new pin, cleared by the worker that took note of it
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{PARTITIONED_STREAM}.{consumer_name(partition)}"
        # (message, when it was last told in progress, what it is, for the status)
        self._queue: deque[tuple[Msg, float, Delivery | None]] = deque()
        self._parse = parse
        self._arrived = asyncio.Event()
        self._ended = asyncio.Event()  # the open pull is over: all it asked for came, or an end status
        self._asked = 0  # events the open pull may still bring
        self._inbox = ""
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def owner(self) -> bool:
        """The server pinned this partition to us, as far as we have heard."""
        return self.pin_id is not None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._stopping = False
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_message)
        self._task = asyncio.create_task(self._pull_loop(), name=f"pull-p{self.partition}")

    async def stop(self) -> None:
        """Stop asking for more; what is queued stays for `take` (the caller settles it)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection may be closed already
                log.debug("unsubscribe failed", exc_info=True)
            self._sub = None
        self.pin_id = None

    def forget_pin(self, unpinned_since: float) -> None:
        """The server says nobody holds the partition (a restarted server or a new consumer leader
        forgets its pins): a pull that still sends the old pin would never be given the partition, so
        the next one goes without. A pin received after `unpinned_since` is newer than that news."""
        if self.pin_id is not None and self.pinned_at < unpinned_since:
            log.info("partition %d: the server forgot our pin", self.partition)
            self.pin_id = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def waiting(self) -> list[Delivery]:
        """The events delivered to us and not yet taken by the worker, in order."""
        return [delivery for _msg, _touched, delivery in self._queue if delivery is not None]

    async def take(self, batch: int, timeout: float) -> list[Msg]:
        """Up to `batch` queued events, as soon as there is one; [] after `timeout` with none."""
        if not self._queue:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        taken = []
        while self._queue and len(taken) < batch:
            taken.append(self._queue.popleft()[0])
        return taken

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:
            pin = headers.get(PIN_HEADER)
            if pin and pin != self.pin_id:
                log.info("partition %d pinned to this listener", self.partition)
                self.pin_id, self.pinned_at, self.new_pin = pin, time.monotonic(), True
            self._queue.append((msg, time.monotonic(), self._parse(msg) if self._parse else None))
            self._arrived.set()
            self._asked -= 1
            if self._asked <= 0:  # the pull got all it asked for: the server sends no end for it
                self._ended.set()
            return
        if status == "100":  # an idle heartbeat
            return
        if status == "423":  # the pin went to another listener
            if self.pin_id is not None:
                log.info("partition %d: pin lost (%s)", self.partition, headers.get("Description", ""))
            self.pin_id = None
        self._ended.set()  # 404 no messages, 408 expired, 409 leadership change or max ack pending...

    async def _pull_loop(self) -> None:
        while not self._stopping:
            try:
                await self._pull_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no connection for now: the client reconnects, we ask again
                log.debug("partition %d pull failed: %r", self.partition, exc)
                await asyncio.sleep(0.25)

    async def _pull_once(self) -> None:
        request: dict[str, object] = {
            "batch": self.batch,
            "expires": int(PULL_EXPIRES_S * 1e9),
            "group": PIN_GROUP,
        }
        if self.pin_id:
            request["id"] = self.pin_id
        self._ended.clear()
        self._asked = self.batch
        sent = time.monotonic()
        reconnects = self.nc.stats["reconnects"]
        await self.nc.publish(self._subject, json.dumps(request).encode(), reply=self._inbox)
        # A pull sent before a reconnect is lost with its server: ask again at once, or a standby
        # may take the partition meanwhile.
        while time.monotonic() - sent < PULL_EXPIRES_S + PULL_GRACE_S and self.nc.stats["reconnects"] == reconnects:
            try:
                await asyncio.wait_for(self._ended.wait(), RECONNECT_LOOK_S)
                break
            except asyncio.TimeoutError:
                pass
        self._touch_waiting()
        if self._asked == self.batch and time.monotonic() - sent < PULL_EXPIRES_S / 2:
            # Ended at once with nothing (no responders while a leader is elected, a lost pin, an
            # error): ask again in a moment rather than in a tight loop.
            await asyncio.sleep(QUICK_END_PAUSE_S)

    def _touch_waiting(self) -> None:
        """Tell the server we still hold the queued events that have waited half an ack wait."""
        now = time.monotonic()
        for index, (msg, touched, delivery) in enumerate(self._queue):
            if now - touched >= self.ack_wait_s / 2:
                asyncio.ensure_future(_quietly(msg.in_progress()))
                self._queue[index] = (msg, now, delivery)


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception as exc:  # a lost in_progress means a redelivery, which the guard turns into a duplicate
        log.debug("in_progress failed: %r", exc)
